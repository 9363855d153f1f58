"""Calibration: real chains scored against other real chains look real; random walks do not.

The bundled TS50 chains (50 real proteins, 79-173 residues) are split by index parity into two
halves of 25; one half is scored against the other. Random walks of 3.8 Å steps in uniformly
random directions (fixed seed) with the same lengths as the scored half are the negative
control. Thresholds, with the values measured when they were set (docs/EVALUATION.md):

- JSD < 0.02 bits for real vs real (measured 0.002-0.003: sampling noise of ~3,400 values in
  36-40 bins); the random walk's bond-angle JSD > 0.2 (0.35) and dihedral JSD > 0.1 (0.15).
- Clashes: none in real chains (measured 0); random walks > 0.1 per residue (0.48).
- P-SEA fractions of real chains within ±0.1 of 0.32 / 0.18 / 0.50 (0.31 / 0.19 / 0.50); random
  walks helix + strand < 0.05 (0.001).
- Rg exponent of real chains plausible for globular proteins: 0.25 <= ν <= 0.45 within two
  standard errors (0.29 ± 0.07: TS50 spans a factor of 2.2 in length only, which cannot pin ν
  down better; real segments of 30-1,020 residues give 0.275 ± 0.009, so the lower bound is
  0.25, not the textbook 1/3); random walks are larger than the reference fit at equal length by
  > 20% (30%).
"""

from __future__ import annotations

import numpy as np
import pytest

from genie.data.dataset_file import default_dataset_path, load_dataset_file
from genie.eval.metrics import evaluate_backbones, summarize_reference
from genie.eval.settings import EvalSettings

SETTINGS = EvalSettings(buckets=(128,), max_tm_pairs=10)
TS50_SSE = {"helix": 0.32, "strand": 0.18, "coil": 0.50}


def random_walk(n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` Å: steps of 3.8 Å in uniformly random directions."""
    steps = rng.normal(size=(n - 1, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.concatenate([np.zeros((1, 3)), np.cumsum(steps, axis=0)])


@pytest.fixture(scope="module")
def halves():
    data = load_dataset_file(default_dataset_path())
    chains = [data.segment(i).astype(np.float64) for i in range(len(data))]
    return chains[0::2], chains[1::2]


@pytest.fixture(scope="module")
def reference(halves):
    return summarize_reference(halves[1], source="TS50 odd half", settings=SETTINGS)


@pytest.fixture(scope="module")
def real_metrics(halves, reference):
    return evaluate_backbones(halves[0], reference, settings=SETTINGS)


@pytest.fixture(scope="module")
def walk_metrics(halves, reference):
    rng = np.random.default_rng(1234)
    walks = [random_walk(len(x), rng) for x in halves[0]]
    return evaluate_backbones(walks, reference, settings=SETTINGS)


def test_real_vs_real_looks_real(real_metrics):
    overall = real_metrics["overall"]
    for key, value in overall["jsd"].items():
        assert value < 0.02, key
    assert overall["clashes"]["pairs"] == 0
    assert overall["bond_length"]["fraction_outside"] < 0.01  # cis-prolines are the outliers
    for name, expected in TS50_SSE.items():
        assert abs(overall["sse"][name] - expected) <= 0.1, name
    fit = real_metrics["generated_rg_fit"]
    assert 0.25 <= fit["nu"] <= 0.45
    assert 0.9 < overall["rg_ratio_to_reference"] < 1.1
    assert overall["diversity"]["mean_tm"] < 0.5  # unrelated proteins
    assert all(check["passed"] for check in real_metrics["checks"]), real_metrics["checks"]


def test_random_walks_look_wrong(walk_metrics):
    overall = walk_metrics["overall"]
    assert overall["clashes"]["per_residue"] > 0.1
    assert overall["clashes"]["fraction_chains_with_clash"] == 1.0
    assert overall["sse"]["helix"] + overall["sse"]["strand"] < 0.05
    assert overall["jsd"]["bond_angle"] > 0.2
    assert overall["jsd"]["dihedral"] > 0.1
    assert overall["rg_ratio_to_reference"] > 1.2
    failed = {check["name"] for check in walk_metrics["checks"] if check["passed"] is False}
    assert {"clashes per residue", "bond angle JSD (bits)", "dihedral JSD (bits)"} <= failed


def test_whole_ts50_reference_figures(halves):
    everything = summarize_reference(halves[0] + halves[1], settings=SETTINGS)
    for name, expected in TS50_SSE.items():
        assert everything.group["sse"][name] == pytest.approx(expected, abs=0.01)
    assert everything.group["bond_length"]["mean"] == pytest.approx(3.80, abs=0.01)
    assert 0.2 < everything.fit["nu"] < 0.4
