"""Starting the reverse process below T (genie/sampling/start.py, ``startTimestep``)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import PointOracle, helix_trace
from torch.testing import assert_close

from genie.diffusion import DiffusionSchedule
from genie.diffusion.noise_scale import LENGTH_FIT, NoiseScale
from genie.diffusion.parametrisation import Parametrisation
from genie.sampling.chains import ChainBatch
from genie.sampling.ddim import DDIMSampler
from genie.sampling.ddpm import DDPMSampler
from genie.sampling.predictor import sample_chains
from genie.sampling.renoise import RenoiseSampler
from genie.sampling.reverse import reverse_process
from genie.sampling.start import LateStart, late_start, share_start, signal_share, start_factors


class Oracle:
    """A trained model that knows x0 per length (its output is the exact noise in Å) and
    records the inputs it was given: the interface sample_chains needs."""

    self_conditioning = False

    def __init__(self, schedule, targets):
        self.schedule, self.targets, self.inputs = schedule, targets, []

    def build_graph(self, coords, mask, *, self_condition=None, seeds=None):
        return None

    def __call__(self, x, t, mask, *, graph=None, self_condition=None):
        self.inputs.append((int(t[0]), x.clone()))
        x0 = torch.zeros_like(x)
        for i, n in enumerate(mask.sum(-1).long().tolist()):
            x0[i, :n] = self.targets.get(n, torch.zeros(n, 3))
        ab = self.schedule.alpha_bar[t][:, None, None]
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt() * mask[..., None]


def test_visited_timesteps_are_the_inner_ones_at_or_below_the_start():
    sched = DiffusionSchedule(num_timesteps=1000)
    ddim = DDIMSampler(schedule=sched, stride=10, eta=1.0, temperature=1.0)
    assert LateStart(ddim, start=950).timesteps() == list(range(950, 0, -10))
    assert LateStart(ddim, start=955).timesteps()[0] == 950  # the first visited one below
    assert LateStart(DDPMSampler(schedule=sched, temperature=1.0), start=7).timesteps() == [
        7, 6, 5, 4, 3, 2, 1]  # fmt: skip
    assert late_start(ddim, None) is ddim  # off: the sampler itself
    with pytest.raises(ValueError, match="below every timestep"):
        LateStart(ddim, start=5)  # DDIM stride 10 visits 1000, ..., 10


def test_the_step_is_the_inner_samplers():
    sched = DiffusionSchedule(num_timesteps=50)
    inner = RenoiseSampler(schedule=sched, stride=5, temperature=0.7)
    late = LateStart(inner, start=30)
    x, eps = torch.randn(2, 6, 3), torch.randn(2, 6, 3)
    draws = [torch.randn(2, 6, 3)]
    assert torch.equal(late.step(x, eps, t=30, t_prev=25, noise=lambda: draws[0]),
                       inner.step(x, eps, t=30, t_prev=25, noise=lambda: draws[0]))  # fmt: skip


def test_start_factors_against_the_closed_form():
    # ᾱ σ_L² + (1 − ᾱ) σ², over σ², by hand for unit noise at L = 256 and σ = σ(L)
    sigma_l = LENGTH_FIT(256)
    (unit,) = start_factors([256], [1.0], alpha_bar=0.0064)
    assert unit == pytest.approx(math.sqrt(0.0064 * sigma_l**2 + 0.9936), rel=1e-12)
    (own,) = start_factors([256], [sigma_l], alpha_bar=0.3)
    assert own == pytest.approx(1.0, rel=1e-12)  # length-aware noise: x_t keeps σ(L)
    with pytest.raises(ValueError, match="alpha_bar"):
        start_factors([10], [1.0], alpha_bar=1.0)


def test_the_start_has_the_marginals_size():
    """The first model input of a late start is σ z times the factor: its per-axis standard
    deviation over a long chain matches √(ᾱ_s σ_L² + (1 − ᾱ_s) σ²)."""
    sched = DiffusionSchedule(num_timesteps=1000)
    oracle = Oracle(sched, {})  # data at the origin: its output does not matter here
    sampler = LateStart(DDIMSampler(schedule=sched, stride=100, eta=0.0, temperature=1.0),
                        start=950)  # fmt: skip
    n = 20_000
    sample_chains(oracle, schedule=sched, parametrisation=Parametrisation(), sampler=sampler,
                  lengths=[n], seeds=[3])  # fmt: skip
    t0, x = oracle.inputs[0]
    assert t0 == 900  # stride 100 visits 1000, 900, ...: the first at or below 950
    ab = float(sched.alpha_bar[900])
    want = math.sqrt(ab * LENGTH_FIT(n) ** 2 + (1 - ab))
    assert float(x[0].std()) == pytest.approx(want, rel=0.02)
    z = ChainBatch(lengths=[n], seeds=[3]).normal()  # the same draw, unscaled
    assert_close(x, z * want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["unit", "length"])
def test_unset_and_a_start_at_t_sample_exactly_as_before(kind):
    sched = DiffusionSchedule(num_timesteps=40)
    targets = {n: 3 * helix_trace(n, generator=torch.Generator().manual_seed(n)) for n in (12, 20)}
    par = Parametrisation(noise=NoiseScale(kind=kind))

    def draw(sampler):
        return sample_chains(Oracle(sched, targets), schedule=sched, parametrisation=par,
                             sampler=sampler, lengths=[12, 20], seeds=[1, 2]).coords  # fmt: skip

    plain = DDPMSampler(schedule=sched, temperature=0.8)
    for a, b in zip(draw(plain), draw(LateStart(plain, start=40)), strict=True):
        assert torch.equal(a, b)


def test_an_oracle_lands_on_its_target_from_a_late_start():
    sched = DiffusionSchedule(num_timesteps=60)
    lengths = [40, 90]
    targets = {n: 3 * helix_trace(n, generator=torch.Generator().manual_seed(n)) for n in lengths}
    sampler = LateStart(DDIMSampler(schedule=sched, stride=4, eta=0.5, temperature=1.0), start=45)
    out = sample_chains(Oracle(sched, targets), schedule=sched,
                        parametrisation=Parametrisation(noise=NoiseScale(kind="length")),
                        sampler=sampler, lengths=lengths, seeds=[3, 4])  # fmt: skip
    for coords, n in zip(out.coords, lengths, strict=True):
        assert_close(coords, targets[n], atol=2e-3, rtol=0)


def test_start_factors_must_match_the_batch():
    chains = ChainBatch(lengths=[5, 6], seeds=[1, 2])
    sampler = DDPMSampler(schedule=DiffusionSchedule(num_timesteps=5), temperature=1.0)
    oracle = PointOracle(DiffusionSchedule(num_timesteps=5), {5: torch.zeros(5, 3),
                                                               6: torch.zeros(6, 3)})  # fmt: skip
    with pytest.raises(ValueError, match="start_factors"):
        reverse_process(oracle, sampler, chains, start_factors=[1.0])


def brute_force_start(timesteps, alpha_bar, lengths, scales, share):
    """The lowest visited t whose every chain's share ≤ c, from the definition (float64)."""
    ok = []
    for t in timesteps:
        ab = float(alpha_bar[t])
        shares = [ab * LENGTH_FIT(n) ** 2 / (ab * LENGTH_FIT(n) ** 2 + (1 - ab) * s**2)
                  for n, s in zip(lengths, scales, strict=True)]  # fmt: skip
        if max(shares) > share:
            break
        ok.append(t)
    return ok[-1] if ok else timesteps[0]


