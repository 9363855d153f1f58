"""The denoising objective of one batch: draw t and ε, predict ε̂ from x_t and score it, on the
whole chain or, exactly, on sequence shards.

Notation: b chains, n residues (padded), m residues of this process; coordinates in Å.

The noise loss compares ε̂ with ε (``lossType``). With ``useMHCLoss`` the multi-scale distance loss
(:mod:`genie.diffusion.distance_loss`) scores the predicted clean structure

    x̂0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t

against x0, weighted per chain by ᾱ_t. DISCREPANCY (deliberate): the weight is ours, not part of
the loss's definition. x̂0 amplifies the error of ε̂ by √(1−ᾱ_t)/√ᾱ_t, about 600× at t = T for
the cosine schedule, so unweighted high-noise steps would dominate the loss and its gradients.
With the weight ᾱ_t, the gradient of the distance term with respect to ε̂ is scaled by
√(ᾱ_t(1−ᾱ_t)) ≤ ½: the term acts mostly at low noise, where x̂0 is a meaningful structure. The
chain weights are not renormalised (see
:func:`~genie.diffusion.distance_loss.multiscale_distance_loss`).

Sequence parallelism (the denoiser's ``sequence_layout``, docs/SEQUENCE_PARALLEL.md): every
process of the sequence group holds the whole batch (coordinates and masks are small), draws the
same t and the same ε of every residue (the same random stream on each; t is checked), pads the
chains to a multiple of the shards and predicts ε̂ of its own residues. Every term is a sum over
residues (or residue pairs) divided by a count of the whole batch, so a process's *share* is its
own sum over the whole count: the shares add up to the loss, and their gradients, summed over the
group, to its gradient. The distance loss reads every residue's x̂0 (gathered, autograd-aware);
a process sums the pairs (i, j) of its own rows i over the whole chain's pair counts. On the whole
chain (one process) the share is the loss, computed as it always was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from genie.diffusion.distance_loss import distance_error_sums
from genie.diffusion.losses import per_residue_error
from genie.diffusion.parametrisation import Parametrisation, centred
from genie.diffusion.schedule import DiffusionSchedule
from genie.distributed.sharding import pad_residues, padded_length
from genie.model.layout import SequenceLayout


@dataclasses.dataclass
class LossTerms:
    """The terms of one loss evaluation (fp32). On sequence shards the terms are the whole
    batch's (detached) and ``objective`` this process's share of ``total``."""

    total: torch.Tensor  # scalar: noise + distance
    noise: torch.Tensor  # scalar: the denoising loss (mean over the real residues of the batch)
    distance: torch.Tensor | None  # scalar: ᾱ_t-weighted multi-scale distance loss (useMHCLoss)
    per_chain: torch.Tensor  # [b] total per chain (for the per-t validation buckets)
    t: torch.Tensor  # [b] timesteps drawn
    objective: torch.Tensor  # scalar to backpropagate: total, or this process's share of it


@dataclasses.dataclass(frozen=True)
class DistanceLoss:
    """The multi-scale distance term (``useMHCLoss``): one weight per cut-off (Å), pairs visited
    in row chunks of ``chunk_size`` (None: unchunked)."""

    weights: Sequence[float]
    cutoffs: Sequence[float]
    chunk_size: int | None

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.cutoffs):
            raise ValueError(f"{len(self.weights)} weights for {len(self.cutoffs)} cut-offs: give "
                             "one per scale")  # fmt: skip


def denoising_losses(
    model: nn.Module,
    schedule: DiffusionSchedule,
    batch: Mapping[str, Any],
    *,
    layout: SequenceLayout,
    loss_type: str,
    distance: DistanceLoss | None,
    parametrisation: Parametrisation | None = None,
    self_condition: bool = False,
    generator: torch.Generator | None = None,
    draws: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> LossTerms:
    """Draw t and ε for ``batch`` (``coords [b, n, 3]`` Å, ``mask [b, n]``, optional
    ``residue_index [b, n]``: the whole chains), noise x0 with each chain's σ, predict with
    ``model`` on ``layout`` and score it (module docstring). ``draws`` gives ``(t [b], ε [b, n,
    3])`` drawn already (the per-chain streams of :mod:`genie.training.draws`); else
    ``generator`` (default: the global stream) draws t, then ε. ``parametrisation``: Genie's
    unit noise and ε when None.

    x_t = √ᾱ_t x0 + √(1−ᾱ_t) σ ε with σ of ``parametrisation`` (``noiseScale``: 1 Å for Genie's
    unit noise); the loss compares ε̂ with ε, or x̂0/σ with x0/σ for ``predictionTarget x0``
    (:mod:`genie.diffusion.parametrisation`). With ``self_condition`` (``selfConditioning``, on
    a random half of the steps: Chen et al. 2022) the model first predicts x̂0 without it under
    ``torch.no_grad`` and then again with that x̂0 (centred) as ``self_condition``; the loss
    scores the second prediction. Sequence shards take ε prediction without self-conditioning
    (both read whole-chain centres): other choices are refused there."""
    parametrisation = Parametrisation() if parametrisation is None else parametrisation
    x0, mask = batch["coords"], batch["mask"]  # [b, n, 3] Å, [b, n]
    if draws is None:
        t = schedule.sample_timesteps(x0.shape[0], device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
    else:
        t, noise = draws
    noise = noise * mask[..., None]  # [b, n, 3]
    sigma = parametrisation.noise.training(x0, mask)  # [b] Å, of the whole chains
    x_t = schedule.add_noise(x0, t, noise * sigma[:, None, None])  # [b, n, 3]
    _check_same_timesteps(t, layout)
    if layout.num_shards > 1 and (self_condition or parametrisation.target != "epsilon"):
        raise ValueError("sequence shards train ε prediction without self-conditioning "
                         "(x0 prediction and x̂0 centring read the whole chain)")  # fmt: skip

    n = padded_length(x0.shape[1], layout.num_shards)
    x0, mask, noise, x_t = (pad_residues(v, n) for v in (x0, mask, noise, x_t))
    residue_index = batch.get("residue_index")
    if residue_index is not None:
        residue_index = layout.local(pad_residues(residue_index, n))
    own_x0, own_mask, own_noise, own_x_t = (layout.local(v) for v in (x0, mask, noise, x_t))
    alpha_bar = schedule.alpha_bar[t]  # [b]
    extra = {}
    if self_condition:
        with torch.no_grad():
            first = model(own_x_t, t, own_mask, residue_index).float()
            first = parametrisation.predict(first, own_x_t.float(), own_mask, alpha_bar=alpha_bar)
        extra = {"self_condition": centred(first.x0, own_mask)}  # [b, m, 3] Å
    output = model(own_x_t, t, own_mask, residue_index, **extra).float()  # [b, m, 3]
    prediction = parametrisation.predict(output, own_x_t.float(), own_mask, alpha_bar=alpha_bar)
    predicted, target = parametrisation.loss_pair(prediction, x0=own_x0, noise=own_noise,
                                                  sigma=sigma)  # fmt: skip

    error = per_residue_error(predicted, target, kind=loss_type) * own_mask  # [b, m]
    noise_share = error.sum() / mask.sum().clamp_min(1.0)
    chain_share = error.sum(-1) / mask.sum(-1).clamp_min(1.0)  # [b]
    distance_share = None
    if distance is not None:
        x0_hat = prediction.x0  # [b, m, 3] Å
        sums, counts = distance_error_sums(
            layout.gather(x0_hat), x0, mask, cutoffs=distance.cutoffs, rows=layout.own(n),
            chunk_size=distance.chunk_size,
        )  # fmt: skip
        errors = sums / layout.sum(counts).clamp_min(1.0)  # [b, s]: own pairs / all pairs
        w = torch.tensor([float(v) for v in distance.weights], dtype=errors.dtype,
                         device=errors.device)  # fmt: skip
        distance_chains = alpha_bar * (errors * w).sum(-1)  # [b]; no matmul (autocast)
        distance_share = distance_chains.mean()
        chain_share = chain_share + distance_chains
    objective = noise_share if distance_share is None else noise_share + distance_share
    if layout.num_shards == 1:
        return LossTerms(objective, noise_share, distance_share, chain_share, t, objective)

    def whole(share: torch.Tensor) -> torch.Tensor:
        return layout.sum(share.detach())

    return LossTerms(
        whole(objective), whole(noise_share),
        None if distance_share is None else whole(distance_share), whole(chain_share), t,
        objective,
    )  # fmt: skip


def _check_same_timesteps(t: torch.Tensor, layout: SequenceLayout) -> None:
    """Every process of a sequence group must draw the same t (and ε): their random streams
    must be equal (the same seed, the same draws)."""
    if layout.num_shards == 1:
        return
    drawn = layout.gather(t[None], dim=0)  # [P, b]
    if not bool((drawn == t).all()):
        raise RuntimeError(
            "the processes of a sequence group drew different timesteps for one batch: their "
            "random streams differ (seed every process alike, and draw nothing on one rank "
            "alone)"
        )
