"""Gaussian diffusion on Cα coordinates: Genie's cosine schedule and forward noising.

    ᾱ_t = cos²( t/(T+1) · π/2 ),  β_t = clip(1 − ᾱ_t/ᾱ_{t−1}, 0, 0.999),  α_t = 1 − β_t
    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,  ε ~ N(0, I)   (coordinates in Å, t = 1..T)

Index 0 of every table is t = 0 (ᾱ_0 = 1), so tables are indexed by t directly. ᾱ is
re-accumulated from the clipped β so that the sampler and the noising agree exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def cosine_alpha_bar(num_timesteps: int) -> torch.Tensor:
    """Closed-form ᾱ_t for t = 0..T, float64 ``[T + 1]``."""
    t = torch.arange(num_timesteps + 1, dtype=torch.float64)
    return torch.cos(t / (num_timesteps + 1) * math.pi / 2) ** 2


class DiffusionSchedule(nn.Module):
    """Schedule tables as (non-persistent) buffers ``[T + 1]``, float32, indexed by t."""

    def __init__(self, *, num_timesteps: int, kind: str = "cosine"):
        super().__init__()
        if kind != "cosine":
            raise ValueError(f"schedule: unknown {kind!r} (allowed: cosine)")
        self.num_timesteps = num_timesteps
        alpha_bar_closed = cosine_alpha_bar(num_timesteps)
        betas = (1 - alpha_bar_closed[1:] / alpha_bar_closed[:-1]).clamp(0.0, 0.999)
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, dim=0)
        for name, value in (("betas", betas), ("alphas", alphas), ("alpha_bar", alpha_bar)):
            self.register_buffer(name, value.float(), persistent=False)

    def sample_timesteps(self, batch: int, *, device, generator=None) -> torch.Tensor:
        """Uniform t in 1..T, ``[batch]`` long."""
        return torch.randint(
            1, self.num_timesteps + 1, (batch,), device=device, generator=generator
        )

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x0 [b, n, 3]`` Å, ``t [b]``, ``noise [b, n, 3]`` -> x_t ``[b, n, 3]``."""
        ab = self.alpha_bar[t][:, None, None]
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
