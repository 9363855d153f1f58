"""Pair transform stack (Genie's PairTransformNet; AF2 Alg. 6 lines 11-15 without MSA).

Each layer applies, with residual connections: triangle multiplicative update (outgoing, then
incoming), optionally triangle attention (starting, then ending node), optionally axial attention
(row, then column; ``useAxialAttention``), and a pair transition: the order of the sparse stack
(:mod:`genie.model.sparse_pair_stack`), whose layers do the same on k-NN edges.
Dropout masks are shared along rows (outgoing/starting/row) or columns (incoming/ending/column).
Layers may share weights (:mod:`genie.model.sharing`) and run under layer checkpointing
(:mod:`genie.utils.checkpointing`, kind ``"pair"``).
"""

from __future__ import annotations

import torch
from torch import nn

from genie.model.primitives import SharedDropout
from genie.model.sharing import NO_SHARING, LayerSharing
from genie.model.transition import Transition
from genie.model.triangle_attention import TriangleAttention
from genie.model.triangle_multiplication import TriangleMultiplication
from genie.utils.checkpointing import LayerCheckpointing


class PairTransformLayer(nn.Module):
    """One dense pair layer: triangle updates, triangle attention, axial attention, transition.

    Axial attention is :class:`~genie.model.triangle_attention.TriangleAttention` without the
    triangle bias: row attention (``node="starting"``: entry ij attends over ik, k = 1..n, of
    its own row i) then column attention (``node="ending"``: ij attends over kj), with the
    triangle attention's hidden size and heads, as on sparse edges
    (:class:`~genie.model.sparse_pair_stack.SparsePairLayer`).

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
        include_mul_update: triangle multiplicative updates (outgoing, incoming).
        include_tri_att: triangle attention (starting, ending node).
        c_hidden_mul: hidden channels of the multiplicative updates.
        c_hidden_att: channels per head of the triangle and axial attention.
        n_heads_att: heads of the triangle and axial attention.
        dropout: rate of the row-/column-shared dropout on every update but the transition.
        transition_n: expansion of the pair transition.
        include_axial: axial attention (row, then column) after the triangle attention.
        axial_row_chunk_size: rows per chunk of the row attention (None: the ``chunk_size`` the
            layer is called with).
        axial_col_chunk_size: columns per chunk of the column attention (None: the same).
    """

    def __init__(
        self,
        *,
        c_p: int,
        include_mul_update: bool,
        include_tri_att: bool,
        c_hidden_mul: int,
        c_hidden_att: int,
        n_heads_att: int,
        dropout: float,
        transition_n: int,
        include_axial: bool = False,
        axial_row_chunk_size: int | None = None,
        axial_col_chunk_size: int | None = None,
    ):
        super().__init__()
        self.updates = nn.ModuleList()
        self.dropouts = nn.ModuleList()
        self.chunk_sizes: list[int | None] = []  # per update; None: forward's chunk_size
        if include_mul_update:
            for mix, shared in (("outgoing", 1), ("incoming", 2)):
                self.updates.append(TriangleMultiplication(c_p=c_p, c_hidden=c_hidden_mul, mix=mix))
                self.dropouts.append(SharedDropout(dropout, shared_dim=shared))
                self.chunk_sizes.append(None)
        attention = []  # (node, triangle_bias, shared dropout dim, chunk size)
        if include_tri_att:
            attention += [("starting", True, 1, None), ("ending", True, 2, None)]
        if include_axial:
            attention += [
                ("starting", False, 1, axial_row_chunk_size),  # row attention
                ("ending", False, 2, axial_col_chunk_size),  # column attention
            ]
        for node, bias, shared, chunk_size in attention:
            self.updates.append(
                TriangleAttention(
                    c_p=c_p, c_hidden=c_hidden_att, n_heads=n_heads_att, node=node,
                    triangle_bias=bias,
                )
            )  # fmt: skip
            self.dropouts.append(SharedDropout(dropout, shared_dim=shared))
            self.chunk_sizes.append(chunk_size)
        self.transition = Transition(c=c_p, expansion=transition_n)

    def forward(
        self, z: torch.Tensor, pair_mask: torch.Tensor, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """
        Args:
            z: ``[b, n, n, c_p]``.
            pair_mask: ``[b, n, n]``.
            chunk_size: chunk of every update without a chunk size of its own: rows for the
                multiplicative updates and starting node, columns for the ending node
                (None = unchunked).

        Returns:
            Updated ``z [b, n, n, c_p]``.
        """
        for update, dropout, own in zip(self.updates, self.dropouts, self.chunk_sizes, strict=True):
            chunk = chunk_size if own is None else own
            z = z + dropout(update(z, pair_mask, chunk_size=chunk))
        return z + self.transition(z, pair_mask)


class PairTransformNet(nn.Module):
    """A stack of :class:`PairTransformLayer` (``n_layers`` may be 0: identity), its layers
    shared per ``sharing`` and checkpointed per ``checkpointing`` (default: neither)."""

    def __init__(
        self,
        *,
        n_layers: int,
        checkpointing: LayerCheckpointing | None = None,
        sharing: LayerSharing = NO_SHARING,
        **layer_kwargs,
    ):
        super().__init__()
        self.checkpointing = checkpointing or LayerCheckpointing()
        self.layers = sharing.layers(lambda i: PairTransformLayer(**layer_kwargs), n_layers)

    def forward(
        self, z: torch.Tensor, pair_mask: torch.Tensor, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """``z [b, n, n, c_p]``, ``pair_mask [b, n, n]`` -> ``[b, n, n, c_p]``."""
        n = z.shape[1]
        for i, layer in enumerate(self.layers):
            z = self.checkpointing.run("pair", i, n, layer, z, pair_mask, chunk_size=chunk_size)
        return z
