"""The shared reverse loop: k-NN graph reuse, trajectory frames, CUDA cache clearing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import SPARSE_TINY, as_denoiser, randomize_
from torch import nn
from torch.testing import assert_close

from genie.config import load_config
from genie.diffusion import DiffusionSchedule
from genie.model.build import build_denoiser
from genie.sampling.chains import ChainBatch
from genie.sampling.ddim import DDIMSampler
from genie.sampling.ddpm import DDPMSampler
from genie.sampling.reverse import reverse_process, step_pairs


class Graph:
    """What a fake graph holds: the coordinates it was built from and its serial number."""

    def __init__(self, coords: torch.Tensor, serial: int):
        self.coords, self.serial = coords.clone(), serial


class GraphModel(nn.Module):
    """Counts ``build_graph`` calls and checks that every forward gets the latest graph."""

    def __init__(self):
        super().__init__()
        self.built: list[Graph] = []
        self.inputs: list[torch.Tensor] = []
        self.received: list[int] = []

    def build_graph(self, coords, mask):
        assert coords.shape[:2] == mask.shape
        self.built.append(Graph(coords, len(self.built)))
        return self.built[-1]

    def forward(self, x, t, mask, graph=None):
        assert graph is self.built[-1], "the model must get the graph built last"
        self.inputs.append(x.clone())
        self.received.append(graph.serial)
        return 0.2 * x * mask[..., None]


@pytest.mark.parametrize("frequency", [1, 3, 10, 25])
def test_graph_rebuilt_every_n_steps_from_the_current_coordinates(frequency):
    sched = DiffusionSchedule(num_timesteps=10)
    model = GraphModel()
    reverse_process(
        model,
        DDPMSampler(schedule=sched, temperature=0.5),
        ChainBatch(lengths=[6, 4], seeds=[1, 2]),
        knn_update_frequency=frequency,
    )
    steps = 10
    rebuilt_at = list(range(0, steps, frequency))  # steps 0, f, 2f, ...
    assert len(model.built) == len(rebuilt_at)
    assert model.received == [i // frequency for i in range(steps)]
    for graph, step in zip(model.built, rebuilt_at, strict=True):
        assert torch.equal(graph.coords, model.inputs[step])  # built from that step's x_t


def test_models_without_graphs_get_no_graph():
    sched = DiffusionSchedule(num_timesteps=5)
    calls = []

    def denoise(x, t, mask):
        calls.append(t.tolist())
        return 0 * x

    sampler = DDIMSampler(schedule=sched, stride=2, eta=0.0, temperature=1.0)
    reverse_process(as_denoiser(denoise), sampler, ChainBatch(lengths=[3, 5], seeds=[0, 1]))
    assert calls == [[5, 5], [3, 3], [1, 1]]


def test_trajectory_frames_every_k_steps_end_at_the_result():
    sched = DiffusionSchedule(num_timesteps=20)
    out = reverse_process(
        as_denoiser(lambda x, t, m: 0.1 * x),
        DDPMSampler(schedule=sched, temperature=0.5),
        ChainBatch(lengths=[4, 7], seeds=[0, 1]),
        trajectory_every=6,
        trajectory_chains=[False, True],
    )
    # 20 steps; frames after steps i with (20 − i) % 6 == 0: i = 2, 8, 14, 20 -> t = 18, 12, 6, 0
    assert out.frame_timesteps == [18, 12, 6, 0]
    assert out.trajectories[0] == []
    assert [f.shape for f in out.trajectories[1]] == [(7, 3)] * 4
    assert torch.equal(out.trajectories[1][-1], out.coords[1])


def test_step_pairs_end_at_zero_and_reject_bad_plans():
    assert step_pairs([9, 5, 2]) == [(9, 5), (5, 2), (2, 0)]
    for bad in ([], [3, 3, 1], [2, 5], [4, 0]):
        with pytest.raises(ValueError, match="strictly descending"):
            step_pairs(bad)


def test_chain_batch_checks_its_arguments():
    with pytest.raises(ValueError, match="one seed per length"):
        ChainBatch(lengths=[5, 6], seeds=[1])
    with pytest.raises(ValueError, match="at least 3 residues"):
        ChainBatch(lengths=[5, 2], seeds=[1, 2])
    batch = ChainBatch(lengths=[3, 5], seeds=[7, 8])
    z = batch.normal()
    assert z.shape == (2, 5, 3) and torch.all(z[0, 3:] == 0)
    assert_close(z[1], torch.randn(5, 3, generator=torch.Generator().manual_seed(8)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_cache_cleared_every_n_steps(monkeypatch):
    cleared = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: cleared.append(1))
    sched = DiffusionSchedule(num_timesteps=12)
    reverse_process(
        as_denoiser(lambda x, t, m: 0.1 * x),
        DDPMSampler(schedule=sched, temperature=0.5),
        ChainBatch(lengths=[8], seeds=[0], device="cuda"),
        clear_cache_every=5,
    )
    assert len(cleared) == 2  # after steps 5 and 10


def test_real_sparse_model_reuses_its_graph_exactly():
    """Stage 3 V2 denoiser (tiny): sampling with the graph rebuilt every step (the loop calls
    ``build_graph``) equals sampling where the model builds its own graph inside every forward;
    rebuilding less often changes the sample (the graph follows the trace)."""
    torch.manual_seed(0)
    config = Path(__file__).resolve().parents[2] / "configs" / "train_stage3v2.config"
    model = build_denoiser(load_config(config, SPARSE_TINY)).eval()
    randomize_(model)  # zero-initialised output layers would make every sample the same
    sched = DiffusionSchedule(num_timesteps=8)

    def run(fn, frequency=1):
        sampler = DDPMSampler(schedule=sched, temperature=0.6)
        with torch.no_grad():
            out = reverse_process(
                fn, sampler, ChainBatch(lengths=[14, 9], seeds=[3, 4]),
                knn_update_frequency=frequency,
            )  # fmt: skip
        return out

    # graph-free to the loop: the model builds its own graph inside every forward
    self_built = as_denoiser(lambda x, t, mask: model(x, t, mask))
    reused, own, stale = run(model), run(self_built), run(model, frequency=4)
    for a, b in zip(reused.coords, own.coords, strict=True):
        assert_close(a, b, rtol=0, atol=1e-5)
    assert any(
        not torch.allclose(a, c, atol=1e-4)
        for a, c in zip(reused.coords, stale.coords, strict=True)
    )
