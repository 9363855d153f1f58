"""Tests of genie.data.dataset: crops, padding, length-bucketed batches, train/val splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genie.data.dataset import CaDataset, collate_ca_batch, split_train_val
from genie.data.dataset_file import CaDatasetArrays, arrays_from_segments
from genie.data.sampler import LengthBucketBatchSampler
from genie.data.structure_io import CaSegment


def indices(sampler) -> list[list[int]]:
    """The item indices of each batch (the sampler yields (item, epoch, max_length) keys)."""
    return [[key[0] for key in batch] for batch in sampler]


def test_sampler_keys_carry_epoch_and_crop_length():
    arrays = _arrays([30, 50, 70, 90])
    dataset = CaDataset(arrays=arrays, max_length=40, random_crop=True, seed=1)
    sampler = LengthBucketBatchSampler(dataset, batch_size=2, shuffle=True, seed=0,
                                       epoch_source=lambda: 3)  # fmt: skip
    keys = [key for batch in sampler for key in batch]
    assert {(epoch, length) for _, epoch, length in keys} == {(3, 40)}
    key = next(k for k in keys if k[0] == 3)  # the 90-residue segment: cropped to 40
    # a worker's stale copy (epoch 0, another length) still crops for the key's epoch and length
    stale = CaDataset(arrays=arrays, max_length=80, random_crop=True, seed=1)
    assert stale[key]["coords"].shape == (40, 3)
    torch.testing.assert_close(stale[key]["coords"], dataset[key]["coords"])
    assert not torch.equal(stale[3]["coords"][:40], dataset[key]["coords"])
    dataset.set_epoch(3)
    torch.testing.assert_close(dataset[3]["coords"], dataset[key]["coords"])


def _arrays(lengths: list[int], seed: int = 0) -> CaDatasetArrays:
    rng = np.random.default_rng(seed)
    segments = []
    for i, n in enumerate(lengths):
        coords = rng.normal(scale=10.0, size=(n, 3)).astype(np.float32) + 100.0
        breaks = np.zeros(n, dtype=bool)
        breaks[n // 2] = n > 2
        segments.append(CaSegment(f"s{i}", coords, "A" * n, breaks))
    return arrays_from_segments(segments)


def test_item_is_centred_contiguous_crop():
    arrays = _arrays([300, 40])
    dataset = CaDataset(arrays=arrays, max_length=64, random_crop=True, seed=3)
    item = dataset[0]
    assert item["coords"].shape == (64, 3) and item["coords"].dtype == torch.float32
    assert item["name"] == "s0"
    torch.testing.assert_close(item["residue_index"], torch.arange(64))
    torch.testing.assert_close(item["coords"].mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    start, stop = dataset.crop_window(0)
    assert stop - start == 64
    window = arrays.segment(0)[start:stop].astype(np.float64)
    np.testing.assert_allclose(item["coords"].numpy(), window - window.mean(0), atol=1e-4)
    expected_breaks = arrays.segment_breaks(0)[start:stop].copy()
    expected_breaks[0] = False
    assert item["breaks"].tolist() == expected_breaks.tolist()
    short = dataset[1]  # shorter than max_length: whole segment
    assert short["coords"].shape == (40, 3) and short["breaks"].sum() == 1


def test_random_crops_are_reproducible_and_vary():
    arrays = _arrays([500])
    dataset = CaDataset(arrays=arrays, max_length=50, random_crop=True, seed=0)
    starts = []
    for epoch in range(8):
        dataset.set_epoch(epoch)
        starts.append(dataset.crop_window(0)[0])
    assert len(set(starts)) > 4  # different windows in different epochs
    again = CaDataset(arrays=arrays, max_length=50, random_crop=True, seed=0)
    again.set_epoch(5)
    dataset.set_epoch(5)
    assert again.crop_window(0)[0] == starts[5]
    torch.testing.assert_close(again[0]["coords"], dataset[0]["coords"])
    other_seed = CaDataset(arrays=arrays, max_length=50, random_crop=True, seed=1)
    other_starts = []
    for epoch in range(8):
        other_seed.set_epoch(epoch)
        other_starts.append(other_seed.crop_window(0)[0])
    assert other_starts != starts


def test_validation_crop_is_centred_and_fixed():
    arrays = _arrays([101])
    dataset = CaDataset(arrays=arrays, max_length=41, random_crop=False, seed=0)
    assert dataset.crop_window(0) == (30, 71)
    dataset.set_epoch(7)
    assert dataset.crop_window(0) == (30, 71)


def test_subset_and_set_max_length():
    arrays = _arrays([10, 80, 200, 30])
    dataset = CaDataset(arrays=arrays, indices=[2, 0], max_length=64, random_crop=False)
    assert len(dataset) == 2 and dataset[0]["name"] == "s2" and dataset[1]["name"] == "s0"
    assert dataset.crop_lengths.tolist() == [64, 10]
    dataset.set_max_length(150)
    assert dataset.crop_lengths.tolist() == [150, 10] and dataset[0]["coords"].shape[0] == 150
    with pytest.raises(ValueError):
        dataset.set_max_length(0)
    with pytest.raises(IndexError):
        CaDataset(arrays=arrays, indices=[4], max_length=8, random_crop=False)


def test_collate_pads_to_the_batch_maximum():
    arrays = _arrays([5, 9, 3, 400])
    dataset = CaDataset(arrays=arrays, max_length=512, random_crop=False)
    batch = collate_ca_batch([dataset[0], dataset[1], dataset[2]])
    assert batch["coords"].shape == (3, 9, 3)  # not 400 or 512
    assert batch["mask"].dtype == torch.float32 and batch["mask"].shape == (3, 9)
    assert batch["mask"].sum(1).tolist() == [5, 9, 3] == batch["lengths"].tolist()
    assert batch["residue_index"].dtype == torch.long and batch["breaks"].dtype == torch.bool
    assert batch["names"] == ["s0", "s1", "s2"]
    for i, k in enumerate([5, 9, 3]):
        torch.testing.assert_close(batch["coords"][i, :k], dataset[i]["coords"])
        assert batch["coords"][i, k:].abs().sum() == 0 and not batch["breaks"][i, k:].any()
        torch.testing.assert_close(batch["residue_index"][i, :k], torch.arange(k))
        assert batch["residue_index"][i, k:].abs().sum() == 0
    with pytest.raises(ValueError, match="empty"):
        collate_ca_batch([])


def _dataset_of_lengths(n: int, max_length: int = 1000, seed: int = 0) -> CaDataset:
    rng = np.random.default_rng(seed)
    return CaDataset(
        arrays=_arrays(rng.integers(3, 300, size=n).tolist()),
        max_length=max_length,
        random_crop=True,
    )


@pytest.mark.parametrize("drop_last", [False, True])
def test_bucket_sampler_covers_every_index_once(drop_last):
    dataset = _dataset_of_lengths(103)
    sampler = LengthBucketBatchSampler(
        dataset, batch_size=8, shuffle=True, seed=0, drop_last=drop_last, pool_batches=4
    )
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = indices(sampler)
        assert len(batches) == len(sampler) == (12 if drop_last else 13)
        flat = [i for batch in batches for i in batch]
        assert len(flat) == len(set(flat))
        if drop_last:
            assert all(len(b) == 8 for b in batches) and len(flat) == 96
        else:
            assert sorted(flat) == list(range(103))
            assert sorted(len(b) for b in batches)[1:] == [8] * 12


@pytest.mark.parametrize("replicas", [1, 2])
def test_bucket_sampler_skips_the_batches_already_trained(replicas):
    """A run resumed in the middle of an epoch goes on with exactly the rest of that epoch."""
    dataset = _dataset_of_lengths(103)
    for rank in range(replicas):
        options = dict(batch_size=8, shuffle=True, seed=0, num_replicas=replicas, rank=rank,
                       epoch_source=lambda: 2)  # fmt: skip
        whole = indices(LengthBucketBatchSampler(dataset, **options))
        done = [0]  # what the trainer reports, read at every __iter__
        sampler = LengthBucketBatchSampler(dataset, skip_source=lambda d=done: d[0], **options)
        assert indices(sampler) == whole
        for done[0] in (3, len(whole)):
            assert indices(sampler) == whole[done[0] :]
            assert len(sampler) == len(whole)  # the epoch's count, not what is left


def test_bucket_sampler_batches_are_length_homogeneous():
    dataset = _dataset_of_lengths(200)
    lengths = dataset.crop_lengths
    # one pool holding everything: batches are consecutive runs of the sorted lengths
    sampler = LengthBucketBatchSampler(
        dataset, batch_size=10, shuffle=True, seed=1, pool_batches=20
    )
    batches = sorted(indices(sampler), key=lambda b: lengths[b].min())
    for before, after in zip(batches[:-1], batches[1:], strict=True):
        assert lengths[before].max() <= lengths[after].min()
    # default pools still give far less padding than random batches
    padding = sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches)
    rng = np.random.default_rng(0)
    random_batches = np.array_split(rng.permutation(200), 20)
    random_padding = sum(lengths[b].max() * len(b) - lengths[b].sum() for b in random_batches)
    assert padding < 0.1 * random_padding


def test_bucket_sampler_epochs_and_current_max_length():
    dataset = _dataset_of_lengths(64)
    sampler = LengthBucketBatchSampler(dataset, batch_size=4, shuffle=True, seed=0, pool_batches=2)
    assert sampler.sampler is sampler  # Lightning calls batch_sampler.sampler.set_epoch
    sampler.set_epoch(0)
    first = indices(sampler)
    assert indices(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    assert indices(sampler) != first and dataset.epoch == 1  # the epoch reaches the crops too
    # the effective length is min(length, max_length): at 20, long items become one bucket
    dataset.set_max_length(20)
    sampler = LengthBucketBatchSampler(dataset, batch_size=4, shuffle=False, seed=0)
    batches = indices(sampler)
    crop = dataset.crop_lengths
    assert crop.max() == 20
    for before, after in zip(batches[:-1], batches[1:], strict=True):
        assert crop[before].max() <= crop[after].min()


def test_split_train_val_is_seeded_and_disjoint():
    train, val = split_train_val(100, val_fraction=0.2, seed=0)
    assert len(val) == 20 and len(train) == 80
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    again = split_train_val(100, val_fraction=0.2, seed=0)
    np.testing.assert_array_equal(again[1], val)
    assert split_train_val(100, val_fraction=0.2, seed=1)[1].tolist() != val.tolist()
    assert len(split_train_val(10, val_fraction=0.01, seed=0)[1]) == 1  # at least one
    assert len(split_train_val(10, val_fraction=0.0, seed=0)[1]) == 0


def test_split_keeps_identical_sequences_together():
    rng = np.random.default_rng(0)
    # 40 copies of one chain (like T4 lysozyme mutants), 10 pairs, 40 singletons
    groups = ["LYSO"] * 40 + [f"pair{i // 2}" for i in range(20)] + [f"s{i}" for i in range(40)]
    groups = [groups[i] for i in rng.permutation(len(groups))]
    for seed in range(10):
        train, val = split_train_val(len(groups), val_fraction=0.2, seed=seed, groups=groups)
        train_groups = {groups[i] for i in train}
        val_groups = {groups[i] for i in val}
        assert not train_groups & val_groups
        assert len(val) == 20  # the big group does not fit the target and stays in training
        assert "LYSO" in train_groups
    with pytest.raises(ValueError, match="training would be empty"):
        split_train_val(4, val_fraction=0.5, seed=0, groups=["x"] * 4)
    with pytest.raises(ValueError, match="entries"):
        split_train_val(4, val_fraction=0.5, seed=0, groups=["x"] * 3)
