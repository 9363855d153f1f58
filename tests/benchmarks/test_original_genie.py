"""The original Genie's export and its benchmark harness (``scripts/get_original_genie.sh``,
``benchmarks/original_genie.py``, ``benchmarks/bench_original_genie.py``).

The export script is tested on a small git repository made here. The tests that run their code
need ``.original_genie/`` (made by the script from aqlaboratory/genie; never committed) and are
skipped without it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from benchmarks import bench_original_genie, original_genie
from benchmarks.bench_data import make_batch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "get_original_genie.sh"
EXPORT = REPO / ".original_genie"
needs_export = pytest.mark.skipif(
    not (EXPORT / "source.json").is_file(),
    reason=".original_genie/ is absent: scripts/get_original_genie.sh exports the original Genie",
)
PUBLISHED_PARAMETERS = 4_087_574  # DESIGN.md §8: the original Genie's default architecture

# ---------------------------------------------------------------------------------------------
# The export script, on a stand-in clone
# ---------------------------------------------------------------------------------------------

_THEIR_DIFFUSION = """\
import torch
from genie.diffusion.diffusion import Diffusion
from genie.utils.loss import rmsd
from genie import config
import genie.model.model as model_module
from genies import unrelated


class Genie(Diffusion):
\tdef f(self):
\t\tfrom genie.utils.loss import rmsd as inner
\t\treturn "from genie.model import in a string"
"""

_EXPORTED_DIFFUSION = """\
import torch
from genie_original.diffusion.diffusion import Diffusion
from genie_original.utils.loss import rmsd
from genie_original import config
import genie_original.model.model as model_module
from genies import unrelated


