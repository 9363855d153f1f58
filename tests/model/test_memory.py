"""The memory estimate against the peaks measured on the H100 (docs/benchmarks/*.json), and the
refusal of a step that cannot fit."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import REPO

from genie.config import ConfigError, load_config
from genie.model.build import model_sizes
from genie.model.memory import GIB, available_bytes, peak_bytes, require_memory

MEASURED = {  # results file of docs/benchmarks -> the config it measured
    "baseline_tf32": "train_baseline", "train_stage1": "train_stage1",
    "train_stage2": "train_stage2", "stage3_bs4": "train_stage3", "stage3v2_a": "train_stage3v2",
    "stage3v2_train_b": "train_stage3v2", "stage3v2_sample_b": "train_stage3v2",
    "stage4_train_a": "train_stage4", "train_mhc_flash": "train_mhc_flash",
}  # fmt: skip


@pytest.mark.parametrize("results", sorted(MEASURED))
def test_estimate_follows_the_measured_peaks(results):
    document = json.loads((REPO / "docs" / "benchmarks" / f"{results}.json").read_text())
    sizes = model_sizes(load_config(REPO / "configs" / f"{MEASURED[results]}.config"))
    rows = [
        r
        for r in document.get("rows") or document["results"]
        if r["status"] == "ok" and r["peak_mem_gib"]
    ]
    assert rows
    for row in rows:
        estimate = peak_bytes(sizes, length=row["length"], batch=document["batch_size"],
                              training=row["mode"] == "train")  # fmt: skip
        ratio = estimate / GIB / row["peak_mem_gib"]
        low = 0.75 if row["length"] >= 1024 else 0.5
        assert low <= ratio <= 1.4, (row["length"], row["mode"], ratio)


def test_estimate_grows_as_the_representation_says():
    dense = model_sizes(load_config(REPO / "configs" / "train_baseline.config"))
    sparse = model_sizes(load_config(REPO / "configs" / "train_stage3v2.config"))
    for sizes, exponent in ((dense, 2), (sparse, 1)):  # quadratic and linear growth
        a, b, c = (peak_bytes(sizes, length=n, batch=1, training=True) for n in (4096, 8192, 16384))
        assert (c - b) == pytest.approx(2**exponent * (b - a), rel=1e-3)
    assert (
        peak_bytes(dense, length=256, batch=4, training=True)
        > 3.9 * peak_bytes(dense, length=256, batch=1, training=True) - 3 * 16 * dense.parameters
    )


def test_a_step_that_cannot_fit_is_refused_with_the_keys_to_change():
    sizes = model_sizes(load_config(REPO / "configs" / "train_baseline.config"))
    needed = peak_bytes(sizes, length=100_000, batch=1, training=False)
    assert needed > 4 * 2**40  # n² pairs of 128 channels: terabytes
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match=r"needs about [\d,.]+ GiB, but [\d,.]+ GiB of RAM is "
                       r"free: lower sampleLengths or batchSize, or give --force"):  # fmt: skip
        require_memory(needed, device=cpu, what="sampling 1 chain of 100,000 residues",
                       keys="sampleLengths or batchSize")  # fmt: skip
    require_memory(needed, device=cpu, what="x", keys="y", force=True)  # --force: no refusal
    require_memory(1024, device=cpu, what="x", keys="y")  # a small step passes
    assert 0 < available_bytes(cpu)
