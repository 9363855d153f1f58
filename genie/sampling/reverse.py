"""The reverse-diffusion loop shared by the samplers: model calls, k-NN graph reuse, trajectory
frames, CUDA cache clearing and progress callbacks.

A sampler (:class:`~genie.sampling.ddpm.DDPMSampler`, :class:`~genie.sampling.ddim.DDIMSampler`)
says which timesteps to visit and how one step moves x from t to the next visited timestep; this
loop runs it for a :class:`~genie.sampling.chains.ChainBatch`:

    x = x_T ~ N(0, σ² I)
    for (t, t_prev) in pairs:  ε̂ = model(x, t, mask);  x = step(x, ε̂, t, t_prev)

where ``pairs`` are consecutive visited timesteps, the last one ending at t_prev = 0 (x_0), σ is
each chain's noise scale (1 Å for Genie's unit noise; ``ChainBatch(scales=...)``) and ε̂ the
predicted noise in Å.

The model is a :class:`Denoiser`: ``build_graph(coords [b, n, 3] Å, mask [b, n])`` returns the
k-NN graph it works on (None for models without one), and ``model(x, t, mask, graph=graph)``
takes it. The graph is rebuilt from the current x every ``knn_update_frequency`` reverse steps
(steps 0, f, 2f, ...) and the same graph is passed in between.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from genie.sampling.chains import ChainBatch


class Denoiser(Protocol):
    """What the loop needs from a model (:class:`~genie.model.denoiser.GenieDenoiser` is one)."""

    def build_graph(self, coords: torch.Tensor, mask: torch.Tensor) -> Any | None:
        """The graph of ``coords [b, n, 3]`` Å (``mask [b, n]``) to pass as ``graph=``, or
        None for a model without one."""
        ...

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, *, graph: Any | None = None
    ) -> torch.Tensor:
        """x_t ``[b, n, 3]`` Å, t ``[b]`` long, ``mask [b, n]`` -> ε̂ ``[b, n, 3]``, the
        predicted noise in Å (σ ε̂ for a noise scale σ; :mod:`genie.sampling.predictor`)."""
        ...


class Chains(Protocol):
    """The chains of one batch (:class:`~genie.sampling.chains.ChainBatch`, or its shard under
    sequence parallelism, :class:`genie.sampling.sharded.ShardedChains`)."""

    lengths: list[int]  # residues of each chain
    mask: torch.Tensor  # [b, n] of the residues this loop updates

    def __len__(self) -> int: ...

    def normal(self) -> torch.Tensor:
        """The next standard normal draw of every chain, ``[b, n, 3]`` (zero at padding)."""
        ...

    def centred(self, x: torch.Tensor) -> torch.Tensor:
        """``x [b, n, 3]`` with each chain's centroid (over all its residues) at the origin."""
        ...

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x [b, n, 3]`` -> one float32 CPU tensor ``[n_i, 3]`` per chain."""
        ...


class ReverseSampler(Protocol):
    """What the loop needs from a sampler."""

    name: str

    def timesteps(self) -> list[int]:
        """The timesteps at which the model is evaluated, strictly descending, each in 1..T."""
        ...

    def step(
        self,
        x: torch.Tensor,
        eps: torch.Tensor,
        *,
        t: int,
        t_prev: int,
        noise: Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """x_t ``[b, n, 3]`` Å and ε̂ ``[b, n, 3]`` Å -> x_{t_prev} ``[b, n, 3]`` Å; ``noise()``
        returns fresh noise ``[b, n, 3]`` of each chain's scale σ, N(0, σ² I) (called only when
        noise is injected)."""
        ...


@dataclass
class Samples:
    """Result of one batch.

    Attributes:
        coords: the final x_0 of each chain, ``[n_i, 3]`` float32 CPU, Å.
        trajectories: per chain, the kept intermediate structures (``[n_i, 3]`` each, oldest
            first, the last one equal to x_0); empty for chains whose trajectory is not kept.
        frame_timesteps: the timestep t_prev that each kept frame holds (x_{t_prev}).
    """

    coords: list[torch.Tensor]
    trajectories: list[list[torch.Tensor]]
    frame_timesteps: list[int]


def step_pairs(timesteps: Sequence[int]) -> list[tuple[int, int]]:
    """``[t_1 > t_2 > ... > t_S]`` -> ``[(t_1, t_2), ..., (t_S, 0)]``, checked."""
    ts = [int(t) for t in timesteps]
    if not ts or ts[-1] < 1 or any(a <= b for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError(f"timesteps must be strictly descending and ≥ 1, got {ts[:5]}...")
    return list(zip(ts, [*ts[1:], 0], strict=True))


@torch.no_grad()
def reverse_process(
    model: Denoiser,
    sampler: ReverseSampler,
    chains: Chains,
    *,
    knn_update_frequency: int = 1,
    clear_cache_every: int = 0,
    trajectory_every: int = 0,
    trajectory_chains: Sequence[bool] | None = None,
    on_step: Callable[[int], None] | None = None,
    recentre: bool = False,
    start_factors: Sequence[float] | None = None,
) -> Samples:
    """Run the reverse process for one batch of chains.

    Args:
        model: the denoiser (a :class:`Denoiser`, see the module docstring).
        sampler: which timesteps to visit and the update rule.
        chains: lengths, mask and per-chain noise streams.
        knn_update_frequency: rebuild the k-NN graph every this many reverse steps (≥ 1).
        clear_cache_every: ``torch.cuda.empty_cache()`` every this many steps on CUDA (0 = never).
        trajectory_every: keep x after reverse step i (1-based, of S) when (S − i) is a multiple
            of this; 0 keeps none. The final x_0 is always the last kept frame.
        trajectory_chains: which chains keep a trajectory (default all).
        on_step: called after every reverse step with the number of steps done so far.
        recentre: after every step, move each chain's Cα centroid to the origin (``recentre``;
            the model is translation-invariant, so this only stops the drift of x).
        start_factors: per chain, what the first draw is multiplied by (a start below T,
            :mod:`genie.sampling.start`); None: x starts as N(0, σ² I).
    """
    if knn_update_frequency < 1:
        raise ValueError(f"knn_update_frequency must be ≥ 1, got {knn_update_frequency}")
    if clear_cache_every < 0 or trajectory_every < 0:
        raise ValueError("clear_cache_every and trajectory_every must be ≥ 0")
    keep = list(trajectory_chains) if trajectory_chains is not None else [True] * len(chains)
    if len(keep) != len(chains):
        raise ValueError(f"trajectory_chains has {len(keep)} entries for {len(chains)} chains")
    pairs = step_pairs(sampler.timesteps())
    mask = chains.mask  # [b, n_max]
    x = chains.normal()  # x_T [b, n_max, 3]
    if start_factors is not None:  # a start below T: the marginal's size
        factors = torch.tensor([float(f) for f in start_factors], device=x.device)
        if factors.shape[0] != x.shape[0]:
            raise ValueError(f"start_factors: {factors.shape[0]} entries, {x.shape[0]} chains")
        x = x * factors[:, None, None]
    trajectories: list[list[torch.Tensor]] = [[] for _ in chains.lengths]
    frame_timesteps: list[int] = []
    graph = None
    for i, (t, t_prev) in enumerate(pairs):
        t_batch = torch.full((len(chains),), t, device=mask.device, dtype=torch.long)
        if i % knn_update_frequency == 0:
            graph = None  # release the old graph before building the new one
            graph = model.build_graph(x, mask)
        eps = model(x, t_batch, mask, graph=graph)
        x = sampler.step(x, eps.float(), t=t, t_prev=t_prev, noise=chains.normal)
        x = x * mask[..., None]
        if recentre:
            x = chains.centred(x)
        done = i + 1
        if trajectory_every and (len(pairs) - done) % trajectory_every == 0:
            frame_timesteps.append(t_prev)
            for frames, kept, coords in zip(trajectories, keep, chains.split(x), strict=True):
                if kept:
                    frames.append(coords)
        if clear_cache_every and x.is_cuda and done % clear_cache_every == 0:
            torch.cuda.empty_cache()
        if on_step is not None:
            on_step(done)
    return Samples(chains.split(x), trajectories, frame_timesteps)


def sample_backbones(
    model: Denoiser,
    sampler: ReverseSampler,
    lengths: Sequence[int],
    seeds: Sequence[int],
    *,
    device: torch.device | str = "cpu",
    on_step: Callable[[int], None] | None = None,
    trajectory_every: int = 0,
) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """One backbone per (length, seed) with ``sampler``: :func:`reverse_process` on one batch.

    Returns:
        the final coordinates (one ``[n_i, 3]`` CPU tensor per chain, Å) and, per chain, the
        kept trajectory frames (every ``trajectory_every``-th step; none for 0).
    """
    out = reverse_process(
        model,
        sampler,
        ChainBatch(lengths=lengths, seeds=seeds, device=device),
        on_step=on_step,
        trajectory_every=trajectory_every,
    )
    return out.coords, out.trajectories
