"""Every entry point has one error path (genie/utils/cli.py): a user mistake is exit 2 and one
line on stderr without a traceback; a bug (simulated: a function made to raise RuntimeError) is
exit 1, its traceback and one line asking to report it.

Scripts run in this process as ``__main__`` (runpy, so their ``if __name__ == "__main__"`` block
is what is tested), ``genie-eval`` and ``python -m genie.data.preprocess`` through their ``main``.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
from helpers import REPO

from genie.data import preprocess
from genie.eval import cli as eval_cli
from genie.utils.cli import REPORT_HINT

MISSING = "missing.config"
SCRIPTS = {
    "train_long": "train/train_long.py",
    "train_ultralong": "train/train_ultralong.py",
    "sample_long": "sample/sample_long.py",
    "sample_ultralong": "sample/sample_ultralong.py",
    "bench_step": "benchmarks/bench_step.py",
    "report": "benchmarks/report.py",
    "profile_step": "benchmarks/profile_step.py",
    "stability": "benchmarks/stability.py",
    "untrained_checkpoint": "benchmarks/untrained_checkpoint.py",
    "val_loss": "benchmarks/val_loss.py",
    "quality_report": "benchmarks/quality_report.py",
    "bench_ipa_layer": "benchmarks/bench_ipa_layer.py",
    "plot_ipa_layer": "benchmarks/plot_ipa_layer.py",
    "bench_distributed": "benchmarks/bench_distributed.py",
}
FUNCTIONS = {"genie-eval": eval_cli.main, "preprocess": preprocess.main}
PROGS = {"genie-eval": "genie-eval", "preprocess": "python -m genie.data.preprocess"}


def run_entry_point(name: str, args: list[str], monkeypatch) -> int:
    """The exit status of entry point ``name`` run with ``args``."""
    if name in FUNCTIONS:
        return FUNCTIONS[name](args)
    script = REPO / SCRIPTS[name]
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts prepend the checkout
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(script), run_name="__main__")
    return exit_info.value.code


def prog(name: str) -> str:
    return PROGS.get(name) or Path(SCRIPTS[name]).name


# name -> (arguments with a user mistake, a piece of the message); {tmp}: the test's folder
USER_MISTAKES = {
    "train_long": (["--config", MISSING], f"config file not found: {MISSING}"),
    "train_ultralong": (["--config", MISSING], f"config file not found: {MISSING}"),
    "sample_long": (["--config", MISSING], f"config file not found: {MISSING}"),
    "sample_ultralong": (["--config", MISSING], f"config file not found: {MISSING}"),
    "genie-eval": (["{tmp}", "--out", "{tmp}/file"], "--out {tmp}/file is a file, not a folder"),
    "preprocess": (["{tmp}/nowhere", "--cache-dir", "{tmp}/cache"], "no PDB/mmCIF files"),
    "bench_step": (["--config", MISSING, "--lengths", "8", "--out", "{tmp}/o.json"],
                   f"config file not found: {MISSING}"),
    "report": (["{tmp}/r.json", "--title", "t", "--doc", "{tmp}/d.md"],
               "{tmp}/r.json: No such file or directory"),
    "profile_step": (["--config", MISSING, "--length", "8"], f"config file not found: {MISSING}"),
    "stability": (["--config", MISSING, "--data", "d.npz", "--out", "{tmp}/o.json"],
                  f"config file not found: {MISSING}"),
    "untrained_checkpoint": (["--config", MISSING, "{tmp}/o.ckpt"],
                             f"config file not found: {MISSING}"),
    "val_loss": (["{tmp}/none.ckpt"], "checkpoint not found: {tmp}/none.ckpt"),
    "quality_report": (["--eval", "no-label"], "--eval takes LABEL=DIR, got 'no-label'"),
    "bench_ipa_layer": (["--lengths", "8,x", "--out", "{tmp}/o.json"],
                        "--lengths takes integers like 512,1024, got '8,x'"),
    "plot_ipa_layer": (["{tmp}/r.json", "--plot", "{tmp}/p.png"],
                       "{tmp}/r.json: No such file or directory"),
    "bench_distributed": (["--config", MISSING, "--length", "8"],
                          f"config file not found: {MISSING}"),
}  # fmt: skip

TRAIN, SAMPLE = "configs/train_quickstart.config", "configs/sample_quickstart.config"
# name -> (the function made to raise, as module:attribute; arguments that reach it)
BUGS = {
    "train_long": ("genie.training.run:train", ["--config", TRAIN]),
    "train_ultralong": ("genie.training.run:train", ["--config", TRAIN]),
    "sample_long": ("genie.sampling.run:sample", ["--config", SAMPLE]),
    "sample_ultralong": ("genie.sampling.run:sample", ["--config", SAMPLE]),
    "genie-eval": ("genie.eval.cli:run", ["{tmp}", "--out", "{tmp}/out"]),
    "preprocess": ("genie.data.preprocess:build_dataset", ["{tmp}", "--cache-dir", "{tmp}/c"]),
    "bench_step": ("genie.config:load_config", ["--config", TRAIN, "--lengths", "8",
                                                "--out", "{tmp}/o.json"]),
    "report": ("genie.utils.paths:ensure_writable_file", ["r.json", "--title", "t"]),
    "profile_step": ("genie.config:load_config", ["--config", TRAIN, "--length", "8"]),
    "stability": ("genie.config:load_config", ["--config", TRAIN, "--data", "d.npz",
                                               "--out", "{tmp}/o.json"]),
    "untrained_checkpoint": ("genie.config:load_config", ["--config", TRAIN, "{tmp}/o.ckpt"]),
    "val_loss": ("genie.training.module:load_module", ["x.ckpt"]),
    "quality_report": ("genie.utils.paths:ensure_writable_file", ["--json", "{tmp}/q.json"]),
    "bench_ipa_layer": ("genie.utils.paths:ensure_writable_file",
                        ["--lengths", "8", "--out", "{tmp}/o.json"]),
    "plot_ipa_layer": ("genie.utils.paths:ensure_writable_file", ["r.json", "--plot", "p.png"]),
    "bench_distributed": ("genie.config.cli:load_with_defaults", ["--config", TRAIN,
                                                                  "--length", "8"]),
}  # fmt: skip


def test_every_entry_point_is_covered():
    assert set(USER_MISTAKES) == set(BUGS) == set(SCRIPTS) | set(FUNCTIONS)


@pytest.mark.parametrize("name", USER_MISTAKES)
def test_a_user_mistake_is_exit_2_and_one_line(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    args, message = USER_MISTAKES[name]
    args = [a.format(tmp=tmp_path) for a in args]
    assert run_entry_point(name, args, monkeypatch) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"{prog(name)}: error: ") and message.format(tmp=tmp_path) in line


@pytest.mark.parametrize("name", BUGS)
def test_a_bug_prints_its_traceback_and_asks_to_report_it(name, tmp_path, monkeypatch, capsys):
    target, args = BUGS[name]
    module, attribute = target.split(":")

    def bug(*_args, **_kwargs):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(f"{module}.{attribute}", bug)
    monkeypatch.chdir(REPO)  # the configs/ paths
    args = [a.format(tmp=tmp_path) for a in args]
    assert run_entry_point(name, args, monkeypatch) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: simulated bug" in err
    assert err.strip().splitlines()[-1] == f"{prog(name)}: internal error: {REPORT_HINT}"
