"""Position-wise transition (AF2 Alg. 15): LN -> Linear(c, n·c) -> ReLU -> Linear(n·c, c).

Used on pair elements ``[b, n, n, c_p]``; recomputed in backward so that only its input is
stored (the hidden activation is n times larger than the input).
"""

from __future__ import annotations

import torch
from torch import nn

from genie.model.layers.primitives import Linear
from genie.utils.checkpointing import recompute


class Transition(nn.Module):
    def __init__(self, *, c: int, expansion: int):
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.linear_in = Linear(c, expansion * c, init="relu")
        self.linear_out = Linear(expansion * c, c, init="final")

    def _update(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.linear_out(torch.relu(self.linear_in(self.norm(x)))) * mask[..., None]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``[*, c]`` features (e.g. ``[b, n, n, c_p]``).
            mask: ``[*]`` 1 for real positions.

        Returns:
            ``[*, c]`` update (add it to x).
        """
        return recompute(self._update, x, mask)
