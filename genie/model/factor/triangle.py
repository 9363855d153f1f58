"""Triangle operations in factor algebra (stage 2), for z_ij = Σ_r U_ir ⊙ V_jr.

Notation: b batch, i/j/k residues (n), r pair rank, t operand rank, c channels, h heads.

Triangle multiplicative update (DESIGN §3). AF2's update applies LayerNorm and gates to every
pair element, which would destroy the low rank, so projections and gates act on the factors:
operands a_ik = Σ_t A_it ⊙ A'_kt and b_jk = Σ_t B_jt ⊙ B'_kt (t < triangleUpdateRank). Then

    outgoing  x_ij = Σ_k a_ik ⊙ b_jk = Σ_{t,s} A_it ⊙ B_js ⊙ M_ts,   M_ts = Σ_k A'_kt ⊙ B'_ks
    incoming  x_ij = Σ_k a_ki ⊙ b_kj = Σ_{t,s} A'_it ⊙ B'_js ⊙ M_ts, M_ts = Σ_k A_kt ⊙ B_ks

one contraction over k ([t, t, c], O(n·t²·c)), giving x exactly as rank-t² factors
(X_i,(t,s) = A_it ⊙ M_ts, Y_j,(t,s) = B_js). A learned projection maps them back to rank r
(re-factorisation) and the result is added to U and V.

Triangle attention on factors. Starting node, row i: logits_jk = q_ij·k_ik/√c + b_jk with
b_jk = Σ_c W_hc z_jkc = (U_j ⊙ W_h)·V_k — an inner product, so it joins q·k as extra
query/key columns: the attention of each row runs as one SDPA call with no bias tensor (the
same augmentation as FlashIPA). Rows of z are materialised ``triangleAttentionChunkSize`` at a
time: memory O(chunk · n · c). The dense row update o_i· is brought back to factor form by
projecting it on the current column factors, ΔU_ir = (1/n) Σ_j o_ij ⊙ V_jr over the n real
residues j (the least-squares coefficients when the V_r are orthonormal). The ending node is
the starting node of zᵀ, which swaps the roles of U and V.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genie.model.layers.primitives import Linear
from genie.model.representations import PairFactors
from genie.utils.checkpointing import recompute
from genie.utils.chunking import chunked

MASK_VALUE = 3e4  # key column weight that drives padded keys' logits to about −3e4


class FactorTriangleMultiplication(nn.Module):
    def __init__(
        self, *, c_f: int, rank: int, update_rank: int, mix: Literal["outgoing", "incoming"]
    ):
        super().__init__()
        if mix not in ("outgoing", "incoming"):
            raise ValueError(f"mix must be 'outgoing' or 'incoming', got '{mix}'")
        self.mix, self.t, self.c = mix, update_rank, c_f
        self.norm = nn.LayerNorm(c_f)
        # value ‖ gate for each of the four operand factors A, A', B, B' (rank t each)
        self.proj = nn.ModuleDict(
            {name: Linear(rank * c_f, 2 * update_rank * c_f) for name in ("a", "a2", "b", "b2")}
        )
        # zero-initialised: the update starts as the identity on (U, V)
        self.refactor_u = Linear(update_rank**2, rank, bias=False, init="final")
        self.refactor_v = Linear(update_rank**2, rank, bias=False, init="final")

    def _operand(self, name: str, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Factor ``[b, n, r, c]`` -> gated operand factor ``[b, n, t, c]``."""
        b, n = f.shape[:2]
        value, gate = self.proj[name](f.flatten(2)).view(b, n, 2, self.t, self.c).unbind(2)
        return value * torch.sigmoid(gate) * mask[:, :, None, None]

    def operands(self, pair: PairFactors, mask: torch.Tensor):
        """The rank-t² factors (X, Y) of x ``[b, n, t², c]`` (exposed for tests)."""
        u, v = self.norm(pair.u), self.norm(pair.v)
        a, a2 = self._operand("a", u, mask), self._operand("a2", v, mask)
        b, b2 = self._operand("b", u, mask), self._operand("b2", v, mask)
        if self.mix == "outgoing":
            rows, cols, left, right = a, b, a2, b2
        else:
            rows, cols, left, right = a2, b2, a, b
        m = torch.einsum("bktc,bksc->btsc", left, right)  # [b, t, t, c], contraction over k
        x = (rows[:, :, :, None] * m[:, None]).flatten(2, 3)  # [b, n, t·t, c]
        y = cols[:, :, None, :].expand(-1, -1, self.t, -1, -1).flatten(2, 3)  # [b, n, t·t, c]
        return x, y

    def forward(self, pair: PairFactors, mask: torch.Tensor) -> PairFactors:
        """``pair`` (factors ``[b, n, r, c]``), ``mask [b, n]`` -> updated factors."""
        x, y = self.operands(pair, mask)
        du = self.refactor_u(x.transpose(-1, -2)).transpose(-1, -2)  # [b, n, r, c]
        dv = self.refactor_v(y.transpose(-1, -2)).transpose(-1, -2)
        return PairFactors(pair.u + du, pair.v + dv)


