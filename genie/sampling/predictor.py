"""A trained denoiser as the reverse loop's :class:`~genie.sampling.reverse.Denoiser`, for one
batch of chains: its output turned into the predicted noise in Å through the model's
parametrisation, its self-conditioning state, and the seeds of its random graph edges.

Per reverse step i (model call i, from 0) of a batch:

    graph_i = model.build_graph(x, mask, self_condition=x̂0_{i−1}, seeds=seed(chain, i))
    out_i   = model(x, t, mask, graph=graph_i, self_condition=x̂0_{i−1})   (None for i = 0)
    ν̂_i, x̂0_i = parametrisation.predict(out_i, x, mask, ᾱ_t)       → the sampler gets ν̂_i

x̂0 is re-centred on its Cα centroid before it is fed back (self-conditioning), and a model
without self-conditioning gets None every step. The random neighbours of step i come from the
seed of (chain seed, i), so a chain's graph sequence, like its noise, depends on its seed only.
For a model with unit noise, the ε target, no self-conditioning and no random edges, this is the
model itself: the sampler gets its output unchanged.

:func:`sample_chains` runs :func:`~genie.sampling.reverse.reverse_process` with it on chains
whose noise has each chain's scale σ (:meth:`~genie.diffusion.noise_scale.NoiseScale.sampling`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from genie.diffusion.parametrisation import Parametrisation, centred
from genie.diffusion.schedule import DiffusionSchedule
from genie.sampling.chains import ChainBatch
from genie.sampling.reverse import Chains, ReverseSampler, Samples, reverse_process
from genie.sampling.start import LateStart, share_start, start_factors


class TrainedDenoiser(Protocol):
    """What the predictor needs from a model (:class:`~genie.model.denoiser.GenieDenoiser`)."""

    @property
    def self_conditioning(self) -> bool:
        """Whether it reads the previous x̂0."""
        ...

    def build_graph(
        self, coords: torch.Tensor, mask: torch.Tensor, *,
        self_condition: torch.Tensor | None = None, seeds: torch.Tensor | None = None,
    ) -> Any | None:  # fmt: skip
        """Its k-NN graph (or None)."""
        ...

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, *,
        graph: Any | None = None, self_condition: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """x_t ``[b, n, 3]`` Å -> its output ``[b, n, 3]``."""
        ...


def step_seed(seed: int, step: int) -> int:
    """The seed of the random graph edges of a chain at reverse step ``step`` (int64 ≥ 0)."""
    high, low = (int(v) for v in np.random.SeedSequence([seed, step]).generate_state(2))
    return ((high << 32) | low) & (2**63 - 1)


class NoisePredictor:
    """The reverse loop's denoiser for one batch (module docstring)."""

    def __init__(
        self,
        model: TrainedDenoiser,
        *,
        schedule: DiffusionSchedule,
        parametrisation: Parametrisation,
        seeds: Sequence[int],
    ) -> None:
        """
        Args:
            model: the trained denoiser (eval mode).
            schedule: its schedule (ᾱ_t).
            parametrisation: its noise scale and prediction target.
            seeds: the chains' seeds (of the random graph edges).
        """
        self.model, self.parametrisation = model, parametrisation
        self.alpha_bar = schedule.alpha_bar  # [T + 1]
        self.seeds = [int(s) for s in seeds]
        self.previous: torch.Tensor | None = None  # x̂0 of the last step, centred [b, n, 3]
        self.calls = 0

    def _graph_seeds(self, device: torch.device) -> torch.Tensor:
        seeds = [step_seed(s, self.calls) for s in self.seeds]
        return torch.tensor(seeds, dtype=torch.int64, device=device)

    def build_graph(self, coords: torch.Tensor, mask: torch.Tensor) -> Any | None:
        """The model's graph for this step (from the previous x̂0 where the model says so)."""
        return self.model.build_graph(coords, mask, self_condition=self.previous,
                                      seeds=self._graph_seeds(coords.device))  # fmt: skip

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, *, graph: Any | None = None
    ) -> torch.Tensor:
        """x_t ``[b, n, 3]`` Å, ``t [b]``, ``mask [b, n]`` -> ν̂ ``[b, n, 3]`` Å (σ ε̂)."""
        output = self.model(x, t, mask, graph=graph, self_condition=self.previous)
        prediction = self.parametrisation.predict(
            output.float(), x.float(), mask, alpha_bar=self.alpha_bar[t]
        )
        if self.model.self_conditioning:
            self.previous = centred(prediction.x0, mask)
        self.calls += 1
        return prediction.noise


def sample_chains(
    model: TrainedDenoiser,
    *,
    schedule: DiffusionSchedule,
    parametrisation: Parametrisation,
    sampler: ReverseSampler,
    lengths: Sequence[int],
    seeds: Sequence[int],
    device: torch.device | str = "cpu",
    view: Callable[[ChainBatch], Chains] | None = None,
    start_share: float | None = None,
    **loop: Any,
) -> Samples:
    """One backbone per (length, seed): :func:`~genie.sampling.reverse.reverse_process` of a
    :class:`NoisePredictor` on a :class:`~genie.sampling.chains.ChainBatch` whose noise has the
    model's scale σ(L) per chain, started as :mod:`genie.sampling.start` says where the sampler's
    first timestep is below T; ``view``: the residues of the batch this process updates
    (sequence shards, :func:`genie.sampling.sharded.sample_sharded`; default all);
    ``start_share``: start at the signal share c (:func:`genie.sampling.start.share_start`);
    ``loop``: further arguments of ``reverse_process``."""
    scales = parametrisation.noise.sampling(lengths)  # σ of each chain, Å
    chains = ChainBatch(lengths=lengths, seeds=seeds, device=device, scales=scales)
    if start_share is not None:
        start = share_start(sampler.timesteps(), schedule.alpha_bar, lengths, scales,
                            share=start_share)  # fmt: skip
        sampler = LateStart(sampler, start=start)
    first = sampler.timesteps()[0]
    if first < schedule.num_timesteps:  # a start below T (genie.sampling.start)
        alpha_bar = float(schedule.alpha_bar[first])
        loop["start_factors"] = start_factors(lengths, scales, alpha_bar=alpha_bar)
    predictor = NoisePredictor(model, schedule=schedule, parametrisation=parametrisation,
                               seeds=seeds)  # fmt: skip
    return reverse_process(predictor, sampler, chains if view is None else view(chains), **loop)
