"""The prediction target (``predictionTarget``): ε and x0 parametrisations against their closed
forms, each other, and the loss targets."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import helix_trace
from torch.testing import assert_close

from genie.diffusion.noise_scale import NoiseScale
from genie.diffusion.parametrisation import Parametrisation, Prediction, centred


def noisy_batch(seed: int = 0):
    """x0 (centred helices, one chain padded), ε, σ, ᾱ and x_t = √ᾱ x0 + √(1−ᾱ) σ ε."""
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.stack([helix_trace(10, generator=gen) for _ in range(2)]).double() * 2
    mask = torch.ones(2, 10, dtype=torch.float64)
    mask[1, 7:] = 0
    x0 = centred(x0, mask)
    eps = torch.randn(2, 10, 3, generator=gen, dtype=torch.float64) * mask[..., None]
    sigma = torch.tensor([1.0, 9.0], dtype=torch.float64)
    ab = torch.tensor([0.3, 0.97], dtype=torch.float64)
    x_t = (
        ab.sqrt()[:, None, None] * x0 + (1 - ab).sqrt()[:, None, None] * sigma[:, None, None] * eps
    )
    return x0, eps, sigma, ab, x_t, mask


def test_centred_hand_computed():
    x = torch.tensor([[[1.0, 2, 3], [3, 2, 1], [100, 100, 100]]])
    mask = torch.tensor([[1.0, 1, 0]])
    assert_close(centred(x, mask), torch.tensor([[[-1.0, 0, 1], [1, 0, -1], [0, 0, 0]]]))


def test_epsilon_target_is_genie_hand_computed():
    """ν̂ is the output itself; x̂0 = (x_t − √(1−ᾱ) ν̂) / √ᾱ, one value worked by hand."""
    x_t = torch.tensor([[[2.0, 0.0, -1.0]]])
    out = torch.tensor([[[1.0, 4.0, 0.0]]])
    pred = Parametrisation().predict(out, x_t, torch.ones(1, 1), alpha_bar=torch.tensor([0.64]))
    assert pred.noise is out
    # √ᾱ = 0.8, √(1−ᾱ) = 0.6: x̂0 = (x_t − 0.6·out) / 0.8
    assert_close(pred.x0, torch.tensor([[[1.75, -3.0, -1.25]]]))


def test_x0_target_hand_computed():
    """x̂0 = centred(x_t) − out (the frames' translations); ν̂ = (x_t − √ᾱ x̂0) / √(1−ᾱ)."""
    x_t = torch.tensor([[[1.0, 0, 0], [3, 0, 0]]])  # centre (2, 0, 0)
    out = torch.tensor([[[0.5, 1, 0], [-0.5, 0, 1]]])
    par = Parametrisation(target="x0")
    pred = par.predict(out, x_t, torch.ones(1, 2), alpha_bar=torch.tensor([0.64]))
    x0 = torch.tensor([[[-1.5, -1, 0], [1.5, 0, -1]]])
    assert_close(pred.x0, x0)
    assert_close(pred.noise, (x_t - 0.8 * x0) / 0.6)


@pytest.mark.parametrize("target", ["epsilon", "x0"])
def test_every_prediction_is_consistent_with_the_forward_process(target):
    """x_t = √ᾱ x̂0 + √(1−ᾱ) ν̂ for any network output, both targets."""
    _, _, _, ab, x_t, mask = noisy_batch()
    out = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(3), dtype=x_t.dtype)
    out = out * mask[..., None]
    pred = Parametrisation(target=target).predict(out, x_t, mask, alpha_bar=ab)
    a = ab[:, None, None]
    assert_close(a.sqrt() * pred.x0 + (1 - a).sqrt() * pred.noise, x_t * mask[..., None])


def test_the_two_parametrisations_give_the_same_x0_for_the_same_prediction():
    """A network output of the ε model, ν̂, and the output x̃_t − x̂0 of the x0 model that
    predicts the same structure give the same x̂0 and the same ν̂ (each target converts the
    other's prediction exactly); for the true noise both recover the true x0."""
    x0, eps, sigma, ab, x_t, mask = noisy_batch()
    nu = sigma[:, None, None] * eps  # the true noise in Å
    by_eps = Parametrisation().predict(nu, x_t, mask, alpha_bar=ab)
    assert_close(by_eps.x0, x0)
    by_x0 = Parametrisation(target="x0").predict(
        centred(x_t, mask) - by_eps.x0, x_t, mask, alpha_bar=ab
    )
    assert_close(by_x0.x0, by_eps.x0)
    assert_close(by_x0.noise, by_eps.noise)


def test_loss_targets():
    """ε: (ν̂/σ, ε); x0: (x̂0/σ, x0/σ); an exact prediction scores zero on both."""
    x0, eps, sigma, ab, x_t, mask = noisy_batch()
    exact = Prediction(noise=sigma[:, None, None] * eps, x0=x0)
    for target in ("epsilon", "x0"):
        par = Parametrisation(noise=NoiseScale(kind="fixed", sigma=9.0), target=target)
        predicted, true = par.loss_pair(exact, x0=x0, noise=eps, sigma=sigma)
        assert_close(predicted, true)
    wrong = Prediction(noise=exact.noise + 1.0, x0=x0 + 2.0)
    predicted, true = Parametrisation().loss_pair(wrong, x0=x0, noise=eps, sigma=sigma)
    assert_close(predicted - true, 1.0 / sigma[:, None, None].expand_as(true))
    predicted, true = Parametrisation(target="x0").loss_pair(wrong, x0=x0, noise=eps, sigma=sigma)
    assert_close(predicted - true, 2.0 / sigma[:, None, None].expand_as(true))
    with pytest.raises(ValueError, match="predictionTarget"):
        Parametrisation(target="v")


def test_x0_error_amplification_of_each_target():
    """An output error δ moves x̂0 by √(1−ᾱ)/√ᾱ·δ with ε, by δ with x0 (module docstring)."""
    _, _, _, ab, x_t, mask = noisy_batch()
    out = torch.zeros_like(x_t)
    delta = torch.zeros_like(x_t)
    delta[:, 0, 0] = 1.0
    for target, gain in (("epsilon", lambda a: math.sqrt(1 - a) / math.sqrt(a)), ("x0", None)):
        par = Parametrisation(target=target)
        moved = par.predict(out + delta, x_t, mask, alpha_bar=ab).x0
        base = par.predict(out, x_t, mask, alpha_bar=ab).x0
        for c, a in enumerate(ab.tolist()):
            want = gain(a) if gain else 1.0
            assert float((base - moved)[c, 0, 0]) == pytest.approx(want)
