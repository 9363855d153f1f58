"""Random long-range neighbours (``randomNeighbors``): p ∝ d⁻³ over the non-neighbours,
deterministic per seed, invariant to rotations and translations, chunked."""

from __future__ import annotations

import pytest
import torch
from helpers import forbid_allocations_at_least, helix_trace, random_rotation

from genie.geometry.graph import build_knn_graph
from genie.geometry.knn import knn_graph
from genie.geometry.random_edges import random_neighbors, uniform_hash


def trace(n: int, seed: int = 0) -> torch.Tensor:
    """A compact-ish chain ``[1, n, 3]``: a helix folded back on itself every 12 residues."""
    gen = torch.Generator().manual_seed(seed)
    x = helix_trace(n, generator=gen).double()
    x[:, 2] = torch.remainder(x[:, 2], 18.0) + 6 * torch.arange(n) // 12 % 3
    return x[None].float()


def graph(coords, mask, *, r=6, seed=7, chunk_size=None, strategy="hybrid", k=6):
    return build_knn_graph(coords, mask, torch.arange(coords.shape[1])[None], k=k,
                           strategy=strategy, chunk_size=chunk_size, random=r,
                           seeds=torch.tensor([seed] * coords.shape[0]))  # fmt: skip


def test_hash_is_uniform_and_a_function_of_its_integers():
    u = uniform_hash(torch.tensor([5, 2**40 + 3]), torch.arange(64), torch.arange(256))
    assert u.shape == (2, 64, 256) and u.dtype == torch.float32
    assert 0 < float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    again = uniform_hash(torch.tensor([2**40 + 3]), torch.arange(10, 20), torch.arange(256))
    assert torch.equal(again[0], u[1, 10:20])  # the same (seed, i, j), the same value
    assert not torch.equal(u[0], u[1])  # seeds that differ only above bit 32 differ


def test_random_edges_exclude_self_existing_neighbours_and_padding():
    coords = trace(30)
    mask = torch.ones(1, 30)
    mask[0, 26:] = 0
    g = graph(coords, mask, r=8)
    index, valid = g.index[0], g.valid[0]
    base, random = index[:, :6], index[:, 6:]
    for i in range(26):
        chosen = random[i][valid[i, 6:]].tolist()
        assert len(chosen) == 8 and len(set(chosen)) == 8  # distinct
        assert i not in chosen and not set(chosen) & set(base[i].tolist())
        assert max(chosen) < 26  # never padding
    assert not valid[26:].any()  # padded queries: no edge
    assert g.offsets.shape == (1, 30, 14)


def test_deterministic_per_seed_and_chunking_and_batch():
    coords, mask = trace(40), torch.ones(1, 40)
    a = graph(coords, mask, seed=3)
    assert torch.equal(a.index, graph(coords, mask, seed=3).index)
    assert torch.equal(a.index, graph(coords, mask, seed=3, chunk_size=7).index)
    assert not torch.equal(a.index, graph(coords, mask, seed=4).index)
    other = trace(40, seed=1)  # a chain in the same batch changes nothing
    both = build_knn_graph(torch.cat([other, coords]), torch.ones(2, 40),
                           torch.arange(40).expand(2, 40), k=6, strategy="hybrid",
                           chunk_size=None, random=6,
                           seeds=torch.tensor([99, 3]))  # fmt: skip
    assert torch.equal(both.index[1], a.index[0])


def test_invariant_under_rotation_and_translation():
    coords, mask = trace(60), torch.ones(1, 60)
    q = random_rotation(torch.Generator().manual_seed(2))
    moved = coords @ q.T + torch.tensor([30.0, -12.0, 7.0])
    for seed in range(5):
        a, b = graph(coords, mask, seed=seed), graph(moved, mask, seed=seed)
        assert torch.equal(a.index, b.index) and torch.equal(a.valid, b.valid)


def test_first_draw_follows_inverse_cube_of_distance():
    """With no existing neighbour but self, the first random neighbour of residue 0 is j with
    probability d_0j⁻³ / Σ d⁻³ (over 6,000 seeds: each frequency within 5 standard errors)."""
    d = torch.tensor([2.0, 3.0, 4.0, 6.0, 9.0])
    coords = torch.zeros(1, 6, 3)
    coords[0, 1:, 0] = d  # residue j at distance d from residue 0, on a line
    mask = torch.ones(1, 6)
    taken = torch.zeros(1, 6, 1, dtype=torch.long)  # "neighbour" 0: the query 0 itself
    draws = 6000
    seeds = torch.arange(draws)
    index, valid = random_neighbors(coords.expand(draws, -1, -1), mask.expand(draws, -1),
                                    taken.expand(draws, -1, -1), count=1,
                                    seeds=seeds)  # fmt: skip
    assert valid[:, 0].all()
    counts = torch.bincount(index[:, 0, 0], minlength=6)[1:].double()
    p = d**-3 / (d**-3).sum()
    se = (p * (1 - p) / draws).sqrt()
    assert ((counts / draws - p).abs() < 5 * se).all(), (counts / draws, p)


def test_without_replacement_fills_every_candidate_then_invalid_slots():
    coords, mask = trace(9), torch.ones(1, 9)
    index, valid = knn_graph(coords, mask, k=2, strategy="sequence")
    extra, extra_valid = random_neighbors(coords, mask, index, count=10, seeds=torch.tensor([1]))
    # 9 residues − self − 2 sequence neighbours (i + 1, i + 2 at the N end) = 6 candidates
    assert extra_valid.sum(-1).tolist() == [[6] * 9]
    own = torch.arange(9)[:, None].expand(9, 10)
    assert torch.equal(extra[0][~extra_valid[0]], own[~extra_valid[0]])
    with pytest.raises(ValueError, match="seeds"):
        random_neighbors(coords, mask, index, count=2, seeds=torch.tensor([1, 2]))


def test_chunked_random_search_builds_no_n_by_n_tensor():
    n, chunk = 2048, 256
    gen = torch.Generator().manual_seed(0)
    coords = torch.cumsum(torch.randn(1, n, 3, generator=gen), 1) * 2.2
    mask = torch.ones(1, n)
    taken, _ = knn_graph(coords, mask, k=8, strategy="hybrid", chunk_size=chunk)
    with forbid_allocations_at_least(n * n // 4, square=n) as mode:
        index, valid = random_neighbors(coords, mask, taken, count=16, seeds=torch.tensor([5]),
                                        chunk_size=chunk)  # fmt: skip
    assert mode.largest >= chunk * n and valid.all()

    # Longer range: the random partners are farther in sequence than the hybrid graph's.
    def median_separation(idx: torch.Tensor) -> float:
        return float((idx[0] - torch.arange(n)[:, None]).abs().double().median())

    assert median_separation(index) > 4 * median_separation(taken)
