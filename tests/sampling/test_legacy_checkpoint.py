"""A checkpoint written before the noise-scale keys (its stored config has none of them) loads as
Genie's unit noise with ε prediction, and the sampling command draws exactly what Genie's DDPM
loop, written out here independently of genie.sampling, draws from the same model and seeds."""

from __future__ import annotations

import math

import numpy as np
import torch
from helpers import write_tiny_checkpoint

from genie.checkpoint import checksum_entry, read_checkpoint
from genie.config import load_sample_config
from genie.data.structure_io import read_ca_segments
from genie.sampling.chains import sample_seed
from genie.sampling.run import sample

NEW_KEYS = ("noiseScale", "noiseSigma", "predictionTarget", "selfConditioning",
            "selfConditionGraph", "randomNeighbors")  # fmt: skip


def legacy_checkpoint(path, *, timesteps: int):
    """A tiny checkpoint whose stored config lacks every key added with the noise scale."""
    write_tiny_checkpoint(path, timesteps=timesteps)
    stored = torch.load(path, weights_only=True)
    config = stored["hyper_parameters"]["config"]
    for key in NEW_KEYS:
        del config[key]
    stored["genie_checksum"] = checksum_entry(stored["state_dict"])
    torch.save(stored, path)
    return path


def genie_ddpm(model, lengths, seeds, *, timesteps: int, temperature: float) -> list[np.ndarray]:
    """Genie's sampler from its definition: x_T ~ N(0, I), then for t = T..1
    x ← (x − β_t/√(1−ᾱ_t) ε̂)/√α_t + γ√β_t z (no z at t = 1), with the cosine schedule's
    β_t = clip(1 − ᾱ_t/ᾱ_{t−1}, 0, 0.999) and ᾱ re-accumulated from the clipped β; each chain's
    x_T and z drawn in that order from its own generator, the chains run in one padded batch."""
    closed = [math.cos(t / (timesteps + 1) * math.pi / 2) ** 2 for t in range(timesteps + 1)]
    beta = [0.0] + [min(max(1 - closed[t] / closed[t - 1], 0.0), 0.999)
                    for t in range(1, timesteps + 1)]  # fmt: skip
    alpha_bar = np.cumprod([1 - b for b in beta]).tolist()
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    n_max = max(lengths)
    mask = torch.zeros(len(lengths), n_max)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1

    def draw():
        z = torch.zeros(len(lengths), n_max, 3)
        for i, (n, g) in enumerate(zip(lengths, gens, strict=True)):
            z[i, :n] = torch.randn(n, 3, generator=g)
        return z

    x = draw()
    with torch.no_grad():
        for t in range(timesteps, 0, -1):
            eps = model(x, torch.full((len(lengths),), t), mask).float()
            x = (x - beta[t] / math.sqrt(1 - alpha_bar[t]) * eps) / math.sqrt(1 - beta[t])
            if t > 1:
                x = x + temperature * math.sqrt(beta[t]) * draw()
            x = x * mask[..., None]
    return [x[i, :n].double().numpy() for i, n in enumerate(lengths)]


def test_an_old_checkpoint_samples_exactly_as_genie(tmp_path):
    ckpt = legacy_checkpoint(tmp_path / "old.ckpt", timesteps=30)
    trained = read_checkpoint(ckpt)
    assert trained.parametrisation.noise.kind == "unit"
    assert trained.parametrisation.target == "epsilon"
    assert not trained.model.self_conditioning and trained.config.randomNeighbors == 0
    out = tmp_path / "samples"
    cfg = load_sample_config(None, [f"checkpoint={ckpt}", f"outputDirectory={out}",
                                    "sampleLengths=7,12", "samplesPerLength=1", "batchSize=2",
                                    "device=cpu", "temperature=0.8", "name=old"])  # fmt: skip
    written = sample(cfg)
    assert len(written) == 2
    lengths, seeds = [7, 12], [sample_seed(0, 7, 0), sample_seed(0, 12, 0)]
    reference = genie_ddpm(trained.model, lengths, seeds, timesteps=30, temperature=0.8)
    for n, want in zip(lengths, reference, strict=True):
        (got,) = read_ca_segments(out / f"old_L{n}_0000.pdb", split_chain_breaks=False)
        assert got.coords.shape == (n, 3)
        # PDB holds 3 decimals: the written file is the reference rounded (half a unit of 1e-3)
        assert np.abs(got.coords - want).max() <= 5.01e-4
