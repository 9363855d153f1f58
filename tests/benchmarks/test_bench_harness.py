"""CPU tests of the benchmark scripts: input chains, the per-length child runner, the reports."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"


def _load(name: str):
    """Import a script of benchmarks/ as a module."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench_data = _load("bench_data")
bench_step = _load("bench_step")
report = _load("report")
quality_report = _load("quality_report")


def _spacing(x: np.ndarray) -> np.ndarray:
    """Consecutive Cα-Cα distances [L - 1] of a trace [L, 3]."""
    return np.linalg.norm(np.diff(x.astype(np.float64), axis=0), axis=-1)


# ---------------------------------------------------------------------------------------------
# Input chains
# ---------------------------------------------------------------------------------------------


def test_synthetic_trace_has_3_8_angstrom_steps_and_is_centred():
    x = bench_data.synthetic_trace(300, seed=7)
    assert x.shape == (300, 3) and x.dtype == np.float32
    np.testing.assert_allclose(_spacing(x), 3.8, atol=1e-4)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-4)
    # Protein-like: no residue folds back onto its i+2 neighbour, and the trace is not a line.
    assert np.linalg.norm(x[2:] - x[:-2], axis=-1).min() > 5.0
    assert np.linalg.norm(x[0] - x[-1]) < 299 * 3.8 * 0.9


def test_synthetic_trace_is_seeded():
    a, b = bench_data.synthetic_trace(64, seed=1), bench_data.synthetic_trace(64, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, bench_data.synthetic_trace(64, seed=2))


@pytest.mark.parametrize("length", [1, 2, 3, 4])
def test_synthetic_trace_handles_tiny_lengths(length):
    x = bench_data.synthetic_trace(length)
    assert x.shape == (length, 3) and np.isfinite(x).all()
    np.testing.assert_allclose(_spacing(x), 3.8, atol=1e-4)


def _dataset(tmp_path: Path, sizes=(30, 50, 20)) -> tuple[Path, list[np.ndarray]]:
    chains = [bench_data.synthetic_trace(n, seed=10 + i) + 40.0 * i for i, n in enumerate(sizes)]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    path = tmp_path / "chains.npz"
    np.savez(path, coords=np.concatenate(chains).astype(np.float32), offsets=offsets)
    return path, chains


def test_crop_from_a_chain_long_enough_is_a_window_of_it(tmp_path):
    path, chains = _dataset(tmp_path)
    loaded = bench_data.load_chains(path)
    window, joins = bench_data.crop_chain(loaded, 45, np.random.default_rng(0))
    assert joins == 0 and window.shape == (45, 3)
    np.testing.assert_allclose(window.mean(axis=0), 0.0, atol=1e-4)
    source = chains[1]  # the only chain with >= 45 residues
    starts = [
        s
        for s in range(len(source) - 44)
        if np.allclose(source[s : s + 45] - source[s : s + 45].mean(0), window, atol=1e-4)
    ]
    assert len(starts) == 1


def test_crop_longer_than_any_chain_joins_chains_at_3_8_angstrom(tmp_path):
    path, _ = _dataset(tmp_path)
    loaded = bench_data.load_chains(path)
    window, joins = bench_data.crop_chain(loaded, 200, np.random.default_rng(3))
    assert window.shape == (200, 3)
    assert joins >= 3  # 200 residues need at least four pieces of <= 50
    np.testing.assert_allclose(_spacing(window), 3.8, atol=1e-3)
    np.testing.assert_allclose(window.mean(axis=0), 0.0, atol=1e-3)


def test_make_batch_from_dataset_has_the_contract_shapes(tmp_path):
    path, _ = _dataset(tmp_path)
    batch, _ = bench_data.make_batch(64, batch_size=2, seed=0, data=path)
    assert batch["coords"].shape == (2, 64, 3) and str(batch["coords"].dtype) == "torch.float32"
    assert batch["mask"].shape == (2, 64) and bool((batch["mask"] == 1).all())
    assert batch["residue_index"][1].tolist() == list(range(64))
    assert batch["lengths"].tolist() == [64, 64]


