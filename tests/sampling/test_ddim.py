"""DDIM against closed forms: Gaussian data (exact ε̂), point data, and the DDPM posterior."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import GraphFreeDenoiser, PointOracle, helix_trace
from torch.testing import assert_close

from genie.diffusion import DiffusionSchedule
from genie.sampling.ddim import DDIMSampler, ddim_sample, ddim_timesteps
from genie.sampling.ddpm import DDPMSampler, ddpm_sample


class GaussianOptimal(GraphFreeDenoiser):
    """The exact ε̂ = E[ε | x_t] for data x_0 ~ N(μ, s² I):
    ε̂ = √(1 − ᾱ) (x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ)."""

    def __init__(self, schedule: DiffusionSchedule, mu: torch.Tensor, s: float):
        super().__init__()
        self.alpha_bar, self.mu, self.s = schedule.alpha_bar.double(), mu.double(), s

    def denoise(self, x, t, mask):
        ab = self.alpha_bar[t][:, None, None]
        eps = (1 - ab).sqrt() * (x.double() - ab.sqrt() * self.mu) / (ab * self.s**2 + 1 - ab)
        return (eps * mask[..., None]).float()


def gaussian_ddim_closed_form(x_T, mu, s, alpha_bar, visited):
    """Deterministic DDIM with the exact ε̂ is linear in d_t = x_t − √ᾱ_t μ. One step t -> t':
    d_t' = d_t · (√(ᾱ_t' ᾱ_t) s² + √((1 − ᾱ_t')(1 − ᾱ_t))) / (ᾱ_t s² + 1 − ᾱ_t); x_0 = μ + d_0."""
    ab = alpha_bar.double().tolist()
    scale = 1.0
    for t, t_prev in zip(visited, [*visited[1:], 0], strict=True):
        num = math.sqrt(ab[t_prev] * ab[t]) * s**2 + math.sqrt((1 - ab[t_prev]) * (1 - ab[t]))
        scale *= num / (ab[t] * s**2 + 1 - ab[t])
    return mu.double() + (x_T.double() - math.sqrt(ab[visited[0]]) * mu.double()) * scale


@pytest.mark.parametrize("stride", [0, 7, 150])
def test_deterministic_ddim_matches_the_gaussian_closed_form(stride):
    T, n, seed, s = 1000, 6, 5, 0.5
    sched = DiffusionSchedule(num_timesteps=T)
    mu = 3.0 * torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    coords, _ = ddim_sample(
        GaussianOptimal(sched, mu, s), sched, [n], [seed], stride=stride, eta=0.0, temperature=1
    )
    x_T = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))  # the chain's x_T
    visited = list(range(T, 0, -max(stride, 1)))  # T, T − s, ... ≥ 1
    expected = gaussian_ddim_closed_form(x_T, mu, s, sched.alpha_bar, visited)
    assert_close(coords[0].double(), expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_point_data_is_recovered_in_a_few_strided_steps(eta):
    sched = DiffusionSchedule(num_timesteps=1000)
    targets = {n: helix_trace(n, generator=torch.Generator().manual_seed(n)) for n in (7, 12)}
    coords, _ = ddim_sample(
        PointOracle(sched, targets), sched, [12, 7], [1, 2], stride=200, eta=eta, temperature=1
    )
    assert_close(coords[0], targets[12], atol=1e-3, rtol=0)
    assert_close(coords[1], targets[7], atol=1e-3, rtol=0)


@pytest.mark.parametrize("t", [2, 37, 500, 1000])
def test_eta_one_stride_one_is_the_ddpm_posterior(t):
    """Mean (x_t − β_t/√(1 − ᾱ_t) ε̂)/√α_t (DDPM's), standard deviation γ √β̃_t with
    β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)."""
    sched = DiffusionSchedule(num_timesteps=1000)
    gamma = 0.7
    ddim = DDIMSampler(schedule=sched, stride=1, eta=1.0, temperature=gamma)
    gen = torch.Generator().manual_seed(t)
    x, eps = 10 * torch.randn(2, 5, 3, generator=gen), torch.randn(2, 5, 3, generator=gen)
    x, eps = x.double(), eps.double()
    beta, alpha = sched.betas.double()[t], sched.alphas.double()[t]
    ab, ab_prev = sched.alpha_bar.double()[t], sched.alpha_bar.double()[t - 1]
    mean = (x - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()
    posterior_var = beta * (1 - ab_prev) / (1 - ab)

    zero = ddim.step(x, eps, t=t, t_prev=t - 1, noise=lambda: torch.zeros_like(x))
    one = ddim.step(x, eps, t=t, t_prev=t - 1, noise=lambda: torch.ones_like(x))
    assert_close(zero, mean, atol=1e-4, rtol=1e-4)
    assert_close(one - zero, torch.full_like(x, gamma * posterior_var.sqrt()), atol=1e-6, rtol=1e-4)
    ddpm = DDPMSampler(schedule=sched, temperature=gamma)
    ddpm_mean = ddpm.step(x, eps, t=t, t_prev=t - 1, noise=lambda: torch.zeros_like(x))
    assert_close(zero, ddpm_mean, atol=1e-4, rtol=1e-4)


def test_timestep_plan_and_its_limits():
    assert ddim_timesteps(10, 0) == list(range(10, 0, -1))
    assert ddim_timesteps(10, 1) == list(range(10, 0, -1))
    assert ddim_timesteps(10, 3) == [10, 7, 4, 1]
    assert ddim_timesteps(10, 4) == [10, 6, 2]
    assert ddim_timesteps(1000, 150) == [1000, 850, 700, 550, 400, 250, 100]
    assert ddim_timesteps(1000, 700) == [1000, 300]
    for stride in (1000, 1500):
        with pytest.raises(ValueError, match=r"skipSteps = \d+ is not smaller than .*1000"):
            ddim_timesteps(1000, stride)


class MixResidues(GraphFreeDenoiser):
    """A fixed denoiser that couples the residues of a chain (through its masked mean), so any
    leak from padding or from other chains would change a chain's result."""

    def denoise(self, x, t, mask):
        m = mask[..., None]
        mean = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)
        return (0.3 * x + 0.2 * mean + 0.001 * t[:, None, None]) * m


SAMPLERS = {
    "ddpm": lambda model, sched, lengths, seeds: ddpm_sample(
        model, sched, lengths, seeds, temperature=0.8
    ),
    "ddim": lambda model, sched, lengths, seeds: ddim_sample(
        model, sched, lengths, seeds, stride=4, eta=0.6, temperature=0.8
    ),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_sample_in_a_mixed_batch_equals_the_sample_alone(name):
    run = SAMPLERS[name]
    sched = DiffusionSchedule(num_timesteps=40)
    batch, _ = run(MixResidues(), sched, [5, 11, 8, 11], [11, 22, 33, 44])
    for i, (n, seed) in enumerate([(5, 11), (11, 22), (8, 33), (11, 44)]):
        alone, _ = run(MixResidues(), sched, [n], [seed])
        assert_close(batch[i], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_seed_same_sample_other_seed_other_sample(name):
    run = SAMPLERS[name]
    sched = DiffusionSchedule(num_timesteps=40)
    a, _ = run(MixResidues(), sched, [9], [5])
    b, _ = run(MixResidues(), sched, [9], [5])
    c, _ = run(MixResidues(), sched, [9], [6])
    assert torch.equal(a[0], b[0])
    assert (a[0] - c[0]).abs().max() > 1e-2


def test_temperature_scales_only_the_injected_noise():
    """η = 0 injects no noise, so γ has no effect; with η > 0 it has."""
    sched = DiffusionSchedule(num_timesteps=30)
    run = lambda eta, gamma: ddim_sample(  # noqa: E731
        MixResidues(), sched, [6], [3], stride=2, eta=eta, temperature=gamma
    )[0][0]
    assert torch.equal(run(0.0, 0.2), run(0.0, 1.5))
    assert not torch.equal(run(0.5, 1.0), run(0.5, 0.0))
    # γ = 0 removes the noise but keeps η's smaller ε̂ direction, so it differs from η = 0 too
    assert not torch.equal(run(0.5, 0.0), run(0.0, 0.0))