class FactorTriangleAttention(nn.Module):
    """Factorised triangle attention around the ``node`` (module docstring); rows i are
    processed ``chunk_size`` at a time (None = all rows together)."""

    def __init__(
        self, *, c_f: int, rank: int, c_hidden: int, n_heads: int,
        node: Literal["starting", "ending"], chunk_size: int | None = None,
    ):  # fmt: skip
        super().__init__()
        if node not in ("starting", "ending"):
            raise ValueError(f"node must be 'starting' or 'ending', got '{node}'")
        self.node, self.h, self.c, self.rank, self.c_f = node, n_heads, c_hidden, rank, c_f
        self.chunk_size = chunk_size
        self.norm = nn.LayerNorm(c_f)
        self.qkv = Linear(c_f, 3 * n_heads * c_hidden, bias=False)
        self.bias = Linear(c_f, n_heads, bias=False)
        self.gate = Linear(c_f, n_heads * c_hidden, init="gating")
        self.out = Linear(n_heads * c_hidden, c_f, init="final")

    def forward(self, pair: PairFactors, mask: torch.Tensor) -> PairFactors:
        """``pair`` (factors ``[b, n, r, c_f]``), ``mask [b, n]`` -> updated factors.

        Under autograd each row chunk is recomputed in backward, so only O(n · r · c) is stored.
        """
        u, v = (pair.u, pair.v) if self.node == "starting" else (pair.v, pair.u)
        u, v = self.norm(u), self.norm(v)
        b, n, r, c_f = u.shape
        h, c = self.h, self.c
        # Bias b_jk = Σ_{r,c} (W_hc U_jrc) V_krc as extra query/key columns: [b, h, n, r·c_f].
        bias_q = (u[:, None] * self.bias.weight[None, :, None, None, :]).flatten(-2)
        bias_k = v[:, None].expand(-1, h, -1, -1, -1).flatten(-2)
        # Mask column: 1 in every query, 0 / −MASK_VALUE in valid / padded keys.
        ones = bias_q.new_ones(b, h, n, 1)
        key_mask = ((mask - 1.0) * MASK_VALUE)[:, None, :, None].expand(-1, h, -1, -1)
        q_extra = torch.cat([bias_q, ones], dim=-1)  # [b, h, j, r·c_f + 1]
        k_extra = torch.cat([bias_k, key_mask.to(bias_k.dtype)], dim=-1)

        n_real = mask.sum(-1).clamp_min(1.0)  # [b], the 1/n of the projection counts real j

        def rows(sl: slice) -> torch.Tensor:
            z_rows = torch.einsum("birc,bjrc->bijc", u[:, sl], v)  # [b, i, n, c_f]
            q, k, val = self.qkv(z_rows).unflatten(-1, (3, h, c)).permute(3, 0, 1, 4, 2, 5)
            # q, k, val: [b, i, h, n, c]; row i attends over keys k with bias b_jk.
            i = q.shape[1]
            q = torch.cat([q / math.sqrt(c), q_extra[:, None].expand(-1, i, -1, -1, -1)], -1)
            k = torch.cat([k, k_extra[:, None].expand(-1, i, -1, -1, -1)], -1)
            o = F.scaled_dot_product_attention(q, k, val, scale=1.0)  # [b, i, h, n, c]
            o = o.permute(0, 1, 3, 2, 4).flatten(-2)  # [b, i, n, h·c]
            o = self.out(torch.sigmoid(self.gate(z_rows)) * o)  # [b, i, n, c_f]
            o = o * mask[:, sl, None, None] * mask[:, None, :, None]
            # Project the row update on the column factors: ΔU_ir = (1/n) Σ_j o_ij ⊙ V_jr.
            return torch.einsum("bijc,bjrc->birc", o, v) / n_real[:, None, None, None]

        delta = chunked(lambda sl: recompute(rows, sl), n, self.chunk_size, dim=1)  # [b, n, r, c_f]
        if self.node == "starting":
            return PairFactors(pair.u + delta, pair.v)
        return PairFactors(pair.u, pair.v + delta)
