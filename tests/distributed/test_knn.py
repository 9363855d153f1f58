"""The k-NN search of a shard's rows (``knn_graph(..., rows=)``) equals those rows of the
unsharded graph, exactly: every strategy, awkward shard and chunk sizes, padding, chains with
fewer residues than k; and the graph built by a group of processes equals the unsharded graph."""

from __future__ import annotations

import pytest
import torch
from helpers import helix_trace

from genie.geometry.knn import knn_graph


def trace_batch(n: int = 23, seed: int = 0):
    """Two chains of ``n`` slots: a helix, and a shorter helix (6 residues) whose padding
    holds NaN; with exact distance ties (a lattice) in the first."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.stack([helix_trace(n, generator=gen), helix_trace(n, generator=gen)])
    x[0, :8] = torch.tensor([[i % 2, i // 2 % 2, i // 4] for i in range(8)]) * 3.8  # ties
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, 6:] = False
    x[1, 6:] = float("nan")
    return x, mask


@pytest.mark.parametrize("strategy", ["coordinate", "sequence", "hybrid"])
@pytest.mark.parametrize(("rows", "chunk"), [((0, 23), None), ((0, 8), 3), ((8, 16), 5),
                                             ((16, 23), 1), ((5, 6), 7)])  # fmt: skip
def test_rows_equal_the_unsharded_graph(strategy, rows, chunk):
    x, mask = trace_batch()
    k = 7  # more than the 5 other residues of the short chain: invalid slots
    index, valid = knn_graph(x, mask, k=k, strategy=strategy, chunk_size=4)
    own = slice(*rows)
    got_index, got_valid = knn_graph(x, mask, k=k, strategy=strategy, chunk_size=chunk, rows=own)
    assert torch.equal(got_valid, valid[:, own])
    assert torch.equal(got_index, index[:, own])  # placeholders of invalid slots included
    assert got_valid.any() and not got_valid.all()


@pytest.mark.parametrize("rows", [slice(4, 4), slice(0, 8, 2)])
def test_query_rows_must_be_a_contiguous_run(rows):
    x, mask = trace_batch()
    with pytest.raises(ValueError, match="non-empty contiguous slice"):
        knn_graph(x, mask, k=3, strategy="coordinate", rows=rows)


def test_graph_built_on_shards_equals_the_unsharded_graph(sequence_parallel_results):
    for strategy, tensors in sequence_parallel_results["graphs"].items():
        for name, (sharded, ref) in tensors.items():
            assert torch.equal(sharded, ref), f"{strategy}: {name} differs"
