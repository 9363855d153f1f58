"""The sampling command when things go wrong: an output folder that cannot be written, a chain
that diverges (never written as a structure file), a run killed part-way (the re-run finishes
without rewriting finished files and leaves no temporary file)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import REPO, write_tiny_checkpoint

from genie.checkpoint import read_checkpoint
from genie.data.atomic import remove_stale_temporaries, temporary_sibling
from genie.sampling import run as sampling_run
from genie.sampling.chains import sample_seed
from genie.sampling.provenance import read_manifest
from genie.sampling.run import main

CONFIG = REPO / "configs" / "sample_quickstart.config"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", timesteps=10)


def arguments(checkpoint, out, *overrides: str) -> list[str]:
    given = [f"checkpoint={checkpoint}", f"outputDirectory={out}", "name=t", "device=cpu",
             "sampleLengths=5,8,11", "samplesPerLength=1", "batchSize=3", *overrides]  # fmt: skip
    return ["--config", str(CONFIG), *(a for o in given for a in ("--set", o))]


def test_an_output_folder_that_is_a_file_is_refused_before_the_model_loads(
    checkpoint, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(sampling_run, "read_checkpoint", lambda *a, **k: 1 / 0)  # not reached
    (tmp_path / "file").write_text("x")
    for out, message in (
        (tmp_path / "file", f"outputDirectory {tmp_path / 'file'} is a file, not a folder"),
        (tmp_path / "file" / "s", f"outputDirectory {tmp_path / 'file' / 's'} cannot be written"),
    ):
        assert main(arguments(checkpoint, out)) == 2
        err = capsys.readouterr().err
        (line,) = err.strip().splitlines()
        assert message in line and "Traceback" not in err


@pytest.fixture
def diverging_l8(monkeypatch):
    """The checkpoint's model, but ε̂ is NaN for every chain of 8 residues."""

    def reading(path, **kwargs):
        trained = read_checkpoint(path, **kwargs)
        forward = trained.model.forward

        def poisoned(x, t, mask, **kw):
            eps = forward(x, t, mask, **kw)
            return torch.where((mask.sum(-1) == 8)[:, None, None], torch.nan, eps)

        trained.model.forward = poisoned
        return trained

    monkeypatch.setattr(sampling_run, "read_checkpoint", reading)


def test_a_diverged_chain_is_reported_and_not_written(
    checkpoint, tmp_path, capsys, caplog, diverging_l8
):
    options = ["saveTrajectory=True", "trajectoryEvery=5", "saveFragments=True",
               "fragmentLength=4"]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="genie.sample"):
        assert main(arguments(checkpoint, tmp_path, *options)) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "wrote 2 samples, 1 diverged (not written)" in summary
    seed = sample_seed(0, 8, 0)
    assert (
        f"t_L8_0000 diverged (length 8, seed {seed}): 8 of 8 residues have NaN or infinite "
        "coordinates; not written" in caplog.text
    )
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "t_L5_0000.pdb" in names and "t_L11_0000.pdb" in names
    assert not [n for n in names if n.startswith("t_L8")]  # no structure, fragment, trajectory

    # not counted as done: the re-run samples it again; on request it is kept, clearly marked
    assert main(arguments(checkpoint, tmp_path, "saveDivergedSamples=True")) == 0
    out = capsys.readouterr().out
    assert "3 samples planned, 2 already written" in out
    assert "wrote 0 samples, 1 diverged (not written)" in out
    assert sorted(p.name for p in tmp_path.glob("t_L8*")) == ["t_L8_0000.diverged.npz"]
    kept = np.load(tmp_path / "t_L8_0000.diverged.npz")
    assert kept["coords"].shape == (8, 3) and np.isnan(kept["coords"]).all()
    assert "NaN" in str(kept["reason"])


def test_a_killed_run_is_finished_by_the_next_without_rewriting_files(checkpoint, tmp_path):
    out, count = tmp_path / "out", 12
    args = arguments(checkpoint, out, "sampleLengths=5", f"samplesPerLength={count}", "batchSize=1")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, str(REPO / "sample" / "sample_long.py"), *args]
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen(command, env=env, **quiet)
    try:
        deadline = time.monotonic() + 240
        while proc.poll() is None and not list(out.glob("*.pdb")):
            assert time.monotonic() < deadline, "the first sample never appeared"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.pdb")}
    assert 1 <= len(finished) < count
    # what a kill in the middle of writing leaves: the dead writer's temporary file
    (out / f".t_L5_{count - 1:04d}.pdb.{proc.pid}.0123abcd.tmp").write_text("ATOM  partial")

    assert main(args) == 0
    expected = sorted(f"t_L5_{i:04d}.pdb" for i in range(count))
    assert sorted(p.name for p in out.iterdir()) == ["provenance.json", *expected]  # nothing
    # partial or temporary left; every sample has its record
    assert sorted(read_manifest(out)[0]) == [name.removesuffix(".pdb") for name in expected]
    assert {n: (out / n).stat().st_mtime_ns for n in finished} == finished  # not rewritten
    assert all((out / name).stat().st_size > 0 for name in expected)


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    live = temporary_sibling(tmp_path / "s_L5_0000.pdb")  # this process: still writing
    live.write_text("partial")
    dead = tmp_path / ".s_L5_0001.pdb.999999999.0123abcd.tmp"  # no such process
    dead.write_text("partial")
    other = tmp_path / ".x_L5_0001.pdb.999999999.0123abcd.tmp"  # another run's name
    other.write_text("partial")
    assert remove_stale_temporaries(tmp_path, prefix="s_L") == [dead]
    assert live.exists() and other.exists() and not dead.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []
