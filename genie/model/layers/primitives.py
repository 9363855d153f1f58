"""Small building blocks shared by every layer: initialised linear maps, dropout, shared
dropout, sinusoidal encodings, masked pair masks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genie.model.layout import SequenceParallel


class Linear(nn.Linear):
    """``nn.Linear`` with the AF2 initialisations (Jumper et al. 2021, suppl. 1.11.4).

    init: ``default`` (LeCun normal), ``relu`` (He normal), ``gating`` (weights 0, bias 1, so a
    sigmoid gate starts open), ``final`` (all zeros, so a residual branch starts as identity).
    """

    def __init__(self, c_in: int, c_out: int, *, init: str = "default", bias: bool = True):
        super().__init__(c_in, c_out, bias=bias)
        with torch.no_grad():
            if init == "default":
                nn.init.trunc_normal_(self.weight, std=math.sqrt(1.0 / c_in))
            elif init == "relu":
                nn.init.trunc_normal_(self.weight, std=math.sqrt(2.0 / c_in))
            elif init in ("gating", "final"):
                self.weight.zero_()
            else:
                raise ValueError(f"unknown init '{init}' (default, relu, gating, final)")
            if bias:
                self.bias.fill_(1.0 if init == "gating" else 0.0)


class Dropout(SequenceParallel, nn.Module):
    """Element-wise dropout (``nn.Dropout``) of per-residue values ``[b, n, *]`` (residues on
    dim 1).

    Under sequence parallelism every process draws the mask of the whole chain, the draw one
    process would make, and keeps its own rows: a sharded step drops exactly what an unsharded
    step at the same padded length drops, and the random streams of the processes stay equal
    (at the price of drawing the whole mask on each).
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        layout = self.sequence_layout
        if layout.num_shards == 1:
            return F.dropout(x, self.p, training=True)
        whole = (x.shape[0], layout.full_length(x.shape[1]), *x.shape[2:])
        keep = F.dropout(x.new_ones(whole), self.p, training=True)  # 0 or 1 / (1 − p)
        return x * layout.local(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SharedDropout(nn.Module):
    """Dropout whose mask is shared along one dimension (AF2's row-/column-wise dropout).

    For a pair tensor ``[b, n, n, c]`` with ``shared_dim=1`` one mask ``[b, 1, n, c]`` drops the
    same channels of every row. Stores only the small mask for backward.
    """

    def __init__(self, p: float, *, shared_dim: int):
        super().__init__()
        self.p = p
        self.shared_dim = shared_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = list(x.shape)
        shape[self.shared_dim] = 1
        keep = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


def sinusoidal_encoding(positions: torch.Tensor, dim: int, *, max_period: float = 10000.0):
    """Transformer sinusoidal encoding.

    Args:
        positions: ``[*]`` integer or real positions (residue indices, timesteps).
        dim: even output size.

    Returns:
        ``[*, dim]``: sin of the first half of the frequencies, cos of the second half.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, device=positions.device, dtype=torch.float32)
        / half
    )
    angles = positions.float()[..., None] * freqs
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2:
        enc = torch.nn.functional.pad(enc, (0, 1))
    return enc


def pair_mask(mask: torch.Tensor) -> torch.Tensor:
    """``[b, n]`` residue mask to the ``[b, n, n]`` mask of pairs of real residues."""
    return mask[:, :, None] * mask[:, None, :]