class Genie(Diffusion):
\tdef f(self):
\t\tfrom genie_original.utils.loss import rmsd as inner
\t\treturn "from genie.model import in a string"
"""


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def their_clone(tmp_path: Path) -> Path:
    """A git repository laid out like aqlaboratory/genie, with one commit."""
    repo = tmp_path / "genie_clone"
    files = {
        "LICENSE.md": "Apache License 2.0\n",
        "genie/__init__.py": "",
        "genie/config.py": "import os\n",
        "genie/train.py": "import wandb\n",
        "genie/data/dataset.py": "from genie.utils.data_io import load_coord\n",
        "genie/diffusion/__init__.py": "",
        "genie/diffusion/genie.py": _THEIR_DIFFUSION,
        "genie/model/__init__.py": "",
        "genie/model/model.py": "from genie.model.structure_net import StructureNet\n",
        "genie/model/modules/primitives.py": "from scipy.stats import truncnorm\n",
        "genie/model/notes.txt": "not Python\n",
        "genie/utils/data_io.py": "import numpy as np\n",
        "weights/scope_l_128/configuration": "name scope_l_128_p_5\n",
        "weights/scope_l_256/configuration": "name scope_l_256_p_5\n",
    }
    for name in ("__init__", "affine_utils", "encoding", "geo_utils", "loss", "tensor_utils"):
        files[f"genie/utils/{name}.py"] = "import torch\n"
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "genie")
    return repo


def _export(source: Path, dest: Path, *commit: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "ORIGINAL_GENIE_DIR": str(dest)}
    return subprocess.run(
        ["bash", str(SCRIPT), str(source), *commit], capture_output=True, text=True, env=env
    )


def test_export_renames_their_package_and_keeps_only_what_the_model_imports(their_clone, tmp_path):
    dest = tmp_path / "export"
    commit = _git(their_clone, "rev-parse", "HEAD")
    proc = _export(their_clone, dest, "HEAD")
    assert proc.returncode == 0, proc.stderr
    package = dest / "genie_original"
    assert (package / "diffusion" / "genie.py").read_text() == _EXPORTED_DIFFUSION
    assert (package / "model" / "model.py").read_text() == (
        "from genie_original.model.structure_net import StructureNet\n"
    )
    assert not (package / "train.py").exists() and not (package / "data").exists()
    assert not (package / "utils" / "data_io.py").exists()
    assert not (package / "model" / "notes.txt").exists()
    assert (dest / "configs" / "scope_l_256").read_text() == "name scope_l_256_p_5\n"
    assert (dest / "LICENSE.md").is_file()
    info = json.loads((dest / "source.json").read_text())
    assert info["commit"] == commit and info["package"] == "genie_original"
    assert info["python_files"] == 13


def test_export_refuses_an_unknown_commit_and_a_folder_it_did_not_make(their_clone, tmp_path):
    proc = _export(their_clone, tmp_path / "export", "0" * 40)
    assert proc.returncode == 2 and "is not in" in proc.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    proc = _export(their_clone, foreign, "HEAD")
    assert proc.returncode == 2 and "not an earlier export" in proc.stderr
    assert (foreign / "keep.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------------------
# The harness without their code
# ---------------------------------------------------------------------------------------------


def test_a_missing_export_is_a_user_error_that_names_the_script(tmp_path, capsys):
    status = bench_original_genie.main(
        ["--lengths", "8", "--original-dir", str(tmp_path), "--out", str(tmp_path / "o.json")]
    )
    assert status == 2
    assert "scripts/get_original_genie.sh" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_reverse_steps_go_down_from_the_last_timestep_and_chain_their_frames():
    calls = []

    def p(frames, s, mask, noise_scale):
        calls.append((frames, s.tolist(), noise_scale))
        return f"after t={int(s[0])}"

    module = SimpleNamespace(
        config=SimpleNamespace(diffusion={"n_timestep": 3}),
        device=torch.device("cpu"),
        sample_frames=lambda mask: "x_T",
        p=p,
    )
    step = original_genie._reverse_step(module, torch.ones(2, 5), None, 0.6)
    for _ in range(4):
        step()
    assert calls == [
        ("x_T", [2, 2], 0.6),
        ("after t=2", [1, 1], 0.6),
        ("after t=1", [0, 0], 0.6),
        ("after t=0", [2, 2], 0.6),  # wraps around after t = 0
    ]


# ---------------------------------------------------------------------------------------------
# Their code (needs .original_genie/)
# ---------------------------------------------------------------------------------------------


@needs_export
def test_their_default_model_has_the_published_size():
    module = original_genie.build_module(EXPORT)
    model = module.config.model
    assert (model["c_s"], model["c_p"]) == (128, 128)
    assert (model["n_pair_transform_layer"], model["n_structure_layer"]) == (5, 5)
    assert module.config.diffusion == {"n_timestep": 1000, "schedule": "cosine"}
    assert sum(p.numel() for p in module.parameters()) == PUBLISHED_PARAMETERS


@needs_export
def test_their_transform_reads_back_the_trace_we_give_it():
    module = original_genie.build_module(EXPORT)
    batch, _ = original_genie._their_batch(12, 2, 3, None, torch.device("cpu"))
    frames, mask = module.transform(batch)
    ours, _ = make_batch(12, 2, 3)
    expected = ours["coords"] - ours["coords"].mean(dim=1, keepdim=True)
    torch.testing.assert_close(frames.trans, expected)
    torch.testing.assert_close(mask, ours["mask"])


@needs_export
def test_their_train_step_is_one_adam_step_at_their_learning_rate():
    torch.manual_seed(0)
    module = original_genie.build_module(EXPORT)
    module.setup_schedule()
    module.setup = True
    batch, _ = original_genie._their_batch(10, 1, 0, None, torch.device("cpu"))
    before = [p.detach().clone() for p in module.parameters()]
    step, last_loss = original_genie._train_step(module, batch, None, torch.device("cpu"))
    step()
    (loss,) = last_loss
    assert math.isfinite(float(loss)) and float(loss) > 0
    # Adam's first step moves each parameter by -lr * g / (|g| + eps) = -lr * sign(g) where
    # |g| >> eps; many of their layers start at zero (final_init_), so many gradients are 0.
    lr = module.config.optimization["lr"]
    checked = 0
    for old, p in zip(before, module.parameters(), strict=True):
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        big = grad.abs() > 1e-5
        torch.testing.assert_close(p - old, torch.where(big, -lr * grad.sign(), p - old))
        torch.testing.assert_close(p[grad == 0], old[grad == 0])
        checked += int(big.sum())
    assert checked > 10_000


def _spec(**changes) -> dict:
    spec = {
        "directory": str(EXPORT),
        "config_name": "scope_l_256",
        "length": 8,
        "mode": "sample",
        "batch_size": 1,
        "warmup": 0,
        "repeat": 1,
        "device": "cpu",
        "data": None,
        "seed": 0,
        "matmul_precision": "highest",
        "autocast": "none",
        "deterministic": False,
        "noise_scale": 0.6,
        "full_loop": False,
    }
    return spec | changes


@needs_export
def test_running_out_of_memory_is_a_result(monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (fake)")

    monkeypatch.setattr(original_genie, "time_steps", out_of_memory)
    row = original_genie.measure(_spec())
    assert row["status"] == "OOM" and row["median_s"] is None
    assert row["parameters"] == PUBLISHED_PARAMETERS


@needs_export
@pytest.mark.slow
def test_end_to_end_on_cpu_and_into_the_report(tmp_path):
    out = tmp_path / "original.json"
    command = [
        sys.executable,
        "benchmarks/bench_original_genie.py",
        "--device",
        "cpu",
        "--lengths",
        "12",
        "--modes",
        "train,sample,reverse",
        "--warmup",
        "1",
        "--repeat",
        "2",
        "--out",
        str(out),
    ]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["parameters"] == PUBLISHED_PARAMETERS and doc["device"] == "cpu"
    assert doc["original"]["commit"] == json.loads((EXPORT / "source.json").read_text())["commit"]
    assert (doc["matmul_precision"], doc["autocast"], doc["batch_size"]) == ("highest", None, 1)
    rows = {row["mode"]: row for row in doc["results"]}
    assert sorted(rows) == ["reverse", "sample", "train"]
    for row in rows.values():
        assert row["status"] == "ok" and row["length"] == 12, row
        assert len(row["times_s"]) == 2 and row["median_s"] > 0
    assert math.isfinite(rows["train"]["loss"])
    reverse = rows["reverse"]
    assert reverse["estimated_loop_s"] == pytest.approx(1000 * reverse["median_s"])
    assert reverse["samples_per_s"] == pytest.approx(1 / reverse["estimated_loop_s"])

    # Our rows of the same (pretend) run, set beside theirs by the report.
    ours = {
        key: doc[key] for key in ("device", "date", "torch", "cuda", "batch_size", "warmup")
    } | {
        "repeat": 2,
        "git_commit": "abc1234",
        "config": "configs/train_baseline.config",
        "resolved_config": {"useMixedPrecision": False, "matmulPrecision": "highest"},
        "results": [
            {"length": 12, "mode": mode, "status": "ok", "peak_mem_gib": None, "median_s": 0.5}
            for mode in ("train", "sample")
        ],
    }
    (tmp_path / "ours.json").write_text(json.dumps(ours))
    from benchmarks import report

    md = tmp_path / "BENCHMARKS.md"
    args = ["--original", str(out), "--title", "x", "--doc", str(md)]
    report.main([str(tmp_path / "ours.json"), *args])
    line = next(x for x in md.read_text().splitlines() if x.startswith("| 12 |"))
    assert f"{0.5 / rows['train']['median_s']:.2f}×" in line
    assert f"{0.5 / rows['sample']['median_s']:.2f}×" in line
