"""Sparse k-NN pair encoder (stages 3 V2, 4): noisy trace -> neighbour graph -> edges -> factors.

    graph    = knn_graph(x_t, strategy, k)                 index, valid [b, n, k]
    e        = EdgeFeatureNet(s, x_t, graph)               [b, n, k, c_p]
    e        = PairStack(e, graph)                         [b, n, k, c_p]
    s, U, V  = EdgePooling(s, e)                           [b, n, c_s], [b, n, r, c_f]

The graph is rebuilt from x_t for every training batch; a sampler may build it once with
:meth:`SparsePairEncoder.build_graph` and pass it to several steps (``knnUpdateFrequency``). The
same graph feeds the edges, the local edge attention and (through the pooled factors) FlashIPA:
``kNeighbors`` is one key for all of them.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.graph import KnnGraph, build_knn_graph
from genie.model.representations import SparsePair
from genie.model.sparse.features import EdgeFeatureNet, EdgePooling
from genie.model.stack import PairStack


class SparsePairEncoder(nn.Module):
    """A :class:`~genie.model.protocols.PairEncoder` on the ``strategy`` k-NN graph."""

    uses_graph = True

    def __init__(
        self,
        *,
        features: EdgeFeatureNet,
        stack: PairStack,
        pooling: EdgePooling,
        k: int,
        strategy: str,
        knn_chunk_size: int | None,
    ):
        super().__init__()
        self.features, self.stack, self.pooling = features, stack, pooling
        self.k, self.strategy, self.knn_chunk_size = k, strategy, knn_chunk_size

    def build_graph(
        self, coords: torch.Tensor, mask: torch.Tensor, residue_index: torch.Tensor
    ) -> KnnGraph:
        """The ``knnStrategy`` graph of a trace: ``coords [b, n, 3]`` Å, ``mask [b, n]``,
        ``residue_index [b, n]``."""
        return build_knn_graph(coords, mask, residue_index, k=self.k, strategy=self.strategy,
                               chunk_size=self.knn_chunk_size)  # fmt: skip

    def forward(
        self,
        s: torch.Tensor,
        x: torch.Tensor,
        residue_index: torch.Tensor,
        mask: torch.Tensor,
        *,
        graph: KnnGraph | None = None,
    ) -> tuple[torch.Tensor, SparsePair]:
        """
        Args:
            s: ``[b, n, c_s]``; x: ``[b, n, 3]`` noisy Cα, Å; residue_index: ``[b, n]``;
            mask: ``[b, n]``; graph: a graph built earlier by :meth:`build_graph` (default: built
            here from x).

        Returns:
            updated s ``[b, n, c_s]`` and the sparse pair representation.
        """
        if graph is None:
            graph = self.build_graph(x, mask, residue_index)
        if graph.index.shape[:2] != x.shape[:2]:
            raise ValueError(f"graph of {tuple(graph.index.shape[:2])} residues for a trace of "
                             f"{tuple(x.shape[:2])}")  # fmt: skip
        edges = self.features(s, x, graph)
        edges = self.stack(edges, graph, n=graph.n)
        s, factors = self.pooling(s, edges, graph, residue_index, mask)
        return s, SparsePair(edges, graph, factors)
