"""Triangle multiplicative update on dense pairs (AF2 Alg. 11 outgoing, Alg. 12 incoming).

Notation: b batch, i/j/k residues (n of each), c_p pair channels, c hidden channels.

    outgoing: x_ij = Σ_k a_ik ⊙ b_jk        incoming: x_ij = Σ_k a_ki ⊙ b_kj
    a = σ(W_ag LN(z)) ⊙ W_a LN(z) ⊙ mask,  b likewise,  out = σ(W_g LN(z)) ⊙ W_o LN(x)

The incoming product equals the outgoing product of the transposed operands
(Σ_k a_ki b_kj = Σ_k a(zᵀ)_ik b(zᵀ)_jk), so one code path serves both ``mix`` values: only the
operands read the transposed pair tensor; the output gate reads z itself.
Memory: projections and gates are recomputed in backward; only z, LN(z), the two operands and x
are stored (5 pair-sized tensors instead of ~12). The operands are projected straight into the
channel-first layout ``[b, c, i, k]`` that the batched matrix product needs (no transposed copy).
With ``chunk_size`` the rows are processed in chunks, so an inference pass holds one extra
pair-sized tensor (the b operand).
With ``kernels`` (:class:`~genie.model.dense.fused_kernels.FusedTriangleKernels`) a call may run
cuEquivariance's fused update instead, from the same parameters (:mod:`.fused_kernels`); this
code stays the reference and the CPU path.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from genie.model.dense.fused_kernels import FusedTriangleKernels, multiplication_arguments
from genie.model.layers.primitives import Linear
from genie.utils.checkpointing import recompute
from genie.utils.chunking import chunked


class TriangleMultiplication(nn.Module):
    """Args:
    c_p: pair channels; c_hidden: channels of the operands a, b.
    mix: ``outgoing`` (Alg. 11) or ``incoming`` (Alg. 12).
    kernels: cuEquivariance's fused kernels, used for the calls they take (None: ours only).
    """

    def __init__(
        self,
        *,
        c_p: int,
        c_hidden: int,
        mix: Literal["outgoing", "incoming"],
        kernels: FusedTriangleKernels | None = None,
    ):
        super().__init__()
        if mix not in ("outgoing", "incoming"):
            raise ValueError(f"mix must be 'outgoing' or 'incoming', got '{mix}'")
        if kernels is not None and kernels.required and c_hidden % 32:
            raise ValueError(
                f"the fused multiplicative update needs c_hidden a multiple of 32, got {c_hidden}"
            )
        self.mix, self.c_hidden, self.kernels = mix, c_hidden, kernels
        self.norm_in = nn.LayerNorm(c_p)
        self.proj_a = Linear(c_p, 2 * c_hidden)  # value ‖ gate
        self.proj_b = Linear(c_p, 2 * c_hidden)
        self.gate = Linear(c_p, c_p, init="gating")
        self.norm_out = nn.LayerNorm(c_hidden)
        self.out = Linear(c_hidden, c_p, init="final")

    @staticmethod
    def _operand(proj: Linear, zn: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """LN(z) rows ``[b, i, k, c_p]`` -> gated operand, channel-first ``[b, c, i, k]``."""
        b, i, k, c_p = zn.shape
        flat = zn.reshape(b, i * k, c_p).transpose(1, 2)  # [b, c_p, i·k], a view when contiguous
        out = (proj.weight @ flat).view(b, -1, i, k) + proj.bias[:, None, None]  # [b, 2c, i, k]
        value, gate = out.chunk(2, dim=1)
        return value * torch.sigmoid(gate) * mask[:, None]

    def _finish(self, x: torch.Tensor, zn: torch.Tensor) -> torch.Tensor:
        """x ``[b, c, i, j]`` and LN(z) rows ``[b, i, j, c_p]`` -> update ``[b, i, j, c_p]``."""
        x = self.norm_out(x.permute(0, 2, 3, 1))
        return torch.sigmoid(self.gate(zn)) * self.out(x)

    def forward(
        self, z: torch.Tensor, pair_mask: torch.Tensor, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """
        Args:
            z: ``[b, n, n, c_p]`` pair representation.
            pair_mask: ``[b, n, n]`` 1 where both residues are real.
            chunk_size: rows i per chunk (None = all at once). The fused kernel takes all rows
                at once: a chunked call stays ours unless the kernels are required, and then
                runs unchunked.

        Returns:
            ``[b, n, n, c_p]`` update (add it to z).
        """
        if self.kernels is not None and self.kernels.takes_multiplication(
            z, c_hidden=self.c_hidden, chunk_size=chunk_size
        ):
            weights = multiplication_arguments(
                norm_in=self.norm_in, proj_a=self.proj_a, proj_b=self.proj_b, gate=self.gate,
                norm_out=self.norm_out, out=self.out,
            )  # fmt: skip
            return self.kernels.multiplication(z, pair_mask, direction=self.mix, weights=weights)
        zn = self.norm_in(z)  # [b, n, n, c_p], computed once, stored
        zt, mt = zn, pair_mask
        if self.mix == "incoming":
            zt, mt = zn.transpose(1, 2), pair_mask.transpose(1, 2)
        operand_b = recompute(self._operand, self.proj_b, zt, mt)  # [b, c, j, k]

        def rows(sl: slice) -> torch.Tensor:
            operand_a = recompute(self._operand, self.proj_a, zt[:, sl], mt[:, sl])  # [b, c, i, k]
            x = operand_a @ operand_b.transpose(-1, -2)  # [b, c, i, j]
            return recompute(self._finish, x, zn[:, sl])

        return chunked(rows, z.shape[1], chunk_size, dim=1)
