"""A training run killed with SIGKILL at random moments and resumed each time from its
``last.ckpt`` ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from helpers import REPO, tiny_train_config

from genie.config import config_to_text
from genie.training.run import train

EPOCHS = 12  # three kills, each after two saved epochs, leave the last run work to do
EXTRA = (f"numEpochs={EPOCHS}", "triangularDropout=0.25", "warmupEpochs=1")


def _command(config: Path, resume: Path | None) -> list[str]:
    command = [sys.executable, str(REPO / "train" / "train_long.py"), "--config", str(config)]
    return command + (["--resume", str(resume)] if resume else [])


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    straight, _ = train(tiny_train_config(tmp_path / "a", *EXTRA), enable_progress_bar=False)
    expected = _state(Path(straight.logger.log_dir) / "checkpoints" / "last.ckpt")

    config = tmp_path / "b.config"
    config.write_text(config_to_text(tiny_train_config(tmp_path / "b", *EXTRA)))
    last = tmp_path / "b" / "runs" / "test" / "version_0" / "checkpoints" / "last.ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    rng = random.Random(7)
    kills = 0
    for _ in range(8):  # kill, resume, kill, ... then let the last run finish
        resume = last if last.exists() else None
        proc = subprocess.Popen(_command(config, resume), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        if kills == 3:
            assert proc.wait(timeout=600) == 0
            break
        # Wait for two new checkpoints: the gap between them is this machine's epoch time,
        # and the kill lands at a random moment of the epoch after (a checkpoint write included).
        seen: list[float] = []
        before = last.stat().st_mtime_ns if last.exists() else None
        deadline = time.monotonic() + 300
        while proc.poll() is None and len(seen) < 2 and time.monotonic() < deadline:
            mtime = last.stat().st_mtime_ns if last.exists() else None
            if mtime != before:
                seen.append(time.monotonic())
                before = mtime
            time.sleep(0.01)
        if len(seen) == 2:
            time.sleep(rng.uniform(0.0, seen[1] - seen[0]))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
    assert kills == 3, "the run finished before it could be killed three times"
    resumed = _state(last)
    assert list(resumed) == list(expected)
    for name, value in expected.items():
        assert torch.equal(resumed[name], value), f"{name} differs after kills and resumes"
    assert not list(last.parent.glob("*.tmp*")), "a partial checkpoint was left behind"
