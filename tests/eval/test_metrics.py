"""The evaluation API: bucketing, pooling, JSON output, reference reuse, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genie.data.dataset_file import default_dataset_path, load_dataset_file
from genie.eval import EvalSettings, evaluate_backbones, summarize_reference
from genie.eval.ca_geometry import bond_lengths
from genie.eval.clashes import count_clashes
from genie.eval.settings import bucket_index, bucket_label, parse_buckets

SETTINGS = EvalSettings(buckets=(100, 140), max_tm_pairs=3)


@pytest.fixture(scope="module")
def chains() -> list[np.ndarray]:
    data = load_dataset_file(default_dataset_path())
    return [data.segment(i).astype(np.float64) for i in range(len(data))]


@pytest.fixture(scope="module")
def reference(chains):
    return summarize_reference(chains[20:], settings=SETTINGS)


@pytest.fixture(scope="module")
def samples(chains) -> list[np.ndarray]:
    # Eight real chains plus one with a stretched bond and a planted clash.
    broken = chains[0].copy()
    broken[40:] += np.array([2.0, 0.0, 0.0])  # bond 39-40 becomes far from 3.8 Å
    broken[60] = broken[10] + np.array([0.5, 0.0, 0.0])  # residue 60 sits on residue 10
    return chains[:8] + [broken]


@pytest.fixture(scope="module")
def metrics(samples, reference):
    names = [f"s{i}" for i in range(len(samples))]
    return evaluate_backbones(samples, reference, names=names, settings=SETTINGS)


def test_buckets_partition_the_samples(metrics, samples):
    labels = [b["label"] for b in metrics["buckets"]]
    expected = sorted({bucket_index(len(x), SETTINGS.buckets) for x in samples})
    assert labels == [bucket_label(i, SETTINGS.buckets) for i in expected]
    assert sum(b["num_chains"] for b in metrics["buckets"]) == len(samples)
    for bucket in metrics["buckets"]:
        low, high = bucket["min_length"], bucket["max_length"] or 10**9
        assert low <= bucket["length_min"] <= bucket["length_max"] <= high
    rows = metrics["samples"]
    assert [r["name"] for r in rows] == [f"s{i}" for i in range(len(samples))]


def test_pooled_figures_match_direct_computation(metrics, samples):
    bonds = np.concatenate([bond_lengths(x) for x in samples])
    overall = metrics["overall"]
    assert overall["bond_length"]["mean"] == pytest.approx(bonds.mean())
    assert overall["bond_length"]["std"] == pytest.approx(bonds.std(), rel=1e-6)
    assert overall["bond_length"]["fraction_outside"] == pytest.approx(
        np.mean((bonds < 3.6) | (bonds > 4.0))
    )
    clashes = sum(count_clashes(x) for x in samples)
    assert clashes >= 1  # the planted one
    assert overall["clashes"]["pairs"] == clashes
    residues = sum(len(x) for x in samples)
    assert overall["clashes"]["per_residue"] == pytest.approx(clashes / residues)
    assert sum(overall["sse"].values()) == pytest.approx(1.0)
    assert sum(overall["histograms"]["bond_angle"]) == sum(len(x) - 2 for x in samples)
    broken = metrics["samples"][-1]
    assert broken["clashes_per_residue"] > 0 and broken["bond_fraction_outside"] > 0


def test_output_is_strict_json(metrics):
    text = json.dumps(metrics, allow_nan=False)
    assert json.loads(text)["version"] == 1
    assert len(metrics["settings"]["histogram_edges"]["dihedral"]) == 37


def test_reference_may_be_raw_arrays(chains, metrics, samples):
    again = evaluate_backbones(
        samples, chains[20:], names=[r["name"] for r in metrics["samples"]], settings=SETTINGS
    )
    assert again["overall"]["jsd"] == metrics["overall"]["jsd"]


def test_errors_name_the_problem(chains, reference):
    with pytest.raises(ValueError, match="other clash_distance"):
        evaluate_backbones(chains[:2], reference, settings=EvalSettings(clash_distance=2.5))
    # settings that do not shape the reference summary may differ
    evaluate_backbones(chains[:2], reference, settings=EvalSettings(max_tm_pairs=0))
    with pytest.raises(ValueError, match="no generated chains"):
        evaluate_backbones([], reference, settings=SETTINGS)
    with pytest.raises(ValueError, match="names has 1 entries"):
        evaluate_backbones(chains[:2], reference, names=["a"], settings=SETTINGS)
    with pytest.raises(ValueError, match="reference set is empty"):
        summarize_reference([], settings=SETTINGS)


def test_settings_validation_and_buckets():
    assert parse_buckets("64, 128,256") == (64, 128, 256)
    assert [bucket_index(n, (64, 128)) for n in (1, 64, 65, 128, 129, 10**5)] == [0, 0, 1, 1, 2, 2]
    assert [bucket_label(i, (64, 128)) for i in range(3)] == ["1-64", "65-128", "129+"]
    with pytest.raises(ValueError, match="strictly increasing"):
        parse_buckets("128,64")
    with pytest.raises(ValueError, match="comma-separated integers"):
        parse_buckets("64,abc")
    with pytest.raises(ValueError, match="max_tm_length"):
        EvalSettings(max_tm_length=2)
    with pytest.raises(ValueError, match="bond_range"):
        EvalSettings(bond_range=(4.0, 3.6))
