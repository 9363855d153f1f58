"""Single features of the denoiser (Genie §3.2): residue-index and timestep encodings.

Notation: b batch, n residues, c_s single channels.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.model.layers.primitives import Linear, sinusoidal_encoding


class SingleFeatureNet(nn.Module):
    """Residue-index and timestep encodings -> single representation ``[b, n, c_s]``."""

    def __init__(self, *, c_s: int, c_pos_emb: int, c_timestep_emb: int):
        super().__init__()
        self.c_pos_emb = c_pos_emb
        self.c_timestep_emb = c_timestep_emb
        self.linear = Linear(c_pos_emb + c_timestep_emb, c_s)

    def forward(
        self, residue_index: torch.Tensor, timesteps: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            residue_index: ``[b, n]`` residue positions.
            timesteps: ``[b]`` diffusion step of each chain.
            mask: ``[b, n]`` 1 for real residues.

        Returns:
            ``[b, n, c_s]`` single features (zero at padding).
        """
        pos = sinusoidal_encoding(residue_index, self.c_pos_emb)  # [b, n, c_pos]
        time = sinusoidal_encoding(timesteps, self.c_timestep_emb)  # [b, c_t]
        time = time[:, None, :].expand(-1, pos.shape[1], -1)  # [b, n, c_t]
        features = torch.cat([pos, time], dim=-1).to(self.linear.weight.dtype)
        return self.linear(features) * mask[..., None]