@pytest.mark.parametrize("stride", [1, 10])
def test_share_start_against_the_definition(stride):
    sched = DiffusionSchedule(num_timesteps=1000)
    ts = list(range(1000, 0, -stride))
    starts = {}
    for n in (64, 128, 1024, 2048):
        starts[n] = share_start(ts, sched.alpha_bar, [n], [1.0], share=0.2)
        assert starts[n] == brute_force_start(ts, sched.alpha_bar, [n], [1.0], 0.2)
        if stride == 1:  # the share crosses c between the start and the step after it
            assert signal_share(float(sched.alpha_bar[starts[n] - 1]), length=n,
                                noise_scale=1.0) > 0.2  # fmt: skip
    order = [starts[n] for n in (64, 128, 1024, 2048)]  # longer chains start nearer T
    assert order == sorted(order) and (stride > 1 or len(set(order)) == 4)
    # a batch starts where its longest chain does; length-aware noise: the share is ᾱ itself
    assert share_start(ts, sched.alpha_bar, [64, 2048], [1.0, 1.0], share=0.2) == starts[2048]
    sigma = LENGTH_FIT(256)
    assert signal_share(0.3, length=256, noise_scale=sigma) == pytest.approx(0.3, rel=1e-12)
    with pytest.raises(ValueError, match="startSignalShare"):
        share_start(ts, sched.alpha_bar, [64], [1.0], share=1.0)


def test_sampling_from_a_signal_share_starts_each_batch_at_its_own_step():
    sched = DiffusionSchedule(num_timesteps=1000)
    sampler = DDIMSampler(schedule=sched, stride=100, eta=0.0, temperature=1.0)
    starts = []
    for n in (64, 4096):
        oracle = Oracle(sched, {})
        sample_chains(oracle, schedule=sched, parametrisation=Parametrisation(), sampler=sampler,
                      lengths=[n], seeds=[1], start_share=0.6)  # fmt: skip
        want = share_start(sampler.timesteps(), sched.alpha_bar, [n], [1.0], share=0.6)
        first, x = oracle.inputs[0]
        starts.append(want)
        assert first == want and len(oracle.inputs) == len([t for t in sampler.timesteps()
                                                            if t <= want])  # fmt: skip
        z = ChainBatch(lengths=[n], seeds=[1]).normal()
        if want == 1000:  # 4,096 residues: the share is above c at 900, so it starts at T, as Genie
            assert torch.equal(x, z)
            continue
        ab = float(sched.alpha_bar[want])
        assert_close(x, z * math.sqrt(ab * LENGTH_FIT(n) ** 2 + 1 - ab))
    assert starts[0] < 1000 == starts[1]  # both branches ran
