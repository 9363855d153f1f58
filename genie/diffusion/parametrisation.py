"""What the denoiser's output means (``predictionTarget``) and the noise scale it works with:
the one place that turns a network output into ε̂ and x̂_0, for the loss, the samplers and the
training pictures.

Notation: b batch, n residues; coordinates in Å; σ ``[b]`` the noise scale of each chain
(:mod:`genie.diffusion.noise_scale`). The forward process is

    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) σ ε,    so    x_t = √ᾱ_t x̂_0 + √(1 − ᾱ_t) ν̂

for any prediction, with ν̂ = σ ε̂ the predicted noise *in Å* (the samplers' ε̂: every DDPM, DDIM
and re-noising update is linear in x, ν̂ and the injected noise, so with noise drawn as σ z they
run unchanged on Å coordinates). The denoiser returns ``out = x̃_t − trans(T̂)`` (x̃_t: x_t centred
per chain, T̂ the frames of its structure module; :class:`~genie.model.denoiser.GenieDenoiser`).

- ``epsilon`` (Genie): ``out`` is the noise, ν̂ = out, and
  x̂_0 = (x_t − √(1 − ᾱ_t) ν̂) / √ᾱ_t;
- ``x0`` (as salad, AlphaFold-style structure modules): the frames are the clean structure,
  x̂_0 = trans(T̂) = x̃_t − out, and ν̂ = (x_t − √ᾱ_t x̂_0) / √(1 − ᾱ_t).

The x̂_0 of ``x0`` is centred (the data are, so the centre of x_t is all noise), and ν̂ carries
x_t's centre. ε parametrisation multiplies the network's error by √(1 − ᾱ_t) / √ᾱ_t in x̂_0 (≈ 600
at t = T for the cosine schedule), the x_0 parametrisation by √ᾱ_t / √(1 − ᾱ_t) in ν̂: each is
accurate where the other is not, hence the choice.

The training target (:meth:`Parametrisation.loss_pair`) of ``epsilon`` is ε (Genie's loss
‖ε̂ − ε‖); of ``x0`` it is x_0 / σ, scored against x̂_0 / σ: the structure error in units of the
noise scale, so that unit-noise and length-aware models have losses of one scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from genie.diffusion.noise_scale import NoiseScale

PREDICTION_TARGETS = ("epsilon", "x0")


def centred(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x [b, n, 3]`` minus each chain's centroid over its real residues (``mask [b, n]``),
    zero at padding."""
    m = mask.to(x.dtype)[..., None]  # [b, n, 1]
    centre = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1.0)
    return (x - centre) * m


@dataclass(frozen=True)
class Prediction:
    """ν̂ = σ ε̂ (the predicted noise in Å) and x̂_0 (Å), each ``[b, n, 3]``, zero at padding."""

    noise: torch.Tensor
    x0: torch.Tensor


@dataclass(frozen=True)
class Parametrisation:
    """The noise scale and the prediction target of a model (module docstring)."""

    noise: NoiseScale = field(default_factory=NoiseScale)
    target: str = "epsilon"

    def __post_init__(self) -> None:
        if self.target not in PREDICTION_TARGETS:
            raise ValueError(
                f"predictionTarget: unknown {self.target!r} ({', '.join(PREDICTION_TARGETS)})"
            )

    def describe(self) -> str:
        """What the model's output means, in words: ``unit noise, epsilon``, ``fixed σ 10 Å,
        x0``, ``length-aware σ, x0``; two parametrisations with the same words train and sample
        the same way (``sigma`` counts only for ``fixed``)."""
        noise = {"unit": "unit noise", "length": "length-aware σ"}.get(
            self.noise.kind, f"fixed σ {self.noise.sigma:g} Å"
        )
        return f"{noise}, {self.target}"

    def predict(
        self,
        output: torch.Tensor,
        x_t: torch.Tensor,
        mask: torch.Tensor,
        *,
        alpha_bar: torch.Tensor,
    ) -> Prediction:
        """
        Args:
            output: ``[b, n, 3]`` the denoiser's output (x̃_t − trans(T̂)), Å.
            x_t: ``[b, n, 3]`` the noisy input it was given, Å.
            mask: ``[b, n]`` real residues.
            alpha_bar: ``[b]`` ᾱ_t of each chain (t ≥ 1, so 0 < ᾱ_t < 1).

        Returns:
            ν̂ and x̂_0 (:class:`Prediction`). For ``epsilon`` ν̂ is ``output`` itself.
        """
        ab = alpha_bar.to(x_t.dtype)[:, None, None]  # [b, 1, 1]
        m = mask.to(x_t.dtype)[..., None]
        if self.target == "epsilon":
            x0 = (x_t - (1 - ab).sqrt() * output) / ab.sqrt() * m
            return Prediction(noise=output, x0=x0)
        x0 = (centred(x_t, mask) - output) * m
        noise = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt() * m
        return Prediction(noise=noise, x0=x0)

    def loss_pair(
        self,
        prediction: Prediction,
        *,
        x0: torch.Tensor,
        noise: torch.Tensor,
        sigma: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted, true) of the denoising loss, each ``[b, n, 3]`` and unitless: ε̂ and ε
        (``epsilon``), or x̂_0 / σ and x_0 / σ (``x0``).

        Args:
            prediction: of the denoiser for x_t.
            x0: ``[b, n, 3]`` the clean chains, Å.
            noise: ``[b, n, 3]`` ε, the unit noise that x_t was made with.
            sigma: ``[b]`` the noise scale of each chain, Å.
        """
        s = sigma.to(prediction.noise.dtype)[:, None, None]
        if self.target == "epsilon":
            return prediction.noise / s, noise
        return prediction.x0 / s, x0.to(s.dtype) / s
