"""The re-noising sampler (``samplingStrategy renoise``): its update against hand-computed values
and an oracle denoiser."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import PointOracle, helix_trace
from torch.testing import assert_close

from genie.diffusion import DiffusionSchedule
from genie.sampling.renoise import RenoiseSampler
from genie.sampling.reverse import sample_backbones


def test_one_step_hand_computed():
    sched = DiffusionSchedule(num_timesteps=10)
    ab = sched.alpha_bar.double().tolist()
    sampler = RenoiseSampler(schedule=sched, stride=3, temperature=0.5)
    assert sampler.timesteps() == [10, 7, 4, 1]
    x = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    eps = torch.tensor([[[0.5, 0.0, -1.0]]], dtype=torch.float64)
    z = torch.tensor([[[0.1, 0.2, 0.3]]], dtype=torch.float64)
    got = sampler.step(x, eps, t=7, t_prev=4, noise=lambda: z)
    x0 = [
        (xi - math.sqrt(1 - ab[7]) * ei) / math.sqrt(ab[7])
        for xi, ei in ((1, 0.5), (2, 0), (3, -1))
    ]
    want = [
        math.sqrt(ab[4]) * a + 0.5 * math.sqrt(1 - ab[4]) * z
        for a, z in zip(x0, (0.1, 0.2, 0.3), strict=True)
    ]
    assert_close(got, torch.tensor([[want]], dtype=torch.float64))


def test_last_step_returns_x0_and_draws_no_noise():
    sched = DiffusionSchedule(num_timesteps=10)
    sampler = RenoiseSampler(schedule=sched, stride=3, temperature=1.0)
    x, eps = torch.ones(1, 2, 3), torch.full((1, 2, 3), 0.25)
    ab = float(sched.alpha_bar[1])

    def no_noise():
        raise AssertionError("the last step must not draw noise")

    got = sampler.step(x, eps, t=1, t_prev=0, noise=no_noise)
    assert_close(got, (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab))
    zero = RenoiseSampler(schedule=sched, stride=3, temperature=0.0)  # γ 0: x̂0 rescaled only
    ab4, ab7 = float(sched.alpha_bar[4]), float(sched.alpha_bar[7])
    x0 = (x - math.sqrt(1 - ab7) * eps) / math.sqrt(ab7)
    assert_close(zero.step(x, eps, t=7, t_prev=4, noise=no_noise), math.sqrt(ab4) * x0)
    with pytest.raises(ValueError, match="earlier timestep"):
        sampler.step(x, eps, t=4, t_prev=4, noise=no_noise)
    with pytest.raises(ValueError, match="skipSteps"):
        RenoiseSampler(schedule=sched, stride=10, temperature=1.0)


def test_oracle_sampling_recovers_the_target():
    """With the exact noise of data concentrated at x0, every step's x̂0 is x0: the sample is
    x0 at any stride and temperature."""
    sched = DiffusionSchedule(num_timesteps=100)
    targets = {n: helix_trace(n, generator=torch.Generator().manual_seed(n)) for n in (6, 11)}
    for stride in (1, 7):
        sampler = RenoiseSampler(schedule=sched, stride=stride, temperature=1.0)
        coords, _ = sample_backbones(PointOracle(sched, targets), sampler, [11, 6], [4, 5])
        assert_close(coords[0], targets[11], atol=1e-4, rtol=0)
        assert_close(coords[1], targets[6], atol=1e-4, rtol=0)
