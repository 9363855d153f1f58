"""The report's side-by-side section of ours and the original Genie, from hand-made result rows."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from genie.utils.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def _load(name: str):
    """Import a script of benchmarks/ as a module."""
    spec = importlib.util.spec_from_file_location(
        f"_bench_{name}", REPO / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


report = _load("report")


def _row(length: int, mode: str, mem: float | None, median: float | None, **extra) -> dict:
    status = "OOM" if median is None else "ok"
    return {
        "length": length,
        "mode": mode,
        "status": extra.pop("status", status),
        "peak_mem_gib": mem,
        "median_s": median,
        "samples_per_s": None if median is None else 1 / median,
        "times_s": [] if median is None else [median],
        **extra,
    }


def _ours(tmp_path: Path, name: str = "ours.json", **extra) -> Path:
    doc = {
        "device": "NVIDIA H200",
        "date": "2026-12-02T10:00:00+00:00",
        "git_commit": "abc1234",
        "torch": "2.11.0",
        "cuda": "13.0",
        "config": "configs/train_baseline.config",
        "overrides": ["matmulPrecision=highest"],
        "resolved_config": {
            "useMixedPrecision": False,
            "precision": "32",
            "matmulPrecision": "highest",
        },
        "parameters": 4_100_000,
        "batch_size": 1,
        "warmup": 3,
        "repeat": 10,
        "data": "synthetic",
        "command": "python benchmarks/bench_step.py --config configs/train_baseline.config",
        "results": [
            _row(256, "train", 2.0, 0.10),
            _row(256, "sample", 0.5, 0.030),
            _row(512, "train", 8.0, 0.30),
            _row(512, "sample", 2.0, 0.080),
            _row(1024, "train", 30.0, 0.90),
            _row(1024, "sample", 8.0, 0.25),
        ],
    }
    doc.update(extra)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _original(tmp_path: Path, name: str = "original.json", **extra) -> Path:
    doc = {
        "model": "original Genie (aqlaboratory/genie)",
        "original": {"repository": "aqlaboratory/genie", "commit": "42e4c996d6e0e1f8c4987b2d"},
        "device": "NVIDIA H200",
        "date": "2026-12-02T10:20:00+00:00",
        "git_commit": "abc1234",
        "parameters": 4_087_574,
        "matmul_precision": "highest",
        "autocast": None,
        "batch_size": 1,
        "command": "python benchmarks/bench_original_genie.py --lengths 256,512,1024",
        "results": [
            _row(256, "train", 5.0, 0.125),
            _row(256, "sample", 1.0, 0.060),
            _row(512, "train", 20.0, 0.40),
            _row(512, "sample", None, None, status="error: child killed by SIGKILL"),
            _row(1024, "train", None, None),
            _row(1024, "sample", 16.0, 0.50),
            _row(1000, "reverse", 4.0, 0.344, estimated_loop_s=344.0, loop_s=350.5),
        ],
    }
    doc.update(extra)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _table(markdown: str) -> dict[int, dict[str, str]]:
    """The section's table as {L: {header: cell}}."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]  # fmt: skip
    return {int(r["L"]): r for r in rows}


def _report(tmp_path: Path, *args: str) -> str:
    doc = tmp_path / "BENCHMARKS.md"
    report.main([*args, "--title", "Baseline beside the original", "--doc", str(doc)])
    return doc.read_text()


def test_ratio_columns_are_ours_over_the_original_per_length(tmp_path):
    text = _report(tmp_path, str(_ours(tmp_path)), "--original", str(_original(tmp_path)))
    table = _table(text)
    assert sorted(table) == [256, 512, 1024]  # the reverse row (L = 1000) is no table row
    assert table[256]["orig train mem (GiB)"] == "5.00"
    assert table[256]["orig train step (s)"] == "0.125"
    assert table[256]["mem ours/orig"] == "0.40×"  # 2.0 / 5.0
    assert table[256]["time ours/orig"] == "0.80×"  # 0.10 / 0.125
    assert table[256]["orig sample step (s)"] == "0.0600"
    assert table[256]["sample time ours/orig"] == "0.50×"  # 0.030 / 0.060
    assert table[512]["time ours/orig"] == "0.75×"  # 0.30 / 0.40
    assert table[512]["orig sample step (s)"] == "error"
    assert table[512]["sample time ours/orig"] == "—"
    assert table[1024]["orig train mem (GiB)"] == "OOM"
    assert table[1024]["time ours/orig"] == "orig OOM"
    assert table[1024]["sample time ours/orig"] == "0.50×"  # 0.25 / 0.50


def test_section_names_the_original_run_its_loop_and_its_errors(tmp_path):
    text = _report(tmp_path, str(_ours(tmp_path)), "--original", str(_original(tmp_path)))
    for needle in (
        "aqlaboratory/genie 42e4c996d6e0",
        "4,087,574 parameters",
        "2026-12-02T10:20:00+00:00",
        "python benchmarks/bench_original_genie.py --lengths 256,512,1024",
        "sampling loop at L=1000: 0.3440 s per step (median), about 344.0 s for all steps; one "
        "whole loop took 350.5 s",
        "Original Genie L=512 sample: error: child killed by SIGKILL",
    ):
        assert needle in text


@pytest.mark.parametrize(
    ("ours", "original", "message"),
    [
        ({"device": "NVIDIA H100 80GB HBM3"}, {}, "device"),
        ({"batch_size": 4}, {}, "batch size"),
        ({}, {"matmul_precision": "high"}, "matmul precision"),
        ({}, {"autocast": "bf16"}, "autocast"),
    ],
)
def test_runs_that_differ_in_device_batch_or_precision_are_not_compared(
    tmp_path, ours, original, message
):
    with pytest.raises(DataError, match=message):
        mine, theirs = _ours(tmp_path, **ours), _original(tmp_path, **original)
        _report(tmp_path, str(mine), "--original", str(theirs))


def test_bf16_runs_on_both_sides_are_compared(tmp_path):
    config = {"useMixedPrecision": True, "precision": "bf16-mixed", "matmulPrecision": "highest"}
    ours = _ours(tmp_path, resolved_config=config)
    text = _report(tmp_path, str(ours), "--original", str(_original(tmp_path, autocast="bf16")))
    assert _table(text)[256]["time ours/orig"] == "0.80×"


def test_our_own_results_are_not_taken_for_the_original(tmp_path):
    with pytest.raises(DataError, match="not written by benchmarks/bench_original_genie.py"):
        _report(tmp_path, str(_ours(tmp_path)), "--original", str(_ours(tmp_path, "x.json")))


def test_original_and_published_reference_exclude_each_other(tmp_path):
    reference = REPO / "benchmarks" / "reference_genie_h100.json"
    both = ["--original", str(_original(tmp_path)), "--reference", str(reference)]
    with pytest.raises(SystemExit):
        _report(tmp_path, str(_ours(tmp_path)), *both)


def test_plot_draws_the_original_beside_ours(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "side_by_side.png"
    ours, original = _ours(tmp_path), _original(tmp_path)
    text = _report(tmp_path, str(ours), "--original", str(original), "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(side_by_side.png)" in text
