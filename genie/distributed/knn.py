"""The k-NN graph of a sharded chain: each process searches the neighbours of its own residues
against the whole chain's Cα trace, and the processes exchange the (integer) results.

Notation: b batch, n residues of the padded chain, m own residues, k neighbours.

The search is :func:`genie.geometry.knn.knn_graph` with its query ``rows`` set to the own
residues: the same candidates, tie rule and placeholders as the unsharded graph's rows, exactly
(``tests/distributed/test_knn.py``). Memory per process: the gathered trace ``[b, n, 3]`` and one
``[b, chunk, n]`` distance block; never n×n.
"""

from __future__ import annotations

import torch

from genie.geometry.graph import KnnGraph
from genie.geometry.knn import gather_neighbors, knn_graph
from genie.model.layout import SequenceLayout


@torch.no_grad()
def sharded_knn_graph(
    coords: torch.Tensor,
    mask: torch.Tensor,
    residue_index: torch.Tensor,
    *,
    layout: SequenceLayout,
    k: int,
    strategy: str,
    chunk_size: int | None,
) -> KnnGraph:
    """The whole chain's k-NN graph (:func:`~genie.geometry.graph.build_knn_graph`) from the
    local ``coords [b, m, 3]`` Å, ``mask`` and ``residue_index [b, m]`` of every process.

    Gathers the trace (3 numbers per residue), searches the own rows, gathers their index and
    validity (k integers and k flags per residue); every process returns the same graph."""
    chain, real = layout.gather(coords), layout.gather(mask.bool())  # [b, n, 3], [b, n]
    positions = layout.gather(residue_index)  # [b, n]
    own = layout.own(chain.shape[1])
    index, valid = knn_graph(chain, real, k=k, strategy=strategy, chunk_size=chunk_size, rows=own)
    index, valid = layout.gather(index), layout.gather(valid)  # [b, n, k] each
    offsets = gather_neighbors(positions, index) - positions[..., None]
    return KnnGraph.from_neighbors(index, valid, offsets)
