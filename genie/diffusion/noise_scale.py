"""The noise scale σ of the forward process (``noiseScale``): how large, in Å, the noise is.

    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) σ ε,   ε ~ N(0, I),   σ > 0 per chain (Å)

so x_T ≈ σ ε, whose radius of gyration about its centroid has E[Rg²] = 3σ²(n − 1)/n. Kinds:

- ``unit`` (Genie; the default): σ = 1 at every length, so x_T has Rg ≈ √3 ≈ 1.7 Å whatever
  the length, while real chains have Rg ≈ 15 Å at 128 residues and ≈ 41 Å at 2,048;
- ``fixed``: σ = ``noiseSigma`` Å, the same in training and sampling;
- ``length`` (salad's "VP-scaled" noise, ``mjendrusch/salad``, Nat. Mach. Intell. 2025): in
  training σ is the chain's own Cα standard deviation per axis, √(Σ_i ‖x_i − x̄‖² / 3n) = Rg / √3
  (:func:`ca_std`), so x_T has the size of the chain it came from; at sampling, where there is
  no chain yet, σ(L) = a · L^ν, fitted on real chains (:data:`LENGTH_FIT`).

DISCREPANCY (deliberate, against salad): salad samples with σ = L^0.4 + U(0, 3) Å, a random
spread above its own fit. Ours samples with the least-squares fit itself, deterministic per
length, so a sample depends only on its seed; the fit's scatter is stated beside it.

Why this and not Chroma's globular prior (Ingraham et al. 2023, ``chroma/layers/structure/
mvn.py``): Chroma noises with a correlated Gaussian whose covariance makes x_T a polymer with
Rg ≈ 2.0 · L^0.4 Å; its diffusion runs on whitened coordinates, so the loss, x̂_0 and every
sampler would work through that whitening transform. The isotropic σ needs one number per
chain: every sampler is unchanged on coordinates in units of σ (each Gaussian update is linear
in x, ε̂ and the fresh noise together), and the prior's size is right, which is the defect
measured in docs/QUALITY.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

NOISE_SCALES = ("unit", "fixed", "length")
MIN_SIGMA = 1.0  # Å: the per-structure σ of ``length`` is floored here (degenerate inputs)


@dataclass(frozen=True)
class PowerLaw:
    """σ(L) = ``prefactor`` · L^``exponent`` Å; ``scatter``: the standard deviation of
    log σ of the fitted chains around it (a factor e^scatter either way covers ~68 %)."""

    prefactor: float
    exponent: float
    scatter: float

    def __call__(self, length: int) -> float:
        return self.prefactor * float(length) ** self.exponent


# Fitted by ``python scripts/fit_noise_scale.py ../shared/data/pdb/train
# ../shared/data/pdb/bench/ts50 ../shared/data/pdb/long``: 1,371 real chains of 40-2,128
# residues (12 longer than 1,000: SpCas9 4UN3, mTOR 4JSV, chains of bm5_unbound), whole chains,
# least squares of log σ on log L. Rg = √3 σ = 2.69 · L^0.357 Å (the 2.2 · L^0.38).
LENGTH_FIT = PowerLaw(prefactor=1.5518, exponent=0.3573, scatter=0.156)


def ca_std(coords: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cα standard deviation per axis of each chain: √(Σ_i m_i ‖x_i − x̄‖² / 3 Σ_i m_i).

    Args:
        coords: ``[b, n, 3]`` Å.
        mask: ``[b, n]`` 1 for real residues.

    Returns:
        ``[b]`` Å, in the dtype of ``coords`` (computed in at least fp32).
    """
    dtype = torch.promote_types(coords.dtype, torch.float32)
    x, m = coords.to(dtype), mask.to(dtype)[..., None]  # [b, n, 3], [b, n, 1]
    count = m.sum(1).clamp_min(1.0)  # [b, 1]
    centre = (x * m).sum(1, keepdim=True) / count[:, None]  # [b, 1, 3]
    sq = (((x - centre) ** 2) * m).sum((1, 2))  # [b]
    return (sq / (3 * count[:, 0])).sqrt().to(coords.dtype)


@dataclass(frozen=True)
class NoiseScale:
    """σ per chain for training and for sampling (module docstring).

    Attributes:
        kind: ``unit``, ``fixed`` or ``length``.
        sigma: σ in Å of ``fixed`` (unused otherwise).
        fit: σ(L) of ``length`` at sampling.
    """

    kind: str = "unit"
    sigma: float = 1.0
    fit: PowerLaw = LENGTH_FIT

    def __post_init__(self) -> None:
        if self.kind not in NOISE_SCALES:
            raise ValueError(f"noiseScale: unknown {self.kind!r} ({', '.join(NOISE_SCALES)})")
        if not self.sigma > 0:
            raise ValueError(f"noiseSigma must be > 0 Å, got {self.sigma}")

    def training(self, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """σ of each training chain ``x0 [b, n, 3]`` Å (``mask [b, n]``): ``[b]`` Å, the dtype
        and device of ``x0``."""
        if self.kind == "length":
            return ca_std(x0, mask).clamp_min(MIN_SIGMA)
        value = 1.0 if self.kind == "unit" else self.sigma
        return torch.full(x0.shape[:1], value, dtype=x0.dtype, device=x0.device)

    def sampling(self, lengths: Sequence[int]) -> list[float]:
        """σ in Å of a chain of each length, where there is no structure to measure."""
        if self.kind == "length":
            return [self.fit(n) for n in lengths]
        return [1.0 if self.kind == "unit" else self.sigma] * len(lengths)
