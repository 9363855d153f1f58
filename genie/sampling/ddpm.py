"""DDPM reverse process for Cα traces (Ho et al. 2020; Genie's sampler).

    x_{t−1} = ( x_t − β_t / √(1 − ᾱ_t) · ε̂(x_t, t) ) / √α_t + γ · √β_t · z,   z ~ N(0, I)

for t = T, T−1, ..., 1 (T model evaluations). γ is the noise scale (``temperature``; Genie samples
with 0.6). No noise is added at t = 1. The injected variance is β_t (Genie's choice), not the
posterior variance β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) (which DDIM with η = 1 uses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from genie.diffusion.schedule import DiffusionSchedule
from genie.sampling.reverse import sample_backbones


class DDPMSampler:
    """Ancestral DDPM sampling over every timestep of the model's schedule."""

    name = "ddpm"

    def __init__(self, *, schedule: DiffusionSchedule, temperature: float) -> None:
        """
        Args:
            schedule: the schedule the model was trained with.
            temperature: noise scale γ ≥ 0 (multiplies the injected noise).
        """
        if temperature < 0:
            raise ValueError(f"temperature must be ≥ 0, got {temperature}")
        self.num_timesteps = schedule.num_timesteps
        self.temperature = float(temperature)
        self._beta = schedule.betas.double().cpu().tolist()  # [T + 1], indexed by t
        self._alpha = schedule.alphas.double().cpu().tolist()
        self._alpha_bar = schedule.alpha_bar.double().cpu().tolist()

    def timesteps(self) -> list[int]:
        """T, T−1, ..., 1."""
        return list(range(self.num_timesteps, 0, -1))

    def step(
        self,
        x: torch.Tensor,
        eps: torch.Tensor,
        *,
        t: int,
        t_prev: int,
        noise: Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """x_t ``[b, n, 3]`` Å, ε̂ ``[b, n, 3]`` -> x_{t−1} ``[b, n, 3]`` Å."""
        if t_prev != t - 1:
            raise ValueError(f"DDPM steps from t to t − 1, got t = {t}, t_prev = {t_prev}")
        beta, alpha, alpha_bar = self._beta[t], self._alpha[t], self._alpha_bar[t]
        x = (x - beta / math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha)
        scale = self.temperature * math.sqrt(beta) if t > 1 else 0.0
        return x + scale * noise() if scale > 0 else x


def ddpm_sample(
    model: nn.Module | Callable[..., torch.Tensor],
    schedule: DiffusionSchedule,
    lengths: Sequence[int],
    seeds: Sequence[int],
    *,
    temperature: float,
    device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
    trajectory_every: int = 0,
) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Sample one backbone per (length, seed) with DDPM.

    Args:
        model: denoiser ``(x_t [b, n, 3] Å, t [b], mask [b, n]) -> ε̂ [b, n, 3]``.
        schedule: the schedule the model was trained with.
        lengths: residues of each chain (each ≥ 3).
        seeds: one seed per chain.
        temperature: noise scale γ.
        device: where to run.
        on_step: called after every reverse step with the number of steps done.
        trajectory_every: keep every k-th intermediate structure (0 = none).

    Returns:
        the final coordinates (one ``[n_i, 3]`` CPU tensor per chain, Å) and, per chain, the
        kept trajectory frames.
    """
    sampler = DDPMSampler(schedule=schedule, temperature=temperature)
    return sample_backbones(
        model, sampler, lengths, seeds,
        device=device, on_step=on_step, trajectory_every=trajectory_every,
    )  # fmt: skip