def test_load_chains_rejects_bad_offsets(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, coords=np.zeros((10, 3), np.float32), offsets=np.array([0, 4, 9]))
    with pytest.raises(ValueError, match="offsets"):
        bench_data.load_chains(path)


# ---------------------------------------------------------------------------------------------
# Child runner
# ---------------------------------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_run_child_returns_the_printed_row():
    row = bench_step.run_child(
        _python('print("noise"); print("BENCH_RESULT " + \'{"status": "ok", "median_s": 0.5}\')'),
        timeout=60,
    )
    assert row == {"status": "ok", "median_s": 0.5}


def test_run_child_records_a_crash_as_an_error_row():
    row = bench_step.run_child(
        _python('import sys; print("boom", file=sys.stderr); sys.exit(3)'), timeout=60
    )
    assert row["status"].startswith("error:")
    assert "code 3" in row["status"] and "boom" in row["status"]


def test_run_child_records_a_killed_child():
    row = bench_step.run_child(_python("import os, signal; os.kill(os.getpid(), 9)"), timeout=60)
    assert row["status"].startswith("error:") and "SIGKILL" in row["status"]


def test_run_child_records_a_timeout():
    row = bench_step.run_child(_python("import time; time.sleep(30)"), timeout=1)
    assert row["status"] == "error: timed out after 1 s"


def test_bad_lengths_are_refused():
    with pytest.raises(SystemExit):
        bench_step.parse_args(["--config", "x.config", "--lengths", "0,16"])


# A stand-in for the project's genie package with the same API, so the whole parent/child path
# (train and sample modes, OOM, crash, missing config) runs without the real model. Its module is
# a plain nn.Module (the harness uses nothing Lightning adds), its config a flat dataclass read
# from `key value` lines.
FAKE_CONFIG_PARSER = """
from __future__ import annotations
import dataclasses
from pathlib import Path

class ConfigError(ValueError):
    pass

@dataclasses.dataclass
class GenieConfig:
    name: str = "fake"
    useMixedPrecision: bool = False
    precision: str = "32"
    maximumNumResidues: int = 256
    gradientClipVal: float = 1.0
    matmulPrecision: str = "high"
    oomAbove: int = 0
    crashAbove: int = 0

def _value(field, text):
    if field.type == "bool":
        return text.lower() == "true"
    return {"int": int, "float": float}.get(field.type, str)(text)

def parse_lines(cls, lines, source=None):
    return dict(l.split(None, 1) for l in lines if l.strip())

def parse_overrides(cls, overrides):
    return dict(o.split("=", 1) for o in overrides)

def load_config(path, overrides=(), cls=GenieConfig):
    lines = Path(path).read_text().splitlines()
    pairs = {**parse_lines(cls, lines), **parse_overrides(cls, overrides)}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return cls(**{k: _value(fields[k], v) for k, v in pairs.items()})
"""

FAKE_MODULE = """
from __future__ import annotations
import os
import torch

class Denoiser(torch.nn.Module):
    def __init__(self, oom_above, crash_above):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.GELU(),
                                       torch.nn.Linear(16, 3))
        self.oom_above, self.crash_above = oom_above, crash_above

    def forward(self, coords, timesteps, mask):
        n = coords.shape[1]
        if self.crash_above and n > self.crash_above:
            os._exit(7)
        if self.oom_above and n > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        t = timesteps.float()[:, None, None].expand(-1, n, 1) / 1000.0
        return self.net(torch.cat([coords, t], dim=-1)) * mask[..., None]

class GenieModule(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = Denoiser(config.oomAbove, config.crashAbove)

    def compute_loss(self, batch):
        noise = torch.randn_like(batch["coords"])
        t = torch.randint(1, 1001, batch["lengths"].shape, device=noise.device)
        pred = self.model(batch["coords"] + noise, t, batch["mask"])
        return ((pred - noise) ** 2).sum(-1).mean()

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched}}
"""


