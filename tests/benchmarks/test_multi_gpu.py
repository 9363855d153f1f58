"""benchmarks/multi_gpu.py: the derived figures against hand-computed ones, the merge of runs, and
one sampling launch of 1 and 2 CPU processes (gloo) whose sharded backbone equals the unsharded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.multi_gpu import _error_row, derive, merge_rows, table

REPO = Path(__file__).resolve().parents[2]


def _row(part, n, length, compression=None, **figures):
    return {"part": part, "processes": n, "length": length, "compression": compression,
            "status": "ok", **figures}  # fmt: skip


def test_efficiency_and_speedup_against_the_one_process_row():
    rows = derive([
        _row("scaling", 1, 1024, samples_per_s=10.0),
        _row("scaling", 4, 1024, samples_per_s=36.0),  # 36 / (4 × 10) = 90 %
        _row("scaling", 4, 1024, 8.0, samples_per_s=38.0),  # no one-GPU row with PowerSGD 8
        _row("sharded", 1, 65536, median_step_s=16.0),
        _row("sharded", 2, 65536, median_step_s=10.0),  # 1.6×
        _row("sampling", 4, 16384, s_per_step=0.5),  # no reference
        {**_row("sharded", 4, 65536), "status": "OOM"},
    ])  # fmt: skip
    assert rows[1]["efficiency"] == pytest.approx(0.9)
    assert rows[0]["efficiency"] == pytest.approx(1.0)
    assert rows[2]["efficiency"] is None
    assert rows[4]["speedup"] == pytest.approx(1.6)
    assert rows[5]["speedup"] is None and rows[6]["speedup"] is None
    text = table(rows)
    assert "| scaling | 4 | 1,024 | — |" in text and "90 %" in text and "1.60×" in text


def test_a_rerun_replaces_its_rows_and_keeps_the_others():
    old = [_row("sharded", 1, 4096, median_step_s=2.0), _row("sharded", 2, 4096, median_step_s=1.5)]
    new = [_row("sharded", 2, 4096, median_step_s=1.2), _row("scaling", 2, 1024, samples_per_s=3.0)]
    merged = merge_rows(old, new)
    assert [(r["part"], r["processes"], r.get("median_step_s")) for r in merged] == [
        ("scaling", 2, None), ("sharded", 1, 2.0), ("sharded", 2, 1.2)]  # fmt: skip


def test_a_failed_launch_keeps_why_not_only_torchruns_summary():
    stderr = "\n".join(["[rank1]: terminate called after throwing 'gloo::IoException'",
                        "[rank1]:   what():  Connection closed by peer", *["=" * 20] * 12,
                        "traceback : Signal 6 (SIGABRT) received by PID 7"])  # fmt: skip
    row = _error_row({"part": "sampling"}, 1, stderr)
    assert row["status"] == "error: exit 1"
    assert [line.split("]:")[1].split()[0] for line in row["stderr_causes"]] == [
        "terminate",
        "what():",
    ]
    assert row["stderr_tail"][-1].startswith("traceback") and len(row["stderr_tail"]) == 8


def test_sharded_sampling_on_two_cpu_processes_equals_one(tmp_path):
    out = tmp_path / "mg.json"
    tiny = ["singleFeatureDimension=16", "pairFeatureDimension=8", "structureEncoderDepth=1",
            "numPairTransformLayers=1", "numTriangleLayers=1", "kNeighbors=8"]  # fmt: skip
    command = [sys.executable, "benchmarks/multi_gpu.py", "--device", "cpu", "--gpus", "1,2",
               "--parts", "sampling", "--sample-lengths", "37", "--sample-steps", "3",
               "--out", str(out), "--work", str(tmp_path / "work")]  # fmt: skip
    for item in tiny:
        command += ["--set", item]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["processes"], r["status"]) for r in rows] == [(1, "ok"), (2, "ok")]
    assert rows[1]["identical"] is True and rows[1]["max_abs_diff_A"] == 0.0
    assert rows[1]["model_calls"] == 3 and rows[1]["speedup"] > 0
    assert "| sampling | 2 | 37 |" in done.stdout and "identical" in done.stdout
