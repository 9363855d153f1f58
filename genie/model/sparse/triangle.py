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
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genie.geometry.graph import KnnGraph, gather_edges, scatter_edges
from genie.model.dense.triangle_attention import MASK_BIAS, TriangleAttention
from genie.model.dense.triangle_multiplication import TriangleMultiplication
from genie.utils.checkpointing import recompute
from genie.utils.chunking import chunk_slices


def over_lists(
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    graph: KnnGraph,
    axis: str,
    chunk_size: int | None,
) -> torch.Tensor:
    """Run ``fn(lists [b, ci, L], third [b, ci, L, L]) -> [b, ci, L, c]`` over chunks of
    residues' edge lists and put the results back on the edges: ``[b, n, k, c]``.

    Each chunk is recomputed in backward (only its inputs are stored)."""
    lists = graph.lists(axis)  # [b, n, L]
    n = graph.n

    def chunk(ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            third = graph.third_edges(axis, ids)  # [b, ci, L, L]
        return fn(ids, third)

    pieces = [recompute(chunk, lists[:, piece]) for piece in chunk_slices(n, chunk_size)]
    out = torch.cat(pieces, dim=1)  # [b, n, L, c]
    if axis == "row":
        return out  # slot s of row i is edge i·k + s already
    return scatter_edges(out, lists, n=n, k=graph.k)


class SparseTriangleMultiplication(TriangleMultiplication):
    """AF2 Alg. 11 (``mix="outgoing"``) / Alg. 12 (``"incoming"``) over the graph's edges."""

    def _edge_operand(self, proj, en: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        value, gate = proj(en).chunk(2, dim=-1)  # [b, n, k, c] each
        return value * torch.sigmoid(gate) * valid[..., None].to(value.dtype)

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
        en = self.norm_in(edges)
        a = recompute(self._edge_operand, self.proj_a, en, graph.valid)  # [b, n, k, c]
        b = recompute(self._edge_operand, self.proj_b, en, graph.valid)
        outgoing = self.mix == "outgoing"

        def lists_update(ids: torch.Tensor, third: torch.Tensor) -> torch.Tensor:
            if outgoing:  # x_q = Σ_key a[key] ⊙ b[third(q, key)]
                x = (gather_edges(a, ids)[:, :, None] * gather_edges(b, third)).sum(3)
            else:  # x_q = Σ_key a[third(q, key)] ⊙ b[key]
                x = (gather_edges(a, third) * gather_edges(b, ids)[:, :, None]).sum(3)
            gate = torch.sigmoid(self.gate(gather_edges(en, ids)))  # [b, ci, L, c_p]
            out = gate * self.out(self.norm_out(x))
            return out * (ids >= 0)[..., None].to(out.dtype)

        return over_lists(lists_update, graph, "row" if outgoing else "column", chunk_size)


class SparseTriangleAttention(TriangleAttention):
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
        en = self.norm(edges)
        h, c = self.h, self.c
        edge_bias = missing = None  # set (and read) only with the triangle bias
        if self.bias is not None:
            edge_bias = self.bias(en)  # [b, n, k, h]
            missing = self.bias(self.norm(en.new_zeros(en.shape[-1])))  # [h]: W_b · LN(0)

        def lists_update(ids: torch.Tensor, third: torch.Tensor) -> torch.Tensor:
            b, ci, L = ids.shape
            x = gather_edges(en, ids)  # [b, ci, L, c_p]
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

        axis = "row" if self.node == "starting" else "column"
        return over_lists(lists_update, graph, axis, chunk_size)
