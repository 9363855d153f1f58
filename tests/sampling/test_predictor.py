"""The trained model as the reverse loop's denoiser (genie/sampling/predictor.py): plain models
pass through unchanged, self-conditioning feeds back the last x̂0, graph seeds per (chain, step),
noise of each chain's scale σ, re-centring."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import REPO, SPARSE_TINY, denoiser_batch, helix_trace, randomize_
from torch.testing import assert_close

from genie.config import load_config
from genie.diffusion import DiffusionSchedule
from genie.diffusion.noise_scale import NoiseScale
from genie.diffusion.parametrisation import Parametrisation, centred
from genie.model import build_denoiser
from genie.sampling.chains import ChainBatch
from genie.sampling.ddim import DDIMSampler
from genie.sampling.ddpm import DDPMSampler
from genie.sampling.predictor import NoisePredictor, sample_chains, step_seed
from genie.sampling.renoise import RenoiseSampler
from genie.sampling.reverse import reverse_process


class Oracle:
    """A model that knows x0 per length: its output is the exact noise in Å (ε target) or
    x̃_t − x0 (x0 target); records what it was given."""

    def __init__(self, schedule, targets, *, target="epsilon", self_conditioning=False):
        self.schedule, self.targets, self.target = schedule, targets, target
        self.self_conditioning = self_conditioning
        self.given: list[torch.Tensor | None] = []
        self.graph_calls: list[tuple[torch.Tensor | None, torch.Tensor]] = []

    def build_graph(self, coords, mask, *, self_condition=None, seeds=None):
        self.graph_calls.append((self_condition, seeds))
        return None

    def __call__(self, x, t, mask, *, graph=None, self_condition=None):
        self.given.append(self_condition)
        x0 = torch.zeros_like(x)
        for i, n in enumerate(mask.sum(-1).long().tolist()):
            x0[i, :n] = self.targets[n]
        if self.target == "x0":
            return (centred(x, mask) - x0) * mask[..., None]
        ab = self.schedule.alpha_bar[t][:, None, None]
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt() * mask[..., None]


def test_a_plain_model_passes_through_unchanged():
    """Unit noise, ε, no self-conditioning, no random edges: the sampler gets the model's own
    output for the model's own graph, bit for bit."""
    cfg = load_config(REPO / "configs" / "train_stage3v2.config", SPARSE_TINY)
    model = randomize_(build_denoiser(cfg), scale=0.2, seed=1).eval()
    sched = DiffusionSchedule(num_timesteps=1000)
    x, t, mask = denoiser_batch(13, pad_last=2)
    x, mask = x.float(), mask.float()
    predictor = NoisePredictor(model, schedule=sched, parametrisation=Parametrisation(),
                               seeds=[1, 2])  # fmt: skip
    with torch.no_grad():
        graph = predictor.build_graph(x, mask)
        assert torch.equal(graph.index, model.build_graph(x, mask).index)
        assert torch.equal(predictor(x, t, mask, graph=graph), model(x, t, mask, graph=graph))


def test_self_conditioning_feeds_back_the_centred_x0_of_the_last_step():
    sched = DiffusionSchedule(num_timesteps=20)
    target = helix_trace(8, generator=torch.Generator().manual_seed(0)) + 5.0  # not centred
    oracle = Oracle(sched, {8: target}, self_conditioning=True)
    predictor = NoisePredictor(oracle, schedule=sched, parametrisation=Parametrisation(),
                               seeds=[7])  # fmt: skip
    x = torch.randn(1, 8, 3, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(1, 8)
    for t in (20, 15):
        predictor.build_graph(x, mask)
        predictor(x, torch.tensor([t]), mask)
    assert oracle.given[0] is None and oracle.graph_calls[0][0] is None
    # ε oracle: x̂0 = target exactly; fed back centred, to the graph and to the model
    assert_close(oracle.given[1], centred(target[None], mask))
    assert_close(oracle.graph_calls[1][0], centred(target[None], mask))
    seeds = [int(s) for _, s in oracle.graph_calls]
    assert seeds == [step_seed(7, 0), step_seed(7, 1)] and seeds[0] != seeds[1]


def test_step_seeds_are_deterministic_and_distinct():
    seeds = {step_seed(s, i) for s in range(20) for i in range(50)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert step_seed(3, 4) == step_seed(3, 4)


@pytest.mark.parametrize("strategy", ["ddpm", "ddim", "renoise"])
@pytest.mark.parametrize("target", ["epsilon", "x0"])
def test_length_aware_sampling_recovers_the_target_of_an_oracle(strategy, target):
    """With noise of scale σ(L) ≈ 9-12 Å and an exact model, every sampler lands on the data,
    for both prediction targets; x_T has the scale σ(L)."""
    sched = DiffusionSchedule(num_timesteps=60)
    lengths = [40, 90]
    targets = {n: 3 * helix_trace(n, generator=torch.Generator().manual_seed(n)) for n in lengths}
    par = Parametrisation(noise=NoiseScale(kind="length"), target=target)
    sampler = {
        "ddpm": lambda: DDPMSampler(schedule=sched, temperature=1.0),
        "ddim": lambda: DDIMSampler(schedule=sched, stride=4, eta=0.5, temperature=1.0),
        "renoise": lambda: RenoiseSampler(schedule=sched, stride=4, temperature=1.0),
    }[strategy]()
    out = sample_chains(Oracle(sched, targets, target=target), schedule=sched, parametrisation=par,
                        sampler=sampler, lengths=lengths, seeds=[3, 4])  # fmt: skip
    for coords, n in zip(out.coords, lengths, strict=True):
        assert_close(coords, targets[n], atol=2e-3, rtol=0)
    x_T = ChainBatch(lengths=lengths, seeds=[3, 4], scales=par.noise.sampling(lengths)).normal()
    rg = float(((x_T[1, :90] - x_T[1, :90].mean(0)) ** 2).sum(-1).mean().sqrt())
    assert rg == pytest.approx(math.sqrt(3) * par.noise.sampling([90])[0], rel=0.15)


def test_recentre_keeps_every_chain_centred():
    sched = DiffusionSchedule(num_timesteps=10)

    class Drift:  # a model whose output drags x away from the origin
        def build_graph(self, coords, mask):
            return None

        def __call__(self, x, t, mask, *, graph=None):
            return -torch.ones_like(x) * mask[..., None]

    chains = ChainBatch(lengths=[5, 9], seeds=[1, 2])
    sampler = DDPMSampler(schedule=sched, temperature=1.0)
    out = reverse_process(Drift(), sampler, chains, trajectory_every=1, recentre=True)
    for frames in out.trajectories:
        for frame in frames:
            assert float(frame.mean(0).abs().max()) < 1e-5
    drifted = reverse_process(Drift(), sampler, ChainBatch(lengths=[5, 9], seeds=[1, 2]))
    assert float(drifted.coords[0].mean(0).abs().max()) > 1.0
