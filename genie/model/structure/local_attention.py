"""Single-track attention with sparse k-NN pairs: FlashIPA over factors pooled from the edges,
plus an optional local attention over each residue's k edges biased by the edges (DESIGN §3).

Notation: b batch, n residues, k neighbours, h heads, c channels per head, c_p edge channels.

Local edge attention (``LocalEdgeAttention``), for residue i over its neighbours j ∈ N(i):

    a_ij = softmax_j( q_i·k_j / √c + w_h·LN(e_ij) + β_h[clip(r_j − r_i)] )
    o_i  = W_o [ Σ_j a_ij v_j ‖ Σ_j a_ij LN(e_ij) ]

β (``useSpatialBias``) is a learned bias per head for each sequence separation inside
±``spatialBiasRange`` and 0 outside. DISCREPANCY (deliberate): the DESIGN's "FlashIPA plus an
optional local edge bias" would add the edge bias inside FlashIPA's softmax, which a fused kernel
cannot take without an n×n mask; here the local term is a second softmax over the k edges whose
output is added to FlashIPA's. Its output layer starts at zero, so a fresh model is FlashIPA alone.
Everything is invariant to rotations and translations (scalars, distances, offsets only).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genie.geometry.knn import gather_neighbors
from genie.geometry.rigid import Rigid
from genie.model.dense.triangle_attention import MASK_BIAS
from genie.model.layers.primitives import Linear
from genie.model.layout import SequenceParallel
from genie.model.representations import SparsePair
from genie.model.structure.flash_ipa import FlashIPA
from genie.utils.checkpointing import recompute
from genie.utils.chunking import chunked


class SpatialBias(nn.Module):
    """A learned per-head bias for each sequence separation in [−range, range], 0 outside."""

    def __init__(self, *, n_heads: int, max_separation: int):
        super().__init__()
        self.max_separation = max_separation
        self.table = nn.Parameter(torch.zeros(2 * max_separation + 1, n_heads))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        """``offsets [*]`` (r_j − r_i) -> ``[*, h]``."""
        inside = offsets.abs() <= self.max_separation
        rows = offsets.clamp(-self.max_separation, self.max_separation) + self.max_separation
        # F.embedding, not self.table[rows]: its backward is fast with many repeated rows
        return F.embedding(rows, self.table) * inside[..., None].to(self.table.dtype)


class LocalEdgeAttention(SequenceParallel, nn.Module):
    def __init__(
        self, *, c_s: int, c_p: int, c_hidden: int, n_heads: int, spatial_range: int | None,
    ):  # fmt: skip
        super().__init__()
        self.h, self.c = n_heads, c_hidden
        self.linear_q = Linear(c_s, n_heads * c_hidden)
        self.linear_kv = Linear(c_s, 2 * n_heads * c_hidden)
        self.edge_norm = nn.LayerNorm(c_p)
        self.edge_bias = Linear(c_p, n_heads, bias=False)
        self.spatial = (
            SpatialBias(n_heads=n_heads, max_separation=spatial_range) if spatial_range else None
        )
        self.linear_out = Linear(n_heads * (c_hidden + c_p), c_s, init="final")

    def forward(
        self, s: torch.Tensor, pair: SparsePair, mask: torch.Tensor, *, chunk_size: int | None
    ) -> torch.Tensor:
        """
        Args:
            s: ``[b, n, c_s]``; pair: sparse edges and graph; mask: ``[b, n]``;
            chunk_size: residues per chunk (None = all).

        Returns:
            ``[b, n, c_s]`` update, zero at padding.
        """
        b, n, _ = s.shape
        h, c = self.h, self.c
        graph, own = pair.graph, self.sequence_layout.own(pair.graph.n)
        index, valid, offsets = graph.index[:, own], graph.valid[:, own], graph.offsets[:, own]
        q = self.linear_q(s).view(b, n, h, c)
        kv = self.sequence_layout.gather(self.linear_kv(s))  # [b, n, 2·h·c], every key residue

        def rows(sl: slice) -> torch.Tensor:
            def block(q_rows, kv_all, edges_rows, index, valid, offsets):
                k, v = gather_neighbors(kv_all, index).view(*index.shape, 2, h, c).unbind(3)
                en = self.edge_norm(edges_rows)  # [b, i, k, c_p]
                logits = torch.einsum("bihc,bikhc->bikh", q_rows, k) / math.sqrt(c)
                logits = logits + self.edge_bias(en)
                if self.spatial is not None:
                    logits = logits + self.spatial(offsets)
                logits = logits + (~valid)[..., None].to(logits.dtype) * MASK_BIAS
                a = torch.softmax(logits.float(), dim=2).to(v.dtype)  # [b, i, k, h]
                o_v = torch.einsum("bikh,bikhc->bihc", a, v).flatten(-2)
                o_e = torch.einsum("bikh,bikc->bihc", a.to(en.dtype), en).flatten(-2)
                return self.linear_out(torch.cat([o_v, o_e], dim=-1))

            return recompute(
                block, q[:, sl], kv, pair.edges[:, sl], index[:, sl], valid[:, sl], offsets[:, sl]
            )

        return chunked(rows, n, chunk_size, dim=1) * mask[..., None].to(s.dtype)


class SparseFlashIPA(nn.Module):
    """FlashIPA through the pooled factors of a :class:`SparsePair`, plus (optionally) the local
    edge attention in residue chunks of ``chunk_size`` (``sparseChunkSize``); a
    :class:`~genie.model.protocols.StructureAttention`."""

    def __init__(
        self, *, flash: FlashIPA, local: LocalEdgeAttention | None, chunk_size: int | None = None
    ):
        super().__init__()
        self.flash, self.local, self.chunk_size = flash, local, chunk_size

    def forward(
        self, s: torch.Tensor, pair: SparsePair, frames: Rigid, mask: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            s: ``[b, n, c_s]``; pair: sparse edges with pooled factors; frames: ``[b, n]`` (nm);
            mask: ``[b, n]``.

        Returns:
            ``[b, n, c_s]`` update of s.
        """
        out = self.flash(s, pair.factors, frames, mask)
        if self.local is not None:
            out = out + self.local(s, pair, mask, chunk_size=self.chunk_size)
        return out
