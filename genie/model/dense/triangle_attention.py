"""Triangle self-attention on dense pairs (AF2 Alg. 13 starting node, Alg. 14 ending node).

Notation: b batch, i/j/k residues, h heads, c channels per head, c_p pair channels.

    starting node: o_ij = Σ_k softmax_k(q_ij·k_ik/√c + b_jk) v_ik, gated by σ(W_g z_ij)

The ending-node variant is the starting-node variant of the transposed pair tensor, transposed
back. Without the triangle bias (``triangle_bias=False``) this is axial attention: row attention
(starting node) and column attention (ending node) over the pair tensor. On dense pairs it costs
O(n³) compute whatever the chunking; chunking bounds only the memory (O(chunk·n²)).
Rows i are processed in chunks of ``chunk_size``; each chunk calls PyTorch's scaled-dot-product
attention with the triangle bias ``b_jk`` (shared by all rows) plus the key
mask as an additive float mask. With ``kernels``
(:class:`~genie.model.dense.fused_kernels.FusedTriangleKernels`) each chunk's attention core may
run cuEquivariance's fused kernel instead (same projections and parameters;
:mod:`.fused_kernels`); the SDPA path stays the reference and the CPU path.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genie.model.dense.fused_kernels import FusedTriangleKernels, key_mask
from genie.model.layers.primitives import Linear
from genie.utils.chunking import chunked

MASK_BIAS = -1e4  # additive logit for padded keys (finite, so fp16/bf16 stay finite)


class TriangleAttention(nn.Module):
    """Args:
    c_p: pair channels; c_hidden: channels per head; n_heads: heads.
    node: ``starting`` (Alg. 13) or ``ending`` (Alg. 14).
    triangle_bias: False = axial attention (row or column attention, no bias b_jk).
    kernels: cuEquivariance's fused kernels, used for the calls they take (None: ours only).
    """

    def __init__(
        self,
        *,
        c_p: int,
        c_hidden: int,
        n_heads: int,
        node: Literal["starting", "ending"],
        triangle_bias: bool = True,
        kernels: FusedTriangleKernels | None = None,
    ):
        super().__init__()
        if node not in ("starting", "ending"):
            raise ValueError(f"node must be 'starting' or 'ending', got '{node}'")
        if kernels is not None and kernels.required and (c_hidden % 8 or c_hidden > 128):
            raise ValueError(
                "the fused triangle attention needs channels per head a multiple of 8 and at "
                f"most 128, got {c_hidden}"
            )
        self.node, self.h, self.c, self.kernels = node, n_heads, c_hidden, kernels
        self.norm = nn.LayerNorm(c_p)
        self.qkv = Linear(c_p, 3 * n_heads * c_hidden, bias=False)
        self.bias = Linear(c_p, n_heads, bias=False) if triangle_bias else None
        self.gate = Linear(c_p, n_heads * c_hidden, init="gating")
        self.out = Linear(n_heads * c_hidden, c_p, init="final")

    def forward(
        self, z: torch.Tensor, pair_mask: torch.Tensor, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """
        Args:
            z: ``[b, n, n, c_p]``.
            pair_mask: ``[b, n, n]``.
            chunk_size: rows i per chunk (None = all rows at once).

        Returns:
            ``[b, n, n, c_p]`` update.
        """
        if self.node == "ending":
            z, pair_mask = z.transpose(1, 2), pair_mask.transpose(1, 2)
        zn = self.norm(z)
        fused = self.kernels is not None and self.kernels.takes_attention(zn, head_dim=self.c)
        b, n = zn.shape[:2]
        if self.bias is not None:
            tri_bias = self.bias(zn).permute(0, 3, 1, 2)  # [b, h, j, k]
        elif fused:  # the kernel takes a dense bias: zeros
            tri_bias = zn.new_zeros(b, self.h, n, n)
        else:
            tri_bias = zn.new_zeros(1, 1, 1, 1)
        if fused:
            # the fused kernel's bias dtype (fp32; fp64 kept), cast once for all rows
            tri_bias = tri_bias.to(torch.promote_types(tri_bias.dtype, torch.float32))
            keys = key_mask(pair_mask)  # [b, i, 1, 1, k] bool
        else:  # mask of keys k per row i: [b, i, 1, 1, k]
            keys = (1.0 - pair_mask)[:, :, None, None, :] * MASK_BIAS

        def rows(sl: slice) -> torch.Tensor:
            zr = zn[:, sl]  # [b, i, j, c_p]
            q, k, v = self.qkv(zr).unflatten(-1, (3, self.h, self.c)).permute(3, 0, 1, 4, 2, 5)
            # q, k, v: [b, i, h, j, c]
            if fused:
                o = self.kernels.attention(q, k, v, bias=tri_bias[:, None], mask=keys[:, sl])
            else:
                bias = tri_bias[:, None] + keys[:, sl].to(zr.dtype)  # [b, i, h, j, k]
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
            o = o.permute(0, 1, 3, 2, 4).flatten(-2)  # [b, i, j, h*c]
            return self.out(torch.sigmoid(self.gate(zr)) * o)

        update = chunked(rows, z.shape[1], chunk_size, dim=1)
        return update.transpose(1, 2) if self.node == "ending" else update
