"""Sharding rules: padded lengths, per-rank bounds that tile the chain, zero padding."""

from __future__ import annotations

import pytest
import torch

from genie.distributed import pad_residues, padded_length, shard_bounds


@pytest.mark.parametrize(("n", "shards", "padded"), [(13, 2, 14), (13, 3, 15), (12, 3, 12),
                                                      (1, 4, 4), (0, 3, 0), (7, 1, 7)])  # fmt: skip
def test_padded_length_is_the_next_multiple(n, shards, padded):
    assert padded_length(n, shards) == padded


@pytest.mark.parametrize(("n", "shards"), [(15, 3), (14, 2), (8, 8), (5, 1)])
def test_shards_tile_the_chain_in_rank_order(n, shards):
    bounds = [shard_bounds(n, shards, rank) for rank in range(shards)]
    covered = torch.cat([torch.arange(n)[b] for b in bounds])
    assert torch.equal(covered, torch.arange(n))  # contiguous, disjoint, complete, in order
    assert {b.stop - b.start for b in bounds} == {n // shards}


def test_bounds_refuse_a_chain_not_padded_to_the_shards():
    with pytest.raises(ValueError, match="pad the chain to 15"):
        shard_bounds(13, 3, 0)
    with pytest.raises(ValueError, match="shard 3 of 3"):
        shard_bounds(15, 3, 3)
    with pytest.raises(ValueError, match="at least 1"):
        padded_length(4, 0)


def test_padding_appends_zeros_on_the_residue_axis():
    x = torch.randn(2, 5, 3)
    padded = pad_residues(x, 8)
    assert padded.shape == (2, 8, 3)
    assert torch.equal(padded[:, :5], x) and padded[:, 5:].abs().max() == 0
    mask = pad_residues(torch.ones(2, 5, dtype=torch.bool), 6)
    assert mask.dtype == torch.bool and mask.sum() == 10 and not mask[:, 5].any()
    assert pad_residues(x, 5) is x
    with pytest.raises(ValueError, match="cannot pad 5 residues to 4"):
        pad_residues(x, 4)
