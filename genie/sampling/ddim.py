"""DDIM sampling (Song, Meng & Ermon 2021) with the ε-prediction model and its own schedule.

Visited timesteps, for a stride s (``skipSteps``; 0 means 1) and T diffusion steps:

    τ = T, T − s, T − 2s, ...  (every value ≥ 1),  then a last step from τ_S to 0

so the model is evaluated S = ⌈T / s⌉ times (T = 1000: s = 1 -> 1000, s = 100 -> 10,
s = 150 -> 7, s = 500 -> 2, s = 700 -> 2). A stride s ≥ T would evaluate the model only at T and
is rejected. One step from t to t' < t (Song et al., eq. 12):

    x̂_0 = ( x_t − √(1 − ᾱ_t) ε̂ ) / √ᾱ_t
    σ   = η · √( (1 − ᾱ_t') / (1 − ᾱ_t) ) · √( 1 − ᾱ_t / ᾱ_t' )
    x_t' = √ᾱ_t' x̂_0 + √(1 − ᾱ_t' − σ²) ε̂ + γ σ z,   z ~ N(0, I)

η = 0 is deterministic (no noise, so γ has no effect); η = 1 with s = 1 is the DDPM posterior
q(x_{t−1} | x_t, x̂_0): mean identical to DDPM's, variance β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t).
γ (``temperature``) multiplies only the injected noise, as in DDPM. The last step (t' = 0,
ᾱ_0 = 1) returns x̂_0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from genie.diffusion.schedule import DiffusionSchedule
from genie.sampling.reverse import sample_backbones


def ddim_timesteps(num_timesteps: int, stride: int) -> list[int]:
    """The timesteps DDIM evaluates the model at: ``[T, T − s, ...]``, all ≥ 1 (s = 0 means 1).

    Raises:
        ValueError: stride < 0, or stride ≥ T (a single model evaluation).
    """
    if stride < 0:
        raise ValueError(f"skipSteps (the DDIM stride) must be ≥ 0, got {stride}")
    s = max(1, int(stride))
    if s >= num_timesteps:
        raise ValueError(
            f"skipSteps = {stride} is not smaller than the model's numTimesteps = "
            f"{num_timesteps}: DDIM would evaluate the model only once (at t = T); use a "
            f"stride below {num_timesteps}"
        )
    return list(range(num_timesteps, 0, -s))


class DDIMSampler:
    """DDIM over a strided subset of the model's timesteps."""

    name = "ddim"

    def __init__(
        self, *, schedule: DiffusionSchedule, stride: int, eta: float, temperature: float
    ) -> None:
        """
        Args:
            schedule: the schedule the model was trained with.
            stride: s, the gap between visited timesteps (0 or 1 = every timestep; < T).
            eta: η in [0, 1]: 0 deterministic, 1 the DDPM posterior variance.
            temperature: noise scale γ ≥ 0 (multiplies the injected noise).
        """
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"ddimEta (η) must be in [0, 1], got {eta}")
        if temperature < 0:
            raise ValueError(f"temperature must be ≥ 0, got {temperature}")
        self.num_timesteps = schedule.num_timesteps
        self._timesteps = ddim_timesteps(schedule.num_timesteps, stride)
        self.eta, self.temperature = float(eta), float(temperature)
        self._alpha_bar = schedule.alpha_bar.double().cpu().tolist()  # [T + 1], ᾱ_0 = 1

    def timesteps(self) -> list[int]:
        """T, T − s, T − 2s, ... (each ≥ 1)."""
        return list(self._timesteps)

    def sigma(self, t: int, t_prev: int) -> float:
        """σ of the step t -> t_prev (before the noise scale γ)."""
        ab, ab_prev = self._alpha_bar[t], self._alpha_bar[t_prev]
        return self.eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))

    def step(
        self,
        x: torch.Tensor,
        eps: torch.Tensor,
        *,
        t: int,
        t_prev: int,
        noise: Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """x_t ``[b, n, 3]`` Å, ε̂ ``[b, n, 3]`` -> x_{t_prev} ``[b, n, 3]`` Å."""
        if not 0 <= t_prev < t:
            raise ValueError(f"DDIM steps to an earlier timestep, got t = {t}, t_prev = {t_prev}")
        ab, ab_prev = self._alpha_bar[t], self._alpha_bar[t_prev]
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        sigma = self.sigma(t, t_prev)
        direction = math.sqrt(max(1 - ab_prev - sigma**2, 0.0))
        x = math.sqrt(ab_prev) * x0 + direction * eps
        scale = self.temperature * sigma
        return x + scale * noise() if scale > 0 else x


def ddim_sample(
    model: nn.Module | Callable[..., torch.Tensor],
    schedule: DiffusionSchedule,
    lengths: Sequence[int],
    seeds: Sequence[int],
    *,
    stride: int = 0,
    eta: float = 0.0,
    temperature: float = 1.0,
    device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
    trajectory_every: int = 0,
) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Sample one backbone per (length, seed) with DDIM.

    Args:
        model: denoiser ``(x_t [b, n, 3] Å, t [b], mask [b, n]) -> ε̂ [b, n, 3]``.
        schedule: the schedule the model was trained with.
        lengths: residues of each chain (each ≥ 3).
        seeds: one seed per chain.
        stride: s, the gap between visited timesteps (see the module docstring).
        eta: η (0 deterministic, 1 DDPM-like variance).
        temperature: noise scale γ (no effect when η = 0).
        device: where to run.
        on_step: called after every reverse step with the number of steps done.
        trajectory_every: keep every k-th intermediate structure (0 = none).

    Returns:
        the final coordinates (one ``[n_i, 3]`` CPU tensor per chain, Å) and, per chain, the
        kept trajectory frames.
    """
    sampler = DDIMSampler(schedule=schedule, stride=stride, eta=eta, temperature=temperature)
    return sample_backbones(
        model, sampler, lengths, seeds,
        device=device, on_step=on_step, trajectory_every=trajectory_every,
    )  # fmt: skip
