"""DDPM sampler with an oracle denoiser: the reverse process must land on the known structure."""

from __future__ import annotations

import torch
from helpers import GraphFreeDenoiser, PointOracle, as_denoiser, helix_trace
from torch.testing import assert_close

from genie.diffusion import DiffusionSchedule
from genie.sampling.ddpm import ddpm_sample


def test_oracle_sampling_recovers_the_target_for_mixed_lengths():
    sched = DiffusionSchedule(num_timesteps=200)
    targets = {n: helix_trace(n, generator=torch.Generator().manual_seed(n)) for n in (7, 12)}
    coords, _ = ddpm_sample(PointOracle(sched, targets), sched, [12, 7], [1, 2], temperature=0.6)
    assert [c.shape for c in coords] == [(12, 3), (7, 3)]
    assert_close(coords[0], targets[12], atol=1e-3, rtol=0)
    assert_close(coords[1], targets[7], atol=1e-3, rtol=0)


def test_sample_regenerates_alone_and_seeds_matter():
    sched = DiffusionSchedule(num_timesteps=50)

    class Shrink(GraphFreeDenoiser):  # a fixed, non-trivial denoiser
        def denoise(self, x, t, mask):
            return 0.3 * x * mask[..., None]

    batch, _ = ddpm_sample(Shrink(), sched, [5, 9, 6], [11, 22, 33], temperature=1.0)
    alone, _ = ddpm_sample(Shrink(), sched, [9], [22], temperature=1.0)
    assert_close(batch[1], alone[0])
    other, _ = ddpm_sample(Shrink(), sched, [9], [23], temperature=1.0)
    assert (other[0] - alone[0]).abs().max() > 1e-3


def test_trajectory_kept_every_k_steps():
    sched = DiffusionSchedule(num_timesteps=20)
    _, traj = ddpm_sample(
        as_denoiser(lambda x, t, m: 0 * x), sched, [4], [0], temperature=0.5, trajectory_every=5
    )
    assert len(traj[0]) == 4 and traj[0][0].shape == (4, 3)
