"""Starting the reverse process below T (``startTimestep``, ``startSignalShare``).

Under Genie's cosine schedule ᾱ_T = 2.5·10⁻⁶, so an ε model's x̂0 = (x_T − √(1−ᾱ_T) ε̂)/√ᾱ_T
multiplies the error of ε̂ by 1/√ᾱ_T ≈ 637 at the first step; on the long-chain study's models
(docs/QUALITY.md, "denoising profile") x̂0 was good up to t = 950 and hundreds of Å off at
t = T alone, and every sampler that started there exploded. Starting at t_s < T skips those
steps. The start is then no longer pure noise: q(x_{t_s}) = √ᾱ_s x0 + √(1−ᾱ_s) σ ε, whose
per-axis variance over a chain is ᾱ_s σ_L² + (1 − ᾱ_s) σ², with σ_L the per-axis Cα standard
deviation of a real chain of L residues (the fit σ(L) of :data:`genie.diffusion.noise_scale.
LENGTH_FIT`) and σ the model's noise scale. The start is drawn as isotropic Gaussian noise of
that variance: the marginal's size, not its shape (cf. the "trailing" schedules of Lin et al.
2024, "Common diffusion noise schedules and sample steps are flawed", which move the first
step off the degenerate end of the schedule instead).

The start can be given as a timestep (``startTimestep``) or, so that it suits every length, as
the largest share of the start's variance that the chain's signal may have (``startSignalShare``
c): share(t) = ᾱ_t σ_L² / (ᾱ_t σ_L² + (1 − ᾱ_t) σ²) grows as t falls, and the batch starts at
the lowest visited t where the share of each of its chains is ≤ c (:func:`share_start`), so
longer chains, whose signal shows through the noise earlier, start closer to T. Under unit noise
c = 0.2 is t = 955 at 64 residues, 965 at 128, 984 at 1,024 and 988 at 2,048 (every step
visited; DDIM's stride-10 grid rounds up to 960, 970, 990, 990); under length-aware noise
(σ = σ_L) the share is ᾱ_t itself (c = 0.2: t = 706).

DISCREPANCY (deliberate): Genie always starts at T from N(0, σ²); with neither key set we do
too, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from genie.diffusion.noise_scale import LENGTH_FIT
from genie.sampling.reverse import ReverseSampler


class LateStart:
    """A sampler whose visited timesteps are the inner sampler's at or below ``start``; the
    update rule is the inner one's."""

    def __init__(self, inner: ReverseSampler, *, start: int) -> None:
        """
        Args:
            inner: the sampler (DDPM, DDIM, renoise) on the model's schedule.
            start: the latest timestep to visit (1..T); the first visited one is the inner
                sampler's largest timestep ≤ ``start``.

        Raises:
            ValueError: no visited timestep lies at or below ``start``.
        """
        self.inner, self.name = inner, inner.name
        self._timesteps = [t for t in inner.timesteps() if t <= start]
        if not self._timesteps:
            raise ValueError(
                f"startTimestep {start} lies below every timestep the sampler visits "
                f"(the lowest is {inner.timesteps()[-1]}): raise it"
            )

    def timesteps(self) -> list[int]:
        return list(self._timesteps)

    def step(self, x: torch.Tensor, eps: torch.Tensor, *, t: int, t_prev: int,
             noise: Callable[[], torch.Tensor]) -> torch.Tensor:  # fmt: skip
        return self.inner.step(x, eps, t=t, t_prev=t_prev, noise=noise)


def late_start(sampler: ReverseSampler, start: int | None) -> ReverseSampler:
    """``sampler`` itself (``start`` None), or the :class:`LateStart` of it."""
    return sampler if start is None else LateStart(sampler, start=start)


def start_factors(
    lengths: Sequence[int], noise_scales: Sequence[float], *, alpha_bar: float
) -> list[float]:
    """Per chain, the start's standard deviation over the noise scale σ:
    √(ᾱ_s σ_L² + (1 − ᾱ_s) σ²) / σ (module docstring). Callers apply it only below T.

    Args:
        lengths: residues of each chain.
        noise_scales: σ of each chain, Å (1 for unit noise).
        alpha_bar: ᾱ_s of the first visited timestep.
    """
    if not 0.0 < alpha_bar < 1.0:
        raise ValueError(f"alpha_bar must lie in (0, 1), got {alpha_bar}")
    return [
        math.sqrt(alpha_bar * LENGTH_FIT(n) ** 2 + (1.0 - alpha_bar) * s**2) / s
        for n, s in zip(lengths, noise_scales, strict=True)
    ]


def signal_share(alpha_bar: float, *, length: int, noise_scale: float) -> float:
    """ᾱ σ_L² / (ᾱ σ_L² + (1 − ᾱ) σ²): the share of a chain's variance at ᾱ that is signal."""
    signal = alpha_bar * LENGTH_FIT(length) ** 2
    return signal / (signal + (1.0 - alpha_bar) * noise_scale**2)


def share_start(
    timesteps: Sequence[int],
    alpha_bar: Sequence[float],
    lengths: Sequence[int],
    noise_scales: Sequence[float],
    *,
    share: float,
) -> int:
    """The lowest of ``timesteps`` at which every chain's :func:`signal_share` is ≤ ``share``
    (the first visited timestep when none is).

    Args:
        timesteps: the sampler's visited timesteps, descending.
        alpha_bar: ᾱ_t indexed by t (``[T + 1]``).
        lengths: residues of each chain.
        noise_scales: σ of each chain, Å.
        share: c in (0, 1).
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"startSignalShare must lie in (0, 1), got {share}")
    start = timesteps[0]
    for t in timesteps:
        shares = (signal_share(float(alpha_bar[t]), length=n, noise_scale=s)
                  for n, s in zip(lengths, noise_scales, strict=True))  # fmt: skip
        if max(shares) > share:
            break
        start = t
    return int(start)
