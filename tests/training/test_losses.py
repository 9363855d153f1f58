"""The training objective with the issue-15 options: noising with each chain's σ, the loss of
each prediction target, and self-conditioning on a random half of the steps."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import REPO, SPARSE_TINY, TINY_MODEL, helix_trace, randomize_
from torch import nn

from genie.config import load_config
from genie.diffusion.noise_scale import ca_std
from genie.diffusion.parametrisation import centred
from genie.training.module import GenieModule


def batch(b: int = 3, n: int = 14):
    gen = torch.Generator().manual_seed(0)
    coords = torch.stack([(i + 2.0) * helix_trace(n, generator=gen) for i in range(b)])
    mask = torch.ones(b, n)
    mask[-1, n - 4 :] = 0
    coords = centred(coords, mask)
    return {"coords": coords, "mask": mask, "residue_index": torch.arange(n).expand(b, n)}


class Recorder(nn.Module):
    """A stand-in denoiser: returns ``answer(x_t, t, mask)`` and records every call."""

    def __init__(self, answer, *, self_conditioning: bool = False):
        super().__init__()
        self.answer, self.self_conditioning = answer, self_conditioning
        self.weight = nn.Parameter(torch.zeros(()))  # so that the module has parameters
        self.calls: list[dict] = []

    def forward(self, x_t, t, mask, residue_index=None, *, self_condition=None):
        self.calls.append({"x_t": x_t, "t": t, "self_condition": self_condition,
                           "grad": torch.is_grad_enabled()})  # fmt: skip
        return self.answer(x_t, t, mask) + 0 * self.weight


def module(*keys: str, answer=None, self_conditioning=False) -> GenieModule:
    cfg = load_config(None, TINY_MODEL + ["numTimesteps=100", *keys])
    model = Recorder(answer or (lambda x, t, m: torch.zeros_like(x)),
                     self_conditioning=self_conditioning)  # fmt: skip
    return GenieModule(cfg, model=model)


@pytest.mark.parametrize("keys", [[], ["noiseScale=fixed", "noiseSigma=6"], ["noiseScale=length"]])
def test_x_t_is_made_with_the_chains_sigma(keys):
    """x_t = √ᾱ_t x0 + √(1−ᾱ_t) σ ε with the t and ε of the generator, σ of the noise scale."""
    data = batch()
    m = module(*keys)
    m._losses(data, generator=torch.Generator().manual_seed(5))
    (call,) = m.model.calls
    gen = torch.Generator().manual_seed(5)
    t = torch.randint(1, 101, (3,), generator=gen)
    eps = torch.randn(data["coords"].shape, generator=gen) * data["mask"][..., None]
    sigma = {0: torch.ones(3), 2: torch.full((3,), 6.0)}.get(len(keys))
    if sigma is None:
        sigma = ca_std(data["coords"], data["mask"])
        assert float(sigma.min()) > 4.0  # the helices are 2-4× enlarged: σ of several Å
    ab = m.schedule.alpha_bar[t][:, None, None]
    want = ab.sqrt() * data["coords"] + (1 - ab).sqrt() * sigma[:, None, None] * eps
    assert torch.equal(call["t"], t)
    torch.testing.assert_close(call["x_t"], want)


@pytest.mark.parametrize("target", ["epsilon", "x0"])
def test_an_exact_model_has_zero_loss_for_either_target(target):
    """The ε oracle answers σε (the noise in Å), the x0 oracle x̃_t − x0: both score zero."""
    data = batch()
    cfg_keys = ["noiseScale=length", f"predictionTarget={target}", "lossType=mse"]
    m = module(*cfg_keys)
    gen = torch.Generator().manual_seed(9)
    t = torch.randint(1, 101, (3,), generator=gen)
    eps = torch.randn(data["coords"].shape, generator=gen) * data["mask"][..., None]
    sigma = ca_std(data["coords"], data["mask"])[:, None, None]
    ab = m.schedule.alpha_bar[t][:, None, None]
    x_t = ab.sqrt() * data["coords"] + (1 - ab).sqrt() * sigma * eps
    if target == "epsilon":
        m.model.answer = lambda x, tt, mask: sigma * eps
    else:
        m.model.answer = lambda x, tt, mask: (centred(x_t, mask) - data["coords"]) * mask[..., None]
    loss = m._losses(data, generator=torch.Generator().manual_seed(9)).noise
    assert float(loss.detach()) < 1e-9
    m.model.answer = lambda x, tt, mask: torch.ones_like(x) * mask[..., None]  # off by 1 Å/axis
    off = m._losses(data, generator=torch.Generator().manual_seed(9)).noise
    assert float(off.detach()) > 1e-3


def test_self_conditioning_on_half_of_the_steps_with_a_no_grad_first_pass():
    answer = lambda x, t, mask: 0.5 * x * mask[..., None]  # noqa: E731
    m = module(answer=answer, self_conditioning=True)
    data = batch()
    steps, twice = 400, 0
    torch.manual_seed(0)
    for _ in range(steps):
        m.model.calls.clear()
        m._losses(data)
        calls = m.model.calls
        assert calls[-1]["grad"] and len(calls) in (1, 2)
        if len(calls) == 1:
            assert calls[0]["self_condition"] is None
            continue
        twice += 1
        first, second = calls
        assert not first["grad"] and first["self_condition"] is None
        ab = m.schedule.alpha_bar[first["t"]][:, None, None]
        x0 = (first["x_t"] - (1 - ab).sqrt() * answer(first["x_t"], None, data["mask"])) / ab.sqrt()
        torch.testing.assert_close(second["self_condition"], centred(x0, data["mask"]))
    assert abs(twice / steps - 0.5) < 4 * math.sqrt(0.25 / steps)


def test_a_real_model_learns_its_self_conditioning_weights(monkeypatch):
    """Stage 3 V2 with every option: the loss is finite and, on a self-conditioned step, the
    zero-initialised self-conditioning weights get a gradient (the other weights random: the
    zero-initialised final layers of a fresh model pass no gradient back)."""
    keys = ["noiseScale=length", "predictionTarget=x0", "selfConditioning=True",
            "selfConditionGraph=True", "randomNeighbors=4", "numTimesteps=100"]  # fmt: skip
    m = GenieModule(load_config(REPO / "configs" / "train_stage3v2.config", SPARSE_TINY + keys))
    sc = m.model.pair_encoder.sc_features.embedding.weight
    randomize_(m.model, scale=0.2, seed=3)
    with torch.no_grad():
        sc.zero_()
    monkeypatch.setattr("genie.training.module._coin", lambda device, generator: True)
    torch.manual_seed(2)
    terms = m._losses(batch(2, 20))
    assert torch.isfinite(terms.total)
    terms.total.backward()
    assert sc.grad is not None and sc.grad.abs().max() > 0
