"""Tests of concatenated long items (genie.data.concat through CaDataset and CaDataModule).

Pieces of an item are recovered from its ``breaks`` and matched to their source segments by their
Cα distance matrices, independently of how the code drew them.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from genie.data.concat import (
    _free_distances,
    draw_pieces,
    place_pieces,
    random_rotations,
)
from genie.data.datamodule import CaDataModule
from genie.data.dataset import CaDataset, collate_ca_batch
from genie.data.dataset_file import (
    CaDatasetArrays,
    arrays_from_segments,
    default_dataset_path,
    load_dataset_file,
)
from genie.data.sampler import LengthBucketBatchSampler
from genie.data.structure_io import CaSegment


@pytest.fixture(scope="module")
def ts50() -> CaDatasetArrays:
    """The bundled TS50 chains (79-173 residues, no internal breaks)."""
    return load_dataset_file(default_dataset_path())


def _pdist(x: np.ndarray) -> np.ndarray:
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def _sources(piece: np.ndarray, arrays: CaDatasetArrays) -> list[tuple[int, int]]:
    """All (segment, start) whose window has the piece's Cα distance matrix (0.002 Å)."""
    m = len(piece)
    steps = np.linalg.norm(np.diff(piece, axis=0), axis=1)  # [m - 1]
    found = []
    for s in range(len(arrays)):
        seg = arrays.segment(s).astype(np.float64)
        if len(seg) < m:
            continue
        seg_steps = np.linalg.norm(np.diff(seg, axis=0), axis=1)
        windows = sliding_window_view(seg_steps, m - 1)  # [len - m + 1, m - 1]
        for start in np.flatnonzero(np.abs(windows - steps).max(axis=1, initial=0) < 2e-3):
            window = seg[start : start + m]
            if np.abs(_pdist(window) - _pdist(piece)).max() < 2e-3:
                found.append((s, int(start)))
    return found


def _pieces(item: dict) -> list[np.ndarray]:
    starts = [0, *np.flatnonzero(item["breaks"].numpy()).tolist(), len(item["coords"])]
    xyz = item["coords"].double().numpy()
    return [xyz[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True)]


def _min_distance_between_pieces(item: dict) -> float:
    x = item["coords"].double()
    piece = torch.cumsum(item["breaks"].long(), 0)  # [n] piece id
    d = torch.cdist(x, x)  # [n, n]
    return float(d[piece[:, None] != piece[None, :]].min())


def test_item_is_exactly_the_crop_length_of_real_pieces_apart(ts50):
    pool = np.arange(0, 50, 2)  # the dataset's own segments: every other TS50 chain
    dataset = CaDataset(arrays=ts50, indices=pool, max_length=700, random_crop=True, seed=5,
                        concatenate=True, join_residue_gap=50, join_clearance=6.0)  # fmt: skip
    for item_index in (0, 7):
        item = dataset[(item_index, 3, 700)]
        assert item["coords"].shape == (700, 3) and item["coords"].dtype == torch.float32
        torch.testing.assert_close(item["coords"].mean(0), torch.zeros(3), atol=1e-3, rtol=0)
        breaks = item["breaks"].numpy()
        assert not breaks[0]
        step = np.diff(item["residue_index"].numpy())
        assert item["residue_index"][0] == 0
        assert np.array_equal(step, np.where(breaks[1:], 50, 1))  # gap at the joins only
        pieces = _pieces(item)
        assert len(pieces) >= 5  # TS50 chains are at most 173 residues
        for k, piece in enumerate(pieces):
            matches = _sources(piece, ts50)
            assert matches, f"piece {k} ({len(piece)} residues) is no rigid copy of a segment"
            assert any(s in pool for s, _ in matches), "a piece from outside the dataset"
            if k == 0:  # the item's own segment, whole
                assert (int(pool[item_index]), 0) in matches
                assert len(piece) == ts50.lengths[pool[item_index]]
            elif k < len(pieces) - 1:  # appended segments are whole; only the last is cut
                assert any(start == 0 and len(piece) == ts50.lengths[s] for s, start in matches)
        # breaks only at the joins: each piece is an unbroken real trace, so the step across a
        # join is no peptide bond (a real step inside a piece is <= 4.2 Å)
        assert _min_distance_between_pieces(item) >= 6.0 - 1e-3
        inside = np.linalg.norm(np.diff(item["coords"].numpy(), axis=0), axis=1)[~breaks[1:]]
        assert inside.max() < 4.3


