"""Re-noising sampler (``samplingStrategy renoise``): step from the prediction x̂_0 and noise it
afresh to the next visited timestep, as salad samples (``mjendrusch/salad``,
``salad/training/eval_noise_schedule_benchmark.py``: every step sets the positions to the
model's x̂_0 and the model's noising takes it to the next level with new noise).

Visited timesteps are DDIM's (:func:`~genie.sampling.ddim.ddim_timesteps`, stride s =
``skipSteps``): T, T − s, ..., then 0. One step from t to t' < t, on coordinates in Å with ν̂ the
predicted noise in Å (σ ε̂) and z fresh noise of the chain's scale σ:

    x̂_0  = ( x_t − √(1 − ᾱ_t) ν̂ ) / √ᾱ_t
    x_t' = √ᾱ_t' x̂_0 + γ √(1 − ᾱ_t') z,    z ~ N(0, σ² I)

and the last step (t' = 0) returns x̂_0. With γ = 1 (``temperature``) x_t' is drawn from the
forward marginal q(x_t' | x̂_0): nothing of x_t but x̂_0 is kept, so an error of one step is not
carried along the trajectory, unlike DDIM's deterministic direction term √(1 − ᾱ_t' − σ²) ν̂
(this is DDIM's update with its noise σ at the largest value it allows, √(1 − ᾱ_t'), where the
direction term vanishes). γ < 1 shrinks the fresh noise (Proteina's "noise scale", 0.35-0.45).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from genie.diffusion.schedule import DiffusionSchedule
from genie.sampling.ddim import ddim_timesteps


class RenoiseSampler:
    """x̂_0, then fresh noise to the next visited timestep (module docstring)."""

    name = "renoise"

    def __init__(self, *, schedule: DiffusionSchedule, stride: int, temperature: float) -> None:
        """
        Args:
            schedule: the schedule the model was trained with.
            stride: s, the gap between visited timesteps (0 or 1 = every timestep; < T).
            temperature: γ ≥ 0, multiplies the fresh noise (1 = the forward marginal).
        """
        if temperature < 0:
            raise ValueError(f"temperature must be ≥ 0, got {temperature}")
        self.num_timesteps = schedule.num_timesteps
        self._timesteps = ddim_timesteps(schedule.num_timesteps, stride)
        self.temperature = float(temperature)
        self._alpha_bar = schedule.alpha_bar.double().cpu().tolist()  # [T + 1], ᾱ_0 = 1

    def timesteps(self) -> list[int]:
        """T, T − s, T − 2s, ... (each ≥ 1)."""
        return list(self._timesteps)

    def step(
        self,
        x: torch.Tensor,
        eps: torch.Tensor,
        *,
        t: int,
        t_prev: int,
        noise: Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """x_t ``[b, n, 3]`` Å, ν̂ ``[b, n, 3]`` Å -> x_{t_prev} ``[b, n, 3]`` Å."""
        if not 0 <= t_prev < t:
            raise ValueError(f"renoise steps to an earlier timestep, got t = {t}, t_prev = "
                             f"{t_prev}")  # fmt: skip
        ab, ab_prev = self._alpha_bar[t], self._alpha_bar[t_prev]
        x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        scale = self.temperature * math.sqrt(1 - ab_prev)
        x = math.sqrt(ab_prev) * x0 if t_prev else x0
        return x + scale * noise() if t_prev and scale > 0 else x
