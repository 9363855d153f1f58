"""The noise scale σ (``noiseScale``): each option's forward process against its closed form,
the Rg of x_T against σ(L), and the fit of σ(L) against the real chains it came from."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from helpers import REPO, helix_trace, shared_pdb_dir
from torch.testing import assert_close

from genie.diffusion import DiffusionSchedule
from genie.diffusion.noise_scale import LENGTH_FIT, MIN_SIGMA, NoiseScale, ca_std
from genie.sampling.chains import ChainBatch


def test_ca_std_is_rg_over_root_3_hand_computed():
    x = torch.tensor([[[0.0, 0, 0], [2, 0, 0], [0, 4, 0], [6, 8, 4]]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1, 1, 0]])  # the last residue is padding
    centre = np.array([2 / 3, 4 / 3, 0])
    pts = np.array([[0, 0, 0], [2, 0, 0], [0, 4, 0]]) - centre
    expected = math.sqrt((pts**2).sum() / 9)  # Σ‖x − x̄‖² / (3 n), n = 3
    assert_close(ca_std(x, mask), torch.tensor([expected], dtype=torch.float64))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("unit", lambda x0: 1.0), ("fixed", lambda x0: 7.5), ("length", lambda x0: None)],
)
def test_forward_process_mean_and_variance_match_the_closed_form(kind, expected):
    """x_t = √ᾱ x0 + √(1−ᾱ) σ ε: over many ε, mean √ᾱ x0 and variance (1−ᾱ) σ² per coordinate,
    σ = 1, noiseSigma, or the chain's own Cα standard deviation."""
    sched = DiffusionSchedule(num_timesteps=100)
    x0 = (3.0 * helix_trace(24, generator=torch.Generator().manual_seed(0))).double()[None]
    mask = torch.ones(1, 24, dtype=torch.float64)
    scale = NoiseScale(kind=kind, sigma=7.5)
    sigma = scale.training(x0, mask)  # [1]
    want = expected(x0)
    want = float(ca_std(x0, mask)) if want is None else want
    assert float(sigma) == pytest.approx(want, rel=1e-12)
    draws = 20_000
    t = torch.full((draws,), 60)
    eps = torch.randn(draws, 24, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_t = sched.add_noise(x0.expand(draws, -1, -1), t, eps * sigma)
    ab = float(sched.alpha_bar[60])
    mean, var = x_t.mean(0), x_t.var(0)
    # Standard errors: of the mean σ√((1−ᾱ)/N), of the variance (1−ᾱ)σ²·√(2/N); 5 of each.
    assert (mean - math.sqrt(ab) * x0[0]).abs().max() < 5 * want * math.sqrt((1 - ab) / draws)
    rel = (var / ((1 - ab) * want**2) - 1).abs().max()
    assert rel < 5 * math.sqrt(2 / draws) * 2  # ×2: the largest of 72 coordinates


def test_length_sigma_floor_and_sampling_values():
    flat = torch.zeros(1, 5, 3)  # all residues at one point: σ 0, floored
    assert float(NoiseScale(kind="length").training(flat, torch.ones(1, 5))) == MIN_SIGMA
    assert NoiseScale().sampling([64, 2048]) == [1.0, 1.0]
    assert NoiseScale(kind="fixed", sigma=12.0).sampling([64, 2048]) == [12.0, 12.0]
    got = NoiseScale(kind="length").sampling([128, 2048])
    assert got == pytest.approx([1.5518 * 128**0.3573, 1.5518 * 2048**0.3573])
    with pytest.raises(ValueError, match="noiseScale"):
        NoiseScale(kind="chroma")
    with pytest.raises(ValueError, match="noiseSigma"):
        NoiseScale(kind="fixed", sigma=0.0)


@pytest.mark.parametrize("length", [128, 1024, 2048])
def test_rg_of_x_T_matches_sigma_of_the_length(length):
    """x_T of ``length`` noise is σ(L) z: E[Rg²] = 3 σ² (n − 1) / n, and its Rg is the real
    chains' Rg fit √3 σ(L) (to the 1/n of the centroid)."""
    sigma = NoiseScale(kind="length").sampling([length])[0]
    chains = 64
    batch = ChainBatch(lengths=[length] * chains, seeds=list(range(chains)),
                       scales=[sigma] * chains)  # fmt: skip
    x_T = batch.normal().double()  # [chains, n, 3]
    rg2 = ((x_T - x_T.mean(1, keepdim=True)) ** 2).sum(-1).mean(-1)  # [chains]
    expected = 3 * sigma**2 * (length - 1) / length
    # Rg² of one chain: a mean of 3n squares, relative sd √(2/(3n)); over 64 chains, 5 sd.
    assert float(rg2.mean()) == pytest.approx(
        expected, rel=5 * math.sqrt(2 / (3 * length * chains))
    )
    rg = float(rg2.mean().sqrt())  # against the real chains' Rg fit, 2 % (1/n and sampling)
    assert rg == pytest.approx(math.sqrt(3) * LENGTH_FIT(length), rel=0.02)


def test_unit_noise_draws_are_genie_standard_normals_exactly():
    plain = ChainBatch(lengths=[7, 4], seeds=[3, 4]).normal()
    unit = ChainBatch(lengths=[7, 4], seeds=[3, 4], scales=[1.0, 1.0]).normal()
    scaled = ChainBatch(lengths=[7, 4], seeds=[3, 4], scales=[2.5, 1.0]).normal()
    reference = torch.randn(7, 3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(plain, unit) and torch.equal(plain[0], reference)
    assert torch.equal(scaled[0], 2.5 * reference) and torch.equal(scaled[1], plain[1])
    with pytest.raises(ValueError, match="noise scale"):
        ChainBatch(lengths=[7], seeds=[3], scales=[0.0])


def test_the_length_fit_is_the_fit_of_the_real_chains():
    """scripts/fit_noise_scale.py on ../shared/data/pdb reproduces LENGTH_FIT (it was made so),
    and the long chains (> 1,000 residues) lie within its stated scatter."""
    pdb = shared_pdb_dir()
    spec = importlib.util.spec_from_file_location("fit", REPO / "scripts" / "fit_noise_scale.py")
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)
    sources = [pdb / "train", pdb / "bench" / "ts50", pdb / "long"]
    lengths, scales = fit.chain_scales(sources, min_length=40, split_at_gaps=["4V8R"])
    a, nu, scatter = fit.power_law_fit(lengths, scales)
    assert a == pytest.approx(LENGTH_FIT.prefactor, abs=1e-3)
    assert nu == pytest.approx(LENGTH_FIT.exponent, abs=1e-3)
    assert scatter == pytest.approx(LENGTH_FIT.scatter, abs=1e-3)
    long = lengths > 1000
    assert long.sum() >= 10
    residual = np.log(scales[long]) - np.log([LENGTH_FIT(n) for n in lengths[long]])
    assert np.abs(residual).max() < 2 * LENGTH_FIT.scatter
