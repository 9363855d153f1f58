"""Triangle updates, triangle attention and axial attention on sparse k-NN edges (DESIGN §3).

Notation: b batch, n residues, k edge slots per residue, L edge-list length, h heads, c channels.

Each operation is its dense counterpart (AF2 Alg. 11-14) applied to the pair tensor masked to the
graph — z_ij = e_ij on edges, 0 elsewhere, pair mask = the graph — and read on the edges only.
The tests check exactly this equality in float64. With the edge lists of
:mod:`genie.geometry.graph` (row: out-edges of i; column: in-edges of j):

    outgoing update   x_ij = Σ_{(i→k)} a_ik ⊙ b_jk              (row list of i, third edge j→k)
    incoming update   x_ij = Σ_{(k→j)} a_ki ⊙ b_kj              (column list of j, third edge k→i)
    starting node     o_ij = Σ_{(i→k)} softmax(q_ij·k_ik + b_jk) v_ik
    ending node       o_ij = Σ_{(k→j)} softmax(q_ij·k_kj + b_ki) v_kj

A missing third edge contributes what the masked dense tensor holds there: a zero operand, and the
bias of a zero pair vector, W_b·LN(0). Axial attention is the attention without the triangle bias
(row = over a residue's k edges, column = over the edges into a residue). Cost O(n·k²·c), memory
O(chunk·L²·c) per chunk of ``chunk_size`` residues, recomputed in backward; never n×n.
The classes subclass the dense ones, so parameters (and state dicts) are the same.

Sequence parallelism (:mod:`genie.model.layout`): a process holds the out-edges of its residues
and runs the lists of its residues on the whole chain's graph. A row list of i holds i's own
edges; its third edges (j → k) belong to any residue, so the values read there are gathered. A
column list of j holds edges (i → j) of any residue: its values are gathered too, and its results,
which belong to those edges, are summed into their owners (each edge is in exactly one column
list, so the sum adds zeros only). The multiplicative update sends its triangle product (c_hidden
channels) and applies the gated output per edge afterwards, on the edge's owner.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genie.geometry.graph import KnnGraph, gather_edges, scatter_edges
from genie.model.dense.triangle_attention import MASK_BIAS, TriangleAttention
from genie.model.dense.triangle_multiplication import TriangleMultiplication
from genie.model.layout import WHOLE_CHAIN, SequenceLayout, SequenceParallel
from genie.utils.checkpointing import recompute
from genie.utils.chunking import chunked


def over_lists(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    graph: KnnGraph,
    axis: str,
    chunk_size: int | None,
    layout: SequenceLayout = WHOLE_CHAIN,
) -> torch.Tensor:
    """Run ``fn(lists [b, ci, L], third [b, ci, L, L]) -> [b, ci, L, c]`` over chunks of the
    edge lists of ``layout``'s residues and put the results back on their edges: ``[b, n, k, c]``.

    ``lists`` index the values of ``layout.list_values(values, axis)``, ``third`` the whole
    chain's values (``layout.gather``). Each chunk is recomputed in backward (only its inputs are
    stored)."""
    lists = graph.lists(axis)[:, layout.own(graph.n)]  # [b, n, L], whole-chain edge ids
    n = lists.shape[1]

    def chunk(ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            third = graph.third_edges(axis, ids)  # [b, ci, L, L]
        keys = layout.own_edge_ids(ids, n=graph.n, k=graph.k) if axis == "row" else ids
        return fn(keys, third)

    out = chunked(lambda sl: recompute(chunk, lists[:, sl]), n, chunk_size, dim=1)  # [b, n, L, c]
    if axis == "row":
        return out  # slot s of row i is edge i·k + s already
    return layout.reduce_scatter(scatter_edges(out, lists, n=graph.n, k=graph.k))


class SparseTriangleMultiplication(SequenceParallel, TriangleMultiplication):
    """AF2 Alg. 11 (``mix="outgoing"``) / Alg. 12 (``"incoming"``) over the graph's edges."""

    def _edge_operand(self, proj, en: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        value, gate = proj(en).chunk(2, dim=-1)  # [b, n, k, c] each
        return value * torch.sigmoid(gate) * valid[..., None].to(value.dtype)

    def _edge_output(self, x: torch.Tensor, en: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The gated output of the triangle products ``x [b, n, k, c]`` per edge."""
        out = torch.sigmoid(self.gate(en)) * self.out(self.norm_out(x))  # [b, n, k, c_p]
        return out * valid[..., None].to(out.dtype)

    def forward(
        self, edges: torch.Tensor, graph: KnnGraph, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """
        Args:
            edges: ``[b, n, k, c_p]`` edge features e_ij, j = ``graph.index[:, i, s]``.
            graph: the k-NN graph.
            chunk_size: residues per chunk (None = all at once).

        Returns:
            ``[b, n, k, c_p]`` update (zero at invalid edges).
        """
        layout = self.sequence_layout
        valid = graph.valid[:, layout.own(graph.n)]  # [b, n, k]
        en = self.norm_in(edges)
        a = recompute(self._edge_operand, self.proj_a, en, valid)  # [b, n, k, c]
        b = recompute(self._edge_operand, self.proj_b, en, valid)
        if self.mix == "outgoing":  # x_q = Σ_key a[key] ⊙ b[third(q, key)]
            axis, keys, third_values = "row", a, b
        else:  # x_q = Σ_key b[key] ⊙ a[third(q, key)]
            axis, keys, third_values = "column", b, a
        keys, third_values = layout.list_values(keys, axis), layout.gather(third_values)

        def lists_product(ids: torch.Tensor, third: torch.Tensor) -> torch.Tensor:
            return (gather_edges(keys, ids)[:, :, None] * gather_edges(third_values, third)).sum(3)

        x = over_lists(lists_product, graph, axis, chunk_size, layout)  # [b, n, k, c]
        return recompute(self._edge_output, x, en, valid)


class SparseTriangleAttention(SequenceParallel, TriangleAttention):
    """AF2 Alg. 13 (``node="starting"``, row lists) / Alg. 14 (``"ending"``, column lists) over
    the graph's edges; with ``triangle_bias=False``, sparse axial attention (row / column)."""

    def forward(
        self, edges: torch.Tensor, graph: KnnGraph, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """
        Args:
            edges: ``[b, n, k, c_p]``; graph: the k-NN graph; chunk_size: residues per chunk.

        Returns:
            ``[b, n, k, c_p]`` update (zero at invalid edges).
        """
        layout = self.sequence_layout
        axis = "row" if self.node == "starting" else "column"
        en = self.norm(edges)
        h, c = self.h, self.c
        edge_bias = missing = None  # set (and read) only with the triangle bias
        listed = layout.list_values(en, axis)  # the edges the lists hold
        if self.bias is not None:
            edge_bias = layout.gather(self.bias(en))  # [b, n, k, h], read at third edges
            missing = self.bias(self.norm(en.new_zeros(en.shape[-1])))  # [h]: W_b · LN(0)

        def lists_update(ids: torch.Tensor, third: torch.Tensor) -> torch.Tensor:
            b, ci, L = ids.shape
            x = gather_edges(listed, ids)  # [b, ci, L, c_p]
            q, k, v = self.qkv(x).view(b * ci, L, 3, h, c).permute(2, 0, 3, 1, 4)  # [b·ci, h, L, c]
            present = ids >= 0
            mask = (~present).to(x.dtype)[:, :, None, None, :] * MASK_BIAS  # [b, ci, 1, 1, L]
            if self.bias is not None:
                tri = gather_edges(edge_bias, third)  # [b, ci, Lq, Lk, h]
                tri = torch.where((third >= 0)[..., None], tri, missing.to(tri.dtype))
                mask = mask + tri.permute(0, 1, 4, 2, 3)  # [b, ci, h, Lq, Lk]
            mask = mask.expand(b, ci, h, L, L).reshape(b * ci, h, L, L)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
            o = o.permute(0, 2, 1, 3).reshape(b, ci, L, h * c)
            out = self.out(torch.sigmoid(self.gate(x)) * o)
            return out * present[..., None].to(out.dtype)

        return over_lists(lists_update, graph, axis, chunk_size, layout)
