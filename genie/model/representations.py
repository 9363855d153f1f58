"""Pair representations: dense ``z [b, n, n, c]``, per-residue factors ``U, V [b, n, r, c]``, or
sparse k-NN edges ``e [b, n, k, c_p]`` with pooled factors (:class:`SparsePair`).

Notation: b batch, i/j residues (n), r factor rank, c pair channels, h heads.

A factorised pair tensor is z_ij = Σ_r U_ir ⊙ V_jr (DESIGN §3); it is never materialised
outside tests. Consumers that need the pair tensor only through linear maps — IPA's pair bias
b_hij = Σ_c W_hc z_ijc and its pair output Σ_j a_hij z_ij — get them exactly, one query chunk at a
time, through the two methods both classes share:

    bias(linear, rows)  -> [b, h, i, n]    W z_ij for the query rows i
    attend(attn, rows)  -> [b, i, h, c]    Σ_j attn_hij z_ij

For factors: b_hij = Σ_{r,c} (W_hc U_irc) V_jrc, one matrix product over the flattened (r, c)
axis; Σ_j a_hij z_ij = Σ_r U_ir ⊙ (Σ_j a_hij V_jr). Memory O(chunk · n · h), never n² · c.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genie.geometry.graph import KnnGraph


@dataclass(frozen=True)
class DensePair:
    """``z [b, n, n, c]``."""

    z: torch.Tensor

    @property
    def channels(self) -> int:
        return self.z.shape[-1]

    def bias(self, linear: nn.Linear, rows: slice) -> torch.Tensor:
        """``[b, h, i, n]``: ``linear(z_ij)`` for query rows ``i``."""
        return linear(self.z[:, rows]).permute(0, 3, 1, 2)

    def attend(self, attn: torch.Tensor, rows: slice) -> torch.Tensor:
        """``attn [b, h, i, n]`` -> ``[b, i, h, c]`` = Σ_j attn_hij z_ij."""
        return attn.to(self.z.dtype).transpose(1, 2) @ self.z[:, rows]

    def normalized(self, norm: nn.LayerNorm) -> DensePair:
        return DensePair(norm(self.z))


@dataclass(frozen=True)
class PairFactors:
    """``u, v [b, n, r, c]`` with z_ij = Σ_r u_ir ⊙ v_jr."""

    u: torch.Tensor
    v: torch.Tensor

    @property
    def channels(self) -> int:
        return self.u.shape[-1]

    @property
    def rank(self) -> int:
        return self.u.shape[-2]

    def materialize(self) -> torch.Tensor:
        """``[b, n, n, c]`` — for tests and small n only."""
        return torch.einsum("birc,bjrc->bijc", self.u, self.v)

    def bias(self, linear: nn.Linear, rows: slice) -> torch.Tensor:
        """``[b, h, i, n]``: ``linear(z_ij)`` for query rows ``i``, without forming z."""
        b, n, r, c = self.v.shape
        u = self.u[:, rows]  # [b, i, r, c]
        scaled = u[:, None] * linear.weight[None, :, None, None, :]  # [b, h, i, r, c]
        out = scaled.flatten(-2) @ self.v.reshape(b, 1, n, r * c).transpose(-1, -2)  # [b, h, i, n]
        if linear.bias is not None:
            out = out + linear.bias[None, :, None, None]
        return out

    def attend(self, attn: torch.Tensor, rows: slice) -> torch.Tensor:
        """``attn [b, h, i, n]`` -> ``[b, i, h, c]`` = Σ_r u_ir ⊙ Σ_j attn_hij v_jr."""
        b, n, r, c = self.v.shape
        pooled = attn.to(self.v.dtype) @ self.v.reshape(b, 1, n, r * c)  # [b, h, i, r·c]
        pooled = pooled.unflatten(-1, (r, c))  # [b, h, i, r, c]
        return (pooled * self.u[:, None, rows]).sum(-2).transpose(1, 2)  # [b, i, h, c]

    def normalized(self, norm: nn.LayerNorm) -> PairFactors:
        """Layer-normalise each factor (DISCREPANCY: not LN of z, which would break the rank)."""
        return PairFactors(norm(self.u), norm(self.v))

    def masked(self, mask: torch.Tensor) -> PairFactors:
        """Zero the factors of padded residues (``mask [b, n]``)."""
        m = mask[:, :, None, None].to(self.u.dtype)
        return PairFactors(self.u * m, self.v * m)

    @property
    def factors(self) -> PairFactors:
        """The factors FlashIPA reads (these)."""
        return self

    def with_factors(self, factors: PairFactors) -> PairFactors:
        return factors


@dataclass(frozen=True)
class SparsePair:
    """Sparse k-NN pairs (stages 3 V2, 4): edges ``e [b, n, k, c_p]`` on ``graph`` (a
    :class:`~genie.geometry.graph.KnnGraph`) and per-residue factors ``[b, n, r, c_f]``
    pooled from the edges, through which FlashIPA attends globally."""

    edges: torch.Tensor
    graph: KnnGraph
    factors: PairFactors

    @property
    def channels(self) -> int:
        """Channels of the factors (what FlashIPA's pair output carries)."""
        return self.factors.channels

    def normalized(self, norm: nn.LayerNorm) -> SparsePair:
        """Layer-normalise the factors (the edges are normalised by each consumer)."""
        return self.with_factors(self.factors.normalized(norm))

    def with_factors(self, factors: PairFactors) -> SparsePair:
        return SparsePair(self.edges, self.graph, factors)


PairRepresentation = DensePair | PairFactors | SparsePair
