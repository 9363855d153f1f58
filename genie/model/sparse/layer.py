"""A pair layer on sparse k-NN edges (stages 3 V2, 4), one layer of
:class:`~genie.model.stack.PairStack`.

Each layer updates the edges ``e [b, n, k, c_p]`` with residual connections, in AF2's order
(Jumper et al. 2021, Alg. 6 lines 11-15): triangle multiplicative updates (outgoing, incoming),
triangle attention (starting, ending node), axial attention (row, column), then a transition
per edge. Every operation runs over the graph's edge lists (:mod:`genie.model.sparse.triangle`),
so a layer costs O(n·k²·c) and holds O(n·k·c) plus one chunk; nothing is n×n.
Dropout is element-wise on the updates (DISCREPANCY: AF2 shares its masks along rows/columns of
the dense tensor, which have no counterpart on a neighbour list).
"""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.graph import KnnGraph
from genie.model.layers.primitives import Dropout
from genie.model.layers.transition import Transition
from genie.model.layout import SequenceParallel
from genie.model.sparse.triangle import SparseTriangleAttention, SparseTriangleMultiplication


class SparsePairLayer(SequenceParallel, nn.Module):
    def __init__(
        self,
        *,
        c_p: int,
        triangle_mul: bool,
        triangle_att: bool,
        axial: bool,
        c_hidden_mul: int,
        c_hidden_att: int,
        n_heads_att: int,
        dropout: float,
        transition_n: int,
        chunk_size: int | None,
    ):
        super().__init__()
        self.updates = nn.ModuleList()
        if triangle_mul:
            for mix in ("outgoing", "incoming"):
                self.updates.append(
                    SparseTriangleMultiplication(c_p=c_p, c_hidden=c_hidden_mul, mix=mix)
                )
        for enabled, bias in ((triangle_att, True), (axial, False)):
            if enabled:
                for node in ("starting", "ending"):
                    self.updates.append(
                        SparseTriangleAttention(
                            c_p=c_p, c_hidden=c_hidden_att, n_heads=n_heads_att, node=node,
                            triangle_bias=bias,
                        )
                    )  # fmt: skip
        self.dropout = Dropout(dropout)
        self.chunk_size = chunk_size  # residues per chunk of every update (None = all)
        self.transition = Transition(c=c_p, expansion=transition_n)

    def forward(self, edges: torch.Tensor, graph: KnnGraph) -> torch.Tensor:
        """``edges [b, n, k, c_p]`` on ``graph`` -> updated ``[b, n, k, c_p]`` (under sequence
        parallelism, the out-edges of this process's residues on the whole chain's graph)."""
        for update in self.updates:
            edges = edges + self.dropout(update(edges, graph, chunk_size=self.chunk_size))
        valid = graph.valid[:, self.sequence_layout.own(graph.n)]  # [b, n, k] edges of own residues
        return edges + self.transition(edges, valid.to(edges.dtype))
