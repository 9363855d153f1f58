"""A dense pair layer (Genie's PairTransformNet layer; AF2 Alg. 6 lines 11-15 without MSA), one
layer of :class:`~genie.model.stack.PairStack`.

Each layer applies, with residual connections: triangle multiplicative update (outgoing, then
incoming), optionally triangle attention (starting, then ending node), optionally axial attention
(row, then column; ``useAxialAttention``), and a pair transition: the order of the sparse stack
(:mod:`genie.model.sparse.layer`), whose layers do the same on k-NN edges.
Dropout masks are shared along rows (outgoing/starting/row) or columns (incoming/ending/column).
The triangle and axial updates may run cuEquivariance's fused kernels (``kernels``,
:mod:`genie.model.dense.fused_kernels`); the parameters are the same either way.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.model.dense.fused_kernels import FusedTriangleKernels
from genie.model.dense.triangle_attention import TriangleAttention
from genie.model.dense.triangle_multiplication import TriangleMultiplication
from genie.model.layers.primitives import SharedDropout
from genie.model.layers.transition import Transition


class PairTransformLayer(nn.Module):
    """One dense pair layer: triangle updates, triangle attention, axial attention, transition.

    Axial attention is :class:`~genie.model.dense.triangle_attention.TriangleAttention` without the
    triangle bias: row attention (``node="starting"``: entry ij attends over ik, k = 1..n, of
    its own row i) then column attention (``node="ending"``: ij attends over kj), with the
    triangle attention's hidden size and heads, as on sparse edges
    (:class:`~genie.model.sparse.layer.SparsePairLayer`).

    Cost of the axial attention on dense pairs: O(n³·h·c) compute, since each of the n rows
    (columns) runs attention of its n queries over its n keys, chunked or not. Chunking bounds
    only the memory of one chunk: O(chunk·n·h·c) for the projections, plus O(chunk·h·n²) for the
    logits where the attention kernel materialises them (PyTorch's math path, e.g. on the CPU);
    the pair tensor itself stays O(n²·c_p). DISCREPANCY with the original project brief, which
    said axial attention takes the pair stack "from O(L²) to O(L)": on dense pairs it is O(L³)
    compute, like triangle attention without the bias. Only on sparse k-NN edges
    (``useSparseKNN``) is it O(n·k²).

    Args:
        c_p: pair channels.
        triangle_mul: triangle multiplicative updates (outgoing, incoming).
        triangle_att: triangle attention (starting, ending node).
        c_hidden_mul: hidden channels of the multiplicative updates.
        c_hidden_att: channels per head of the triangle and axial attention.
        n_heads_att: heads of the triangle and axial attention.
        dropout: rate of the row-/column-shared dropout on every update but the transition.
        transition_n: expansion of the pair transition.
        chunk_size: chunk of every update without a chunk size of its own: rows for the
            multiplicative updates and starting node, columns for the ending node (None =
            unchunked).
        axial: axial attention (row, then column) after the triangle attention.
        axial_row_chunk_size: rows per chunk of the row attention (None: ``chunk_size``).
        axial_col_chunk_size: columns per chunk of the column attention (None: ``chunk_size``).
        kernels: cuEquivariance's fused kernels for the triangle and axial updates, used for the
            calls they take (None: ours only).
    """

    def __init__(
        self,
        *,
        c_p: int,
        triangle_mul: bool,
        triangle_att: bool,
        c_hidden_mul: int,
        c_hidden_att: int,
        n_heads_att: int,
        dropout: float,
        transition_n: int,
        chunk_size: int | None = None,
        axial: bool = False,
        axial_row_chunk_size: int | None = None,
        axial_col_chunk_size: int | None = None,
        kernels: FusedTriangleKernels | None = None,
    ):
        super().__init__()
        self.updates = nn.ModuleList()
        self.dropouts = nn.ModuleList()
        self.chunk_sizes: list[int | None] = []  # per update
        if triangle_mul:
            for mix, shared in (("outgoing", 1), ("incoming", 2)):
                self.updates.append(
                    TriangleMultiplication(c_p=c_p, c_hidden=c_hidden_mul, mix=mix, kernels=kernels)
                )
                self.dropouts.append(SharedDropout(dropout, shared_dim=shared))
                self.chunk_sizes.append(chunk_size)
        attention = []  # (node, triangle_bias, shared dropout dim, chunk size)
        if triangle_att:
            attention += [("starting", True, 1, chunk_size), ("ending", True, 2, chunk_size)]
        if axial:
            attention += [
                ("starting", False, 1, _either(axial_row_chunk_size, chunk_size)),  # rows
                ("ending", False, 2, _either(axial_col_chunk_size, chunk_size)),  # columns
            ]
        for node, bias, shared, chunk in attention:
            self.updates.append(
                TriangleAttention(
                    c_p=c_p, c_hidden=c_hidden_att, n_heads=n_heads_att, node=node,
                    triangle_bias=bias, kernels=kernels,
                )
            )  # fmt: skip
            self.dropouts.append(SharedDropout(dropout, shared_dim=shared))
            self.chunk_sizes.append(chunk)
        self.transition = Transition(c=c_p, expansion=transition_n)

    def forward(self, z: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        """``z [b, n, n, c_p]``, ``pair_mask [b, n, n]`` -> updated ``z [b, n, n, c_p]``."""
        for update, dropout, chunk in zip(
            self.updates, self.dropouts, self.chunk_sizes, strict=True
        ):
            z = z + dropout(update(z, pair_mask, chunk_size=chunk))
        return z + self.transition(z, pair_mask)


def _either(own: int | None, default: int | None) -> int | None:
    return default if own is None else own