@pytest.fixture
def fake_repo(tmp_path):
    """A repository holding a copy of the step benchmark's scripts and a fake genie package (the
    real command-line helper and precision mapping, a stand-in config and model)."""
    (tmp_path / "benchmarks").mkdir()
    for name in ("__init__.py", "bench_step.py", "bench_measure.py", "bench_data.py"):
        shutil.copy(BENCH / name, tmp_path / "benchmarks" / name)
    for package in ("genie", "genie/config", "genie/training", "genie/utils"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for real in ("genie/config/cli.py", "genie/training/precision.py", "genie/utils/cli.py",
                 "genie/utils/errors.py", "genie/utils/paths.py"):  # fmt: skip
        shutil.copy(REPO / real, tmp_path / real)
    (tmp_path / "genie/config/parser.py").write_text(FAKE_CONFIG_PARSER)
    (tmp_path / "genie/config/__init__.py").write_text(
        "from genie.config.parser import ConfigError, GenieConfig, load_config\n"
    )
    (tmp_path / "genie/training/module.py").write_text(FAKE_MODULE)
    (tmp_path / "genie/utils/runtime.py").write_text(
        "def apply_runtime_settings(*, matmul_precision):\n    pass\n"
    )
    (tmp_path / "fake.config").write_text("name fake\nmaximumNumResidues 10\noomAbove 30\n")
    return tmp_path


def _bench(repo: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run the benchmark in ``repo``; returns the process and its results JSON (None: none)."""
    out = repo / "results.json"
    out.unlink(missing_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_step.py",
            "--device",
            "cpu",
            "--warmup",
            "1",
            "--repeat",
            "2",
            "--out",
            str(out),
            *args,
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, json.loads(out.read_text()) if out.exists() else None


def _row(doc: dict, length: int, mode: str) -> dict:
    (row,) = [r for r in doc["results"] if r["length"] == length and r["mode"] == mode]
    return row


def test_end_to_end_with_a_fake_model_records_ok_and_oom_rows(fake_repo):
    proc, doc = _bench(
        fake_repo, "--config", "fake.config", "--lengths", "8,12,40", "--set", "gradientClipVal=0.5"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert doc["device"] == "cpu" and doc["overrides"] == ["gradientClipVal=0.5"]
    assert doc["resolved_config"]["gradientClipVal"] == 0.5
    assert doc["parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    assert "--lengths 8,12,40" in doc["command"]
    for length in (8, 12):
        for mode in ("train", "sample"):
            row = _row(doc, length, mode)
            assert row["status"] == "ok", row
            assert len(row["times_s"]) == 2 and min(row["times_s"]) > 0
            assert row["median_s"] > 0 and row["samples_per_s"] == pytest.approx(
                1 / row["median_s"]
            )
            assert row["peak_mem_gib"] is None
    assert np.isfinite(_row(doc, 8, "train")["loss"])
    assert _row(doc, 12, "train")["overrides_added"] == ["maximumNumResidues=12"]
    assert "overrides_added" not in _row(doc, 8, "train")
    for mode in ("train", "sample"):
        assert _row(doc, 40, mode)["status"] == "OOM"
    assert "OOM" in proc.stdout.splitlines()[-2]


def test_end_to_end_records_a_crashing_child_and_refuses_a_missing_config(fake_repo):
    proc, doc = _bench(
        fake_repo,
        "--config",
        "fake.config",
        "--lengths",
        "8,16",
        "--modes",
        "train",
        "--set",
        "crashAbove=12",
    )
    assert proc.returncode == 1
    assert _row(doc, 8, "train")["status"] == "ok"
    crashed = _row(doc, 16, "train")
    assert crashed["status"].startswith("error: child exited with code 7")

    # checked once in the parent, before any child: exit 2, one line, no results file
    proc, doc = _bench(fake_repo, "--config", "missing.config", "--lengths", "8")
    assert proc.returncode == 2 and doc is None, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "bench_step.py: error: missing.config: No such file or directory"
    ]


def test_end_to_end_under_bf16_autocast(fake_repo):
    proc, doc = _bench(
        fake_repo,
        "--config",
        "fake.config",
        "--lengths",
        "8",
        "--modes",
        "train",
        "--set",
        "useMixedPrecision=true",
        "--set",
        "precision=bf16",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = doc["results"]
    assert row["status"] == "ok" and row["autocast"] == "bfloat16"


def _project_ready() -> bool:
    try:
        found = importlib.util.find_spec("genie.training.module") is not None
    except ModuleNotFoundError:
        found = False
    return found and (REPO / "configs" / "train_quickstart.config").exists()


@pytest.mark.skipif(not _project_ready(), reason="needs genie.training.module and the config")
@pytest.mark.slow
def test_end_to_end_with_the_project_model_on_cpu(tmp_path):
    out = tmp_path / "quickstart.json"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_step.py",
            "--device",
            "cpu",
            "--config",
            "configs/train_quickstart.config",
            "--lengths",
            "16,24",
            "--warmup",
            "1",
            "--repeat",
            "2",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["parameters"] > 0 and doc["resolved_config"] is not None
    assert {(r["length"], r["mode"]) for r in doc["results"]} == {
        (16, "train"),
        (16, "sample"),
        (24, "train"),
        (24, "sample"),
    }
    for row in doc["results"]:
        assert row["status"] == "ok", row
        assert row["median_s"] > 0 and all(t > 0 for t in row["times_s"])


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _results(tmp_path: Path, name: str = "run.json", **extra) -> Path:
    def ok(length, mode, mem, median):
        return {
            "length": length,
            "mode": mode,
            "status": "ok",
            "peak_mem_gib": mem,
            "median_s": median,
            "samples_per_s": 1 / median,
            "times_s": [median] * 3,
        }

    def oom(length, mode):
        return {
            "length": length,
            "mode": mode,
            "status": "OOM",
            "peak_mem_gib": None,
            "median_s": None,
            "samples_per_s": None,
            "times_s": [],
        }

    doc = {
        "device": "NVIDIA H100 80GB HBM3",
        "torch": "2.11.0",
        "cuda": "13.0",
        "date": "2025-01-02T03:04:05+00:00",
        "git_commit": "abc1234",
        "git_dirty": False,
        "config": "configs/train_baseline.config",
        "overrides": ["batchSize=1"],
        "resolved_config": {"useMixedPrecision": False, "precision": "32"},
        "parameters": 4087574,
        "batch_size": 1,
        "warmup": 3,
        "repeat": 10,
        "data": "synthetic",
        "command": "python benchmarks/bench_step.py --config configs/train_baseline.config",
        "results": [
            ok(128, "train", 1.234, 0.0987),
            ok(128, "sample", 0.31, 0.0421),
            ok(256, "train", 4.5, 0.2),
            ok(256, "sample", 0.9, 0.06),
            oom(1024, "train"),
            ok(1024, "sample", 7.25, 0.5),
        ],
    }
    doc.update(extra)
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _tables(markdown: str) -> list[list[dict[str, str]]]:
    """Every markdown table of a document as a list of {header: cell} rows."""
    tables, lines = [], markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| L |"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                rows.append(dict(zip(header, cells, strict=True)))
                i += 1
            tables.append(rows)
        i += 1
    return tables


def test_report_table_matches_the_results(tmp_path):
    doc = tmp_path / "docs" / "BENCHMARKS.md"
    report.main([str(_results(tmp_path)), "--title", "Baseline (x)", "--doc", str(doc)])
    text = doc.read_text()
    assert text.startswith("# Benchmarks") and "max_memory_allocated" in text
    (table,) = _tables(text)
    by_length = {int(r["L"]): r for r in table}
    assert sorted(by_length) == [128, 256, 1024]
    assert float(by_length[128]["train mem (GiB)"]) == pytest.approx(1.234, abs=0.005)
    assert float(by_length[128]["train step (s)"]) == pytest.approx(0.0987, rel=1e-3)
    assert float(by_length[128]["train samples/s"]) == pytest.approx(1 / 0.0987, rel=1e-2)
    assert float(by_length[256]["sample mem (GiB)"]) == pytest.approx(0.9)
    assert float(by_length[256]["sample step (s)"]) == pytest.approx(0.06)
    assert by_length[1024]["train mem (GiB)"] == "OOM"
    assert by_length[1024]["train step (s)"] == "OOM"
    assert float(by_length[1024]["sample step (s)"]) == pytest.approx(0.5)
    for needle in (
        "NVIDIA H100 80GB HBM3",
        "`abc1234`",
        "4,087,574",
        "`batchSize=1`",
        "python benchmarks/bench_step.py --config configs/train_baseline.config",
    ):
        assert needle in text


def test_report_rerun_replaces_its_section(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    first = _results(tmp_path, "a.json")
    report.main([str(first), "--title", "Baseline (x)", "--doc", str(doc)])
    report.main([str(_results(tmp_path, "b.json")), "--title", "Stage 1", "--doc", str(doc)])
    changed = _results(tmp_path, "c.json", git_commit="def5678")
    report.main([str(changed), "--title", "Baseline (x)", "--doc", str(doc)])
    text = doc.read_text()
    assert text.count("## Baseline (x)") == 1 and text.count("## Stage 1") == 1
    assert text.count("# Benchmarks\n") == 1
    assert "`def5678`" in text and "`abc1234`" in text  # new baseline, untouched stage 1
    assert text.index("## Baseline (x)") < text.index("## Stage 1")  # replaced in place
    assert len(_tables(text)) == 2


def test_report_compares_with_the_reference_series_of_the_run_precision(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    reference = BENCH / "reference_genie_h100.json"
    report.main(
        [
            str(_results(tmp_path)),
            "--title",
            "fp32",
            "--doc",
            str(doc),
            "--reference",
            str(reference),
        ]
    )
    (table,) = _tables(doc.read_text())
    row = {int(r["L"]): r for r in table}
    assert float(row[128]["ref train mem (GiB)"]) == pytest.approx(1.4)
    assert float(row[128]["ref train step (s)"]) == pytest.approx(0.106)
    assert row[128]["mem ours/ref"] == f"{1.234 / 1.4:.2f}×"
    assert row[256]["time ours/ref"] == f"{0.2 / 0.121:.2f}×"
    assert row[1024]["ref train mem (GiB)"] == "OOM" and row[1024]["mem ours/ref"] == "—"
    assert float(row[128]["ref sample step (s)"]) == pytest.approx(0.051)
    assert row[128]["sample time ours/ref"] == f"{0.0421 / 0.051:.2f}×"

    bf16 = _results(
        tmp_path, "bf16.json", resolved_config={"useMixedPrecision": True, "precision": "bf16"}
    )
    report.main([str(bf16), "--title", "bf16", "--doc", str(doc), "--reference", str(reference)])
    bf16_table = _tables(doc.read_text())[1]
    row = {int(r["L"]): r for r in bf16_table}
    assert float(row[1024]["ref train mem (GiB)"]) == pytest.approx(63.1)
    assert row[1024]["mem ours/ref"] == "OOM"
    assert row[128]["ref train mem (GiB)"] == "—"


def test_report_writes_and_links_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    doc = tmp_path / "docs" / "BENCHMARKS.md"
    png = tmp_path / "docs" / "benchmarks" / "baseline.png"
    report.main(
        [
            str(_results(tmp_path)),
            "--title",
            "Baseline",
            "--doc",
            str(doc),
            "--reference",
            str(BENCH / "reference_genie_h100.json"),
            "--plot",
            str(png),
        ]
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](benchmarks/baseline.png)" in doc.read_text()


def test_reference_file_holds_the_published_figures():
    ref = json.loads((BENCH / "reference_genie_h100.json").read_text())
    assert ref["reference"] is True and ref["parameters"] == 4087574
    assert "DESIGN.md §8" in ref["source"]
    fp32 = {r["length"]: r for r in ref["series"]["train_fp32"]["results"]}
    assert (fp32[512]["peak_mem_gib"], fp32[512]["median_s"]) == (20.8, 0.293)
    assert fp32[1024]["status"] == "OOM"


def test_run_parts_continue_from_the_previous_parts_last_step():
    """quality_report chains a training run made of parts (each restarts its step counter)."""
    first = {"train": [(100, 1.0), (200, 0.9)], "val": [(200, 0.95)]}
    second = {"train": [(50, 0.8), (150, 0.7)], "val": [(40, 0.85), (150, 0.75)]}
    chained, joins = quality_report.chain_curves([first, second])
    assert chained == {
        "train": [(100, 1.0), (200, 0.9), (250, 0.8), (350, 0.7)],
        "val": [(200, 0.95), (240, 0.85), (350, 0.75)],
    }
    assert joins == [200]
    assert quality_report.chain_curves([first]) == (first, [])
