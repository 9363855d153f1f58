"""CPU tests of the triangle-layer benchmark and of the one command of the fused-kernel runs:
every (length, layer, precision, kernel) becomes a row, and what cannot run is one line, exit 2."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("_bench_triangle", REPO / "benchmarks" /
                                              "bench_triangle.py")  # fmt: skip
bench_triangle = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench_triangle
spec.loader.exec_module(bench_triangle)


def test_a_cpu_smoke_run_writes_every_row(tmp_path):
    out = tmp_path / "triangle.json"
    argv = ["--device", "cpu", "--lengths", "6,9", "--kernels", "reference", "--warmup", "0",
            "--repeat", "2", "--git-commit", "abc1234", "--out", str(out)]  # fmt: skip
    assert bench_triangle.run_command(bench_triangle.main, argv) == 0
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["git_commit"] == "abc1234" and doc["sizes"]["c_p"] == 128
    cases = [(r["length"], r["layer"], r["precision"], r["kernel"]) for r in doc["results"]]
    layers, precisions = ("multiplication", "attention"), ("fp32", "bf16")
    expected = [(n, layer, p, "reference") for n in (6, 9) for layer in layers for p in precisions]
    assert cases == expected
    for row in doc["results"]:
        assert row["status"] == "ok" and len(row["times_s"]) == 2 and row["peak_mem_gib"] is None
        assert row["input_gib"] == row["length"] ** 2 * 128 * 4 / 2**30


def test_what_cannot_run_is_one_line_and_exit_2(tmp_path, capsys):
    out = str(tmp_path / "t.json")
    for argv, message in (
        (["--device", "cpu", "--kernels", "cuequivariance"], "--kernels cuequivariance: they run"),
        (["--device", "cpu", "--layers", "transition"], "--layers takes a comma-separated subset"),
        (["--device", "cpu", "--lengths", "256,x"], "--lengths takes positive integers"),
    ):
        assert bench_triangle.run_command(bench_triangle.main, [*argv, "--out", out]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_the_one_command_refuses_missing_arguments(tmp_path):
    script = REPO / "benchmarks" / "run_cueq.sh"
    for args in ([], ["--out", str(tmp_path)], ["--target", str(tmp_path / "absent"), "--out",
                                                 str(tmp_path)]):  # fmt: skip
        result = subprocess.run(["bash", str(script), *args], capture_output=True, text=True)
        assert result.returncode == 2 and "run_cueq.sh: error: give --target DIR" in result.stderr


def test_the_compiled_runs_refuse_an_unknown_part(tmp_path):
    script = REPO / "benchmarks" / "run_compiled.sh"
    result = subprocess.run(["bash", str(script), str(tmp_path / "out"), "abc1234", "bogus"],
                            capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert result.returncode == 2
    parts = "tests, train, long, compiletime, sample, sample16k, stages, genie"
    assert f"unknown part bogus ({parts})" in result.stderr