def test_breaks_inside_segments_are_kept_besides_the_joins():
    rng = np.random.default_rng(0)
    segments = []
    for i, n in enumerate([30, 40, 50, 60]):
        coords = rng.normal(scale=8.0, size=(n, 3)).astype(np.float32)
        breaks = np.zeros(n, dtype=bool)
        breaks[n // 2] = True  # a segment kept whole across a chain break
        segments.append(CaSegment(f"s{i}", coords, "A" * n, breaks))
    arrays = arrays_from_segments(segments)
    dataset = CaDataset(arrays=arrays, max_length=400, random_crop=True, seed=0,
                        concatenate=True, join_residue_gap=9)  # fmt: skip
    item = dataset[(1, 0, 400)]
    flags = item["breaks"].numpy()
    joins = np.flatnonzero(np.diff(item["residue_index"].numpy()) == 9) + 1
    own = np.setdiff1d(np.flatnonzero(flags), joins)
    assert flags[joins].all() and len(joins) >= 6
    # between joins every piece but the last (which may be cut) carries its segment's one break
    assert len(own) >= len(joins) - 1
    for k in own:  # an own break sits half-way into its piece (segment length n, break at n/2)
        before, after = joins[joins < k], joins[joins > k]
        start = before.max() if before.size else 0
        stop = after.min() if after.size else 400
        assert k - start == (stop - start) // 2 or after.size == 0


def test_reproducible_per_seed_epoch_and_item(ts50):
    def make(seed=1, random_crop=True):
        return CaDataset(arrays=ts50, max_length=500, random_crop=random_crop, seed=seed,
                         concatenate=True)  # fmt: skip

    a, b = make(), make()
    first = a[(4, 2, 500)]
    b[(9, 2, 500)]  # other fetches in between change nothing
    again = b[(4, 2, 500)]
    torch.testing.assert_close(first["coords"], again["coords"], rtol=0, atol=0)
    assert torch.equal(first["breaks"], again["breaks"]) and first["name"] == again["name"]
    assert not torch.equal(first["coords"], a[(4, 3, 500)]["coords"])  # another epoch
    assert not torch.equal(first["coords"], make(seed=2)[(4, 2, 500)]["coords"])  # another seed
    val = make(random_crop=False)
    torch.testing.assert_close(val[(4, 0, 500)]["coords"], val[(4, 7, 500)]["coords"])


def test_long_segments_are_cropped_not_joined(ts50):
    plain = CaDataset(arrays=ts50, max_length=60, random_crop=True, seed=3)
    joined = CaDataset(arrays=ts50, max_length=60, random_crop=True, seed=3, concatenate=True)
    for i in range(5):
        torch.testing.assert_close(joined[(i, 1, 60)]["coords"], plain[(i, 1, 60)]["coords"])
        assert not joined[(i, 1, 60)]["breaks"].any()


def test_collate_pads_concatenated_items(ts50):
    dataset = CaDataset(arrays=ts50, max_length=300, random_crop=True, seed=0, concatenate=True)
    items = [dataset[(0, 0, 300)], dataset[(1, 0, 250)]]
    batch = collate_ca_batch(items)
    assert batch["coords"].shape == (2, 300, 3)
    assert batch["lengths"].tolist() == [300, 250]
    assert batch["mask"][1, 250:].eq(0).all() and batch["mask"][1, :250].eq(1).all()
    assert batch["coords"][1, 250:].eq(0).all() and batch["residue_index"][1, 250:].eq(0).all()
    assert not batch["breaks"][1, 250:].any()
    for i, item in enumerate(items):
        n = len(item["coords"])
        assert torch.equal(batch["residue_index"][i, :n], item["residue_index"])
        assert torch.equal(batch["breaks"][i, :n], item["breaks"])
        assert int(batch["residue_index"][i, n - 1]) > n  # the gaps survive padding


def test_bucket_sampler_with_concatenation(ts50):
    dataset = CaDataset(arrays=ts50, max_length=256, random_crop=True, seed=0, concatenate=True)
    sampler = LengthBucketBatchSampler(dataset, batch_size=4, shuffle=True, seed=0)
    keys = [key for batch in sampler for key in batch]
    assert sorted(k[0] for k in keys) == list(range(50))
    assert {k[2] for k in keys} == {256}
    dataset.set_max_length(512)  # progressive training: the next epoch's items are longer
    sampler.set_epoch(1)
    batch = next(iter(sampler))
    assert all(len(dataset[key]["coords"]) == 512 for key in batch)


def test_datamodule_joins_within_each_side_of_the_split():
    module = CaDataModule(
        sources=None, cache_dir="unused", min_length=40, max_length=300, batch_size=2,
        val_fraction=0.2, seed=0, num_workers=0, concatenate=True, join_residue_gap=40,
        validation_size=3,
    )  # fmt: skip
    module.setup("fit")
    arrays = module.arrays
    train_names = {str(arrays.names[i]) for i in module.train_dataset.indices}
    val_names = {str(arrays.names[i]) for i in module.val_dataset.indices}
    assert module.num_val == 3 and not train_names & val_names
    batch = next(iter(module.train_dataloader()))
    assert batch["coords"].shape == (2, 300, 3) and batch["mask"].eq(1).all()
    for name in batch["names"]:  # 300 residues of chains >= 79: at most 4 pieces, all named
        assert set(name.split("+")) <= train_names
    for batch in module.val_dataloader():
        assert all(set(name.split("+")) <= val_names for name in batch["names"])
    module.set_max_length(128)
    assert next(iter(module.train_dataloader()))["coords"].shape == (2, 128, 3)


def test_draw_pieces_sum_to_the_target():
    lengths = np.array([50, 7, 30, 90, 12])
    pool = np.array([0, 2, 3])
    rng = np.random.default_rng(0)
    for target in (51, 90, 1000):
        pieces = draw_pieces(first=1, pool=pool, lengths=lengths, target_length=target, rng=rng)
        assert sum(len(p) for p in pieces) == target
        assert (pieces[0].segment, pieces[0].start, pieces[0].stop) == (1, 0, 7)
        assert all(p.segment in pool and p.start == 0 and p.stop == lengths[p.segment]
                   for p in pieces[1:-1])  # fmt: skip
        last = pieces[-1]
        assert 0 <= last.start < last.stop <= lengths[last.segment]
    with pytest.raises(ValueError, match="target_length"):
        draw_pieces(first=3, pool=pool, lengths=lengths, target_length=90, rng=rng)


def test_placement_is_rigid_and_keeps_the_clearance():
    rng = np.random.default_rng(1)
    pieces = [rng.normal(scale=s, size=(n, 3)) for s, n in [(6, 30), (2, 5), (10, 80), (1, 1)] * 6]
    for clearance in (0.0, 4.0, 32.0):
        placed = place_pieces(pieces, clearance=clearance, rng=rng)
        for before, after in zip(pieces, placed, strict=True):
            np.testing.assert_allclose(_pdist(after), _pdist(before), atol=1e-9)
        ids = np.repeat(np.arange(len(placed)), [len(p) for p in placed])
        x = np.concatenate(placed)
        d = _pdist(x)[ids[:, None] != ids[None, :]]
        assert d.min() >= clearance - 1e-6


def test_free_distance_is_the_first_free_point_on_each_ray():
    rng = np.random.default_rng(2)
    centres = rng.uniform(-30, 30, size=(40, 3))
    reach = rng.uniform(3, 12, size=40)
    origin = centres[0]
    directions = rng.normal(size=(16, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    distance = _free_distances(origin, directions, centres, reach)
    for u, s in zip(directions, distance, strict=True):
        gaps = np.linalg.norm(origin + s * u - centres, axis=1) - reach
        assert gaps.min() >= -1e-9  # free (touching allowed)
        grid = np.linspace(0.0, s, 400, endpoint=False)  # every earlier point is in some ball
        points = origin + grid[:, None] * u  # [400, 3]
        inside = np.linalg.norm(points[:, None] - centres[None], axis=-1) < reach[None] + 1e-9
        assert inside.any(axis=1).all()


def test_random_rotations_are_proper():
    rot = random_rotations(np.random.default_rng(0), 2000)
    eye = np.broadcast_to(np.eye(3), rot.shape)
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), eye, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    assert np.abs(rot.mean(axis=0)).max() < 0.05  # uniform rotations average to zero


def test_a_65536_residue_item_is_built_quickly(ts50):
    dataset = CaDataset(arrays=ts50, max_length=65536, random_crop=True, seed=0, concatenate=True)
    dataset[(0, 0, 4096)]  # warm-up
    start = time.perf_counter()
    item = dataset[(1, 0, 65536)]
    elapsed = time.perf_counter() - start
    assert item["coords"].shape == (65536, 3) and torch.isfinite(item["coords"]).all()
    assert int(item["breaks"].sum()) >= 65536 // 173  # ~500 joins
    assert elapsed < 3.0, f"{elapsed:.2f} s for one 65,536-residue item"
