"""Invariant Point Attention with pair bias and pair output (AF2 Alg. 22), dense pairs.

Notation: b batch, i queries, j keys (n residues each), h heads, c scalar channels per head,
p points per head (P_qk query/key points, P_v value points), c_p pair channels. Frames and
points are in nm inside the structure module (see structure.py).

    ℓ_hij = w_L · ( q_hi·k_hj/√c + b_hij − (γ_h/2) Σ_p ‖T_i q̃_hip − T_j k̃_hjp‖² ),  w_L = √(1/3)
    γ_h = softplus(θ_h) · √(2 / (9 P_qk))

The squared distance is expanded as ‖q̃‖² + ‖k̃‖² − 2 q̃·k̃: the ‖q̃_i‖² term is constant along j
and cancels in the softmax, the cross term joins the scalar term in one matrix product, so the
``[b, n, n, h, p, 3]`` point-difference tensor of the reference is never built.
Outputs per query: scalar values, value points brought back to the local frame, their norms,
and the pair output Σ_j a_hij z_ij; concatenated and projected to c_s. The pair tensor comes as
a :mod:`~genie.model.representations` (dense or factorised): bias and pair output are taken
through its ``bias``/``attend`` methods, one query chunk at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genie.geometry.rigid import Rigid
from genie.model.layers.primitives import Linear
from genie.model.representations import PairRepresentation
from genie.utils.checkpointing import recompute
from genie.utils.chunking import chunked

MASK_LOGIT = -1e5  # added to the logits of padded keys (computed in fp32)


def _fp32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half precision to fp32 (fp64 stays fp64): logits are never formed in 16 bits."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class InvariantPointAttention(nn.Module):
    """Args: c_s single channels; c_p pair channels; c_hidden, n_heads, n_qk_points, n_v_points
    the IPA sizes; chunk_size queries per chunk (None = all at once; chunks are recomputed in
    backward, so training stores no ``[h, n, n]``)."""

    def __init__(
        self,
        *,
        c_s: int,
        c_p: int,
        c_hidden: int,
        n_heads: int,
        n_qk_points: int,
        n_v_points: int,
        chunk_size: int | None = None,
    ):
        super().__init__()
        self.chunk_size = chunk_size
        self.h, self.c, self.p_qk, self.p_v = n_heads, c_hidden, n_qk_points, n_v_points
        self.linear_q = Linear(c_s, n_heads * c_hidden)
        self.linear_kv = Linear(c_s, 2 * n_heads * c_hidden)
        self.linear_q_pts = Linear(c_s, n_heads * n_qk_points * 3)
        self.linear_kv_pts = Linear(c_s, n_heads * (n_qk_points + n_v_points) * 3)
        self.linear_bias = Linear(c_p, n_heads)
        # softplus(θ) = 1 at initialisation (AF2 suppl. 1.8.2)
        self.head_weights = nn.Parameter(torch.full((n_heads,), math.log(math.e - 1.0)))
        self.linear_out = Linear(n_heads * (c_hidden + 4 * n_v_points + c_p), c_s, init="final")

    def forward(
        self,
        s: torch.Tensor,
        pair: PairRepresentation,
        frames: Rigid,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            s: ``[b, n, c_s]`` single representation.
            pair: dense ``[b, n, n, c_p]`` or factorised ``[b, n, r, c_p]`` pair representation.
            frames: ``[b, n]`` residue frames, translations in nm.
            mask: ``[b, n]`` 1 for real residues.

        Returns:
            ``[b, n, c_s]`` update of s (invariant to global rotations and translations).
        """
        b, n, _ = s.shape
        h, c, p_qk, p_v = self.h, self.c, self.p_qk, self.p_v
        rots, trans = frames.rots[:, :, None], frames.trans[:, :, None]  # broadcast over points
        local = Rigid(rots, trans)

        q = self.linear_q(s).view(b, n, h, c)
        k, v = self.linear_kv(s).view(b, n, h, 2 * c).split(c, dim=-1)
        q_pts = local.apply(self.linear_q_pts(s).view(b, n, h * p_qk, 3))  # global, [b, n, h·p, 3]
        kv_pts = local.apply(self.linear_kv_pts(s).view(b, n, h * (p_qk + p_v), 3))
        kv_pts = kv_pts.view(b, n, h, p_qk + p_v, 3)
        k_pts, v_pts = kv_pts.split([p_qk, p_v], dim=3)  # [b, n, h, p, 3]

        gamma = F.softplus(self.head_weights) * math.sqrt(2.0 / (9.0 * p_qk))  # [h]
        w_l = math.sqrt(1.0 / 3.0)
        # Augmented query/key: [q/√c ‖ γ q̃] · [k ‖ k̃] = q·k/√c + γ q̃·k̃
        q_aug = torch.cat([q / math.sqrt(c), gamma[:, None] * q_pts.view(b, n, h, p_qk * 3)], -1)
        k_aug = torch.cat([k, k_pts.reshape(b, n, h, p_qk * 3)], dim=-1)
        q_aug, k_aug = _fp32(q_aug.transpose(1, 2)), _fp32(k_aug.transpose(1, 2))  # [b, h, n, ·]
        k_norm = (_fp32(k_pts) ** 2).sum(dim=(-1, -2)).transpose(1, 2)  # [b, h, j]
        key_term = -0.5 * gamma[:, None] * k_norm + (1.0 - mask[:, None, :]) * MASK_LOGIT / w_l
        values = torch.cat([v, v_pts.reshape(b, n, h, p_v * 3)], dim=-1).transpose(1, 2)

        def queries(sl: slice) -> torch.Tensor:
            bias = _fp32(pair.bias(self.linear_bias, sl))  # [b, h, i, j]
            with torch.autocast(s.device.type, enabled=False):  # logits and softmax in fp32
                scores = q_aug[:, :, sl] @ k_aug.transpose(-1, -2)
                attn = torch.softmax(w_l * (scores + bias + key_term[:, :, None]), dim=-1)
            o = (attn.to(values.dtype) @ values).transpose(1, 2)  # [b, i, h, c + 3 p_v]
            o_scalar, o_pts = o.split([c, 3 * p_v], dim=-1)
            o_pts = Rigid(rots[:, sl], trans[:, sl]).invert_apply(o_pts.reshape(b, -1, h * p_v, 3))
            o_norm = torch.sqrt((o_pts**2).sum(-1) + 1e-8)  # [b, i, h·p_v]
            o_pair = pair.attend(attn, sl)  # [b, i, h, c_p]
            feats = [o_scalar.flatten(-2), o_pts.flatten(-2), o_norm, o_pair.flatten(-2)]
            return self.linear_out(torch.cat(feats, dim=-1))

        if self.chunk_size is None:
            return queries(slice(0, n)) * mask[..., None]
        # Chunked: each query chunk is recomputed in backward, so training stores no [h, n, n].
        out = chunked(lambda sl: recompute(queries, sl), n, self.chunk_size, dim=1)
        return out * mask[..., None]
