"""The denoising profile (benchmarks/denoise_profile.py): its figures against a NumPy reference
and two predictions whose figures are known, and the command end to end on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from helpers import SPARSE_TINY

from benchmarks.denoise_profile import profile_figures

REPO = Path(__file__).resolve().parents[2]


def reference_figures(x0_hat, x0, n, breaks):
    """One chain's figures in NumPy, from the definitions (float64)."""
    a, b = x0_hat[:n].astype(np.float64), x0[:n].astype(np.float64)
    rmsd = np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1)))

    def rg(x):
        return np.sqrt(np.mean(np.sum((x - x.mean(0)) ** 2, axis=1)))

    bonds = [np.linalg.norm(a[i] - a[i - 1]) for i in range(1, n) if not breaks[i]]
    return {"rmsd": rmsd, "rg": rg(b), "rg_ratio": rg(a) / rg(b), "bond": np.mean(bonds)}


def test_figures_match_numpy_with_padding_and_breaks():
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 12, 3, generator=gen) * 5
    x0_hat = x0 + torch.randn(2, 12, 3, generator=gen)
    mask = torch.ones(2, 12)
    mask[1, 9:] = 0  # padding: 9 real residues
    x0_hat[1, 9:] = 1e3  # and junk there, which must not count
    breaks = torch.zeros(2, 12, dtype=torch.bool)
    breaks[0, 5] = True  # a join before residue 5
    got = profile_figures(x0_hat, x0, mask, breaks)
    for row, n in ((0, 12), (1, 9)):
        want = reference_figures(x0_hat[row].numpy(), x0[row].numpy(), n, breaks[row].numpy())
        for name, value in want.items():
            assert abs(float(got[name][row]) - value) < 1e-4 * max(1.0, abs(value)), name


def test_known_predictions():
    x0 = torch.randn(1, 20, 3) * 4
    x0 = x0 - x0.mean(1, keepdim=True)
    mask, breaks = torch.ones(1, 20), torch.zeros(1, 20, dtype=torch.bool)
    exact = profile_figures(x0.clone(), x0, mask, breaks)
    assert float(exact["rmsd"]) < 1e-6 and abs(float(exact["rg_ratio"]) - 1) < 1e-6
    nothing = profile_figures(torch.zeros_like(x0), x0, mask, breaks)  # all at the centroid
    assert abs(float(nothing["rmsd"]) - float(nothing["rg"])) < 1e-5
    half = profile_figures(0.5 * x0, x0, mask, breaks)  # shrunken by half
    assert abs(float(half["rg_ratio"]) - 0.5) < 1e-6


def test_the_command_profiles_a_tiny_model(tmp_path):
    ckpt, out = tmp_path / "tiny.ckpt", tmp_path / "profile.json"
    keys = [*SPARSE_TINY, "numTimesteps=100", "minimumNumResidues=20", "maximumNumResidues=32",
            "useProgressiveTraining=False", "validationSize=2", "datasetSize=8",
            "accelerator=cpu", "useMixedPrecision=False"]  # fmt: skip
    made = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "untrained_checkpoint.py"), "--config",
         str(REPO / "configs" / "train_stage3v2.config"), str(ckpt),
         *[item for key in keys for item in ("--set", key)]],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "denoise_profile.py"), str(ckpt),
         "--length", "24", "--timesteps", "1,100", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())["results"][0]["rows"]
    assert [r["t"] for r in rows] == [1, 100]
    # ε prediction at t = 1: x̂0 = (x_t − √(1−ᾱ_1) ε̂)/√ᾱ_1 stays next to x_t, so next to x0
    # whatever the (untrained) network says; at t = T the untrained model is far off
    assert rows[0]["rmsd"] < 0.2 * rows[0]["rg"] and rows[1]["rmsd"] > rows[0]["rmsd"]
    bad = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "denoise_profile.py"), str(ckpt),
         "--timesteps", "0,5000"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode != 0 and "--timesteps" in bad.stderr and "Traceback" not in bad.stderr
