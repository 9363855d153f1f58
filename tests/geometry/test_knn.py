"""k-NN graphs (coordinate, sequence, hybrid) against brute-force and hand-computed neighbours,
the tie rule, padding, short chains and memory at n = 16,384."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
from helpers import forbid_allocations_at_least, helix_trace

from genie.geometry.knn import gather_neighbors, knn_graph

STRATEGIES = ("coordinate", "sequence", "hybrid")


def random_traces(b=3, n=23, lengths=(23, 17, 3), seed=0):
    """Random-walk traces ``[b, n, 3]`` with trailing padding (padded coordinates are garbage
    placed on top of real residues, so a leak would show up as a near neighbour)."""
    gen = torch.Generator().manual_seed(seed)
    coords = torch.cumsum(3.8 * torch.randn(b, n, 3, generator=gen), dim=1)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, length in enumerate(lengths):
        mask[i, :length] = True
        coords[i, length:] = coords[i, :1] + 0.01
    return coords, mask


def brute_force(coords, mask, k, exclude_self=True):
    """Reference: fp64 ``torch.cdist`` + stable argsort (equal distances: lower index first)."""
    b, n, _ = coords.shape
    dist = torch.cdist(coords.double(), coords.double())  # [b, n, n]
    dist = dist.masked_fill(~mask[:, None, :], float("inf"))
    if exclude_self:
        dist = dist.masked_fill(torch.eye(n, dtype=torch.bool), float("inf"))
    order = torch.sort(dist, dim=-1, stable=True)[1][..., :k]
    valid = torch.gather(dist, 2, order).isfinite() & mask[:, :, None]
    return order, valid


def check_graph(index, valid, ref_index, ref_valid):
    k = index.shape[-1]
    ref_index = torch.nn.functional.pad(ref_index, (0, k - ref_index.shape[-1]))
    ref_valid = torch.nn.functional.pad(ref_valid, (0, k - ref_valid.shape[-1]))
    assert torch.equal(valid, ref_valid)
    assert torch.equal(index[valid], ref_index[valid])


def test_gather_neighbors_matches_indexing():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, 4, generator=gen)
    index = torch.randint(0, 5, (2, 5, 6), generator=gen)
    out = gather_neighbors(x, index)
    assert out.shape == (2, 5, 6, 3, 4)
    for bi in range(2):
        assert torch.equal(out[bi], x[bi][index[bi]])


def test_coordinate_on_a_line():
    """Integer spacing: exact distances, so i − 1 and i + 1 tie and i − 1 comes first."""
    coords = torch.zeros(1, 6, 3)
    coords[0, :, 0] = 2.0 * torch.arange(6)
    index, valid = knn_graph(coords, torch.ones(1, 6), k=3, strategy="coordinate")
    assert valid.all()
    expected = [[1, 2, 3], [0, 2, 3], [1, 3, 0], [2, 4, 1], [3, 5, 2], [4, 3, 2]]
    assert index[0].tolist() == expected


@pytest.mark.parametrize("k", [1, 4, 10, 30])
@pytest.mark.parametrize("chunk_size", [1, 7, 23, None])
def test_coordinate_matches_brute_force(k, chunk_size):
    coords, mask = random_traces()
    index, valid = knn_graph(coords, mask, k=k, strategy="coordinate", chunk_size=chunk_size)
    assert index.shape == valid.shape == (3, 23, k)
    assert index.dtype == torch.long and valid.dtype == torch.bool
    check_graph(index, valid, *brute_force(coords, mask, k))
    assert ((index >= 0) & (index < 23)).all()  # invalid slots hold in-range placeholders


def test_coordinate_include_self():
    coords, mask = random_traces()
    index, valid = knn_graph(coords, mask, k=5, strategy="coordinate", exclude_self=False)
    check_graph(index, valid, *brute_force(coords, mask, 5, exclude_self=False))
    assert torch.equal(index[:, :, 0][mask], torch.arange(23).expand(3, -1)[mask])


def test_symmetric_ties_resolved_by_index():
    """A centre with four neighbours at exactly the same (non-integer) distance: the lowest
    indices win, in index order, whatever the chunking."""
    a = 0.1 * 2**0.5
    coords = torch.tensor([[a, 0, 0], [0, -a, 0], [0, 0, 0], [-a, 0, 0], [0, a, 0]])[None]
    for chunk_size in (1, 2, None):
        index, valid = knn_graph(
            coords, torch.ones(1, 5), k=3, strategy="coordinate", chunk_size=chunk_size
        )
        assert valid.all()
        assert index[0, 2].tolist() == [0, 1, 3]


def test_sequence_hand_computed():
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :6] = True  # a 6-residue chain, then padding
    index, valid = knn_graph(torch.zeros(2, 8, 3), mask, k=3, strategy="sequence")
    expected = [[1, 2, 3], [0, 2, 3], [1, 3, 0], [2, 4, 1], [3, 5, 2], [4, 3, 2]]
    assert index[0, :6].tolist() == expected and torch.equal(index[0], index[1])
    assert valid[:, :6].all() and not valid[:, 6:].any()
    index, valid = knn_graph(
        torch.zeros(1, 6, 3), torch.ones(1, 6), k=3, strategy="sequence", exclude_self=False
    )
    assert index[0, 3].tolist() == [3, 2, 4] and index[0, 0].tolist() == [0, 1, 2]


def test_sequence_does_not_read_coordinates():
    coords, mask = random_traces()
    graph = knn_graph(coords, mask, k=4, strategy="sequence")
    other = knn_graph(torch.randn_like(coords), mask, k=4, strategy="sequence")
    assert torch.equal(graph[0], other[0]) and torch.equal(graph[1], other[1])


@pytest.mark.parametrize("k", [1, 4, 7, 12])
def test_hybrid_is_sequence_then_nearest_new(k):
    gen = torch.Generator().manual_seed(1)
    coords = torch.stack([helix_trace(20, generator=gen), helix_trace(20, generator=gen)])
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 15:] = False
    index, valid = knn_graph(coords, mask, k=k, strategy="hybrid", chunk_size=7)
    k_seq = (k + 1) // 2
    seq_index, seq_valid = knn_graph(coords, mask, k=k_seq, strategy="sequence")
    assert torch.equal(index[..., :k_seq], seq_index) and torch.equal(valid[..., :k_seq], seq_valid)
    ref_index, ref_valid = brute_force(coords, mask, 20)
    for bi in range(2):
        for i in range(int(mask[bi].sum())):
            chosen = index[bi, i][valid[bi, i]].tolist()
            assert len(chosen) == len(set(chosen)) == k  # distinct, and enough residues exist
            seq = set(seq_index[bi, i][seq_valid[bi, i]].tolist())
            nearest_new = [j for j in ref_index[bi, i][ref_valid[bi, i]].tolist() if j not in seq]
            assert chosen[k_seq:] == nearest_new[: k - k_seq]
        assert not valid[bi, int(mask[bi].sum()) :].any()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_padding_never_a_neighbour(strategy):
    coords, mask = random_traces()
    coords[~mask] = float("nan")  # padding may hold anything
    index, valid = knn_graph(coords, mask, k=6, strategy=strategy, chunk_size=5)
    padded = ~torch.gather(mask[:, :, None].expand(-1, -1, 6), 1, index)  # neighbour is padding
    assert not (valid & padded).any()
    assert not valid[~mask].any()
    assert valid[mask].any(-1).all()  # every real residue of a chain of >1 has a neighbour


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_short_chain_leaves_invalid_slots(strategy):
    coords, mask = random_traces(b=1, n=6, lengths=(3,))
    index, valid = knn_graph(coords, mask, k=4, strategy=strategy)
    assert valid[0, :3].sum(-1).tolist() == [2, 2, 2]  # two other real residues each
    for i in range(3):
        assert sorted(index[0, i][valid[0, i]].tolist()) == [j for j in range(3) if j != i]


def test_bad_arguments():
    coords, mask = random_traces()
    with pytest.raises(ValueError, match="strategy"):
        knn_graph(coords, mask, k=3, strategy="radius")
    with pytest.raises(ValueError, match="k must be"):
        knn_graph(coords, mask, k=0, strategy="coordinate")


def test_chunked_search_memory_and_time_at_16k():
    """n = 16,384, chunk 1024: no tensor of ≥ n²/4 elements or with two n axes; timed."""
    n, k = 16_384, 16
    gen = torch.Generator().manual_seed(0)
    coords = torch.cumsum(2.2 * torch.randn(1, n, 3, generator=gen), dim=1)
    mask = torch.ones(1, n, dtype=torch.bool)
    mask[0, -100:] = False
    start = time.perf_counter()
    with forbid_allocations_at_least(n * n // 4, square=n) as mode:
        index, valid = knn_graph(coords, mask, k=k, strategy="coordinate", chunk_size=1024)
    elapsed = time.perf_counter() - start
    assert mode.largest >= 1024 * n  # the distance block of a chunk really was built
    assert elapsed < 30.0, f"k-NN search at n = {n} took {elapsed:.1f} s"
    rows = torch.tensor([0, 1, 5000, 9999, n - 101, n - 100, n - 1])
    dist = torch.cdist(coords[0, rows].double(), coords[0].double())  # [rows, n]
    dist[:, ~mask[0]] = float("inf")
    dist[torch.arange(len(rows)), rows] = float("inf")
    ref = torch.sort(dist, dim=-1, stable=True)[1][:, :k]
    real = mask[0, rows]
    assert torch.equal(index[0, rows][real], ref[real])
    assert valid[0, rows].all(-1).tolist() == real.tolist()
    assert not valid[0, rows][~real].any()


PEAK_RSS_SCRIPT = """
import resource, torch
from genie.geometry.knn import knn_graph
n = 16384
coords = torch.cumsum(2.2 * torch.randn(1, n, 3), dim=1)
mask = torch.ones(1, n, dtype=torch.bool)
knn_graph(coords[:, :64], mask[:, :64], k=16, strategy="coordinate")  # warm-up
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
knn_graph(coords, mask, k=16, strategy="coordinate", chunk_size=1024)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB on Linux")
def test_chunked_search_peak_rss_at_16k():
    """Peak RSS growth of the search at n = 16,384, chunk 1024, in a fresh process: one chunk's
    fp32 distances + int64 keys are 12 B · 1024 · n = 192 MiB; an n×n fp32 matrix is 1 GiB."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    growth_mib = float(out.stdout.split()[-1])
    assert growth_mib < 400, f"peak RSS grew by {growth_mib:.0f} MiB"
