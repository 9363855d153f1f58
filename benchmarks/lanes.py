"""Lanes of commands run side by side, each lane's commands in order, with a deadline: the
GPU-machine studies (``benchmarks/long_study.py``) run one lane per arm this way."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


GRACE_SECONDS = 40  # from a deadline's SIGINT (a handled stop) to SIGTERM


def run_lanes(lanes: dict[str, list[list[str]]], *, log_dir: Path, step: str, gpus: int,
              deadline: float | None) -> dict[str, int]:  # fmt: skip
    """Run each lane's commands in order, the lanes at once (lane i on GPU i mod ``gpus``);
    stop every lane still running ``deadline`` seconds from now: SIGINT to its command (training
    then stops after the current batch and writes ``last.ckpt``, genie.training.last_checkpoint),
    SIGTERM to its process group :data:`GRACE_SECONDS` later, SIGKILL a minute after that.
    Returns each lane's exit status (the first non-zero one; −15 for stopped)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    end = None if deadline is None else time.monotonic() + deadline
    pending = {name: list(commands) for name, commands in lanes.items()}
    running: dict[str, subprocess.Popen] = {}
    status = dict.fromkeys(lanes, 0)
    logs = {name: open(log_dir / f"{step}_{name}.log", "a") for name in lanes}  # noqa: SIM115
    env_of = {}
    for i, name in enumerate(lanes):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if gpus > 0:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        env_of[name] = env
    try:
        while pending or running:
            for name in list(pending):
                if name not in running:
                    if not pending[name]:
                        del pending[name]
                        continue
                    command = pending[name].pop(0)
                    print(f"[{step} {name}] {' '.join(command)}", file=logs[name], flush=True)
                    running[name] = subprocess.Popen(command, cwd=REPO, env=env_of[name],
                                                     stdout=logs[name], stderr=subprocess.STDOUT,
                                                     start_new_session=True)  # fmt: skip
            for name, process in list(running.items()):
                code = process.poll()
                if code is not None:
                    del running[name]
                    if code and not status[name]:
                        status[name] = code
                        pending.pop(name, None)  # a failed lane runs nothing more
            if end is not None and time.monotonic() > end and running:
                for name, process in running.items():
                    process.send_signal(signal.SIGINT)  # the command itself, not its workers
                    status[name] = status[name] or -15
                    pending.pop(name, None)
                for process in running.values():
                    _stop(process)
                running.clear()
            time.sleep(0.5)
    finally:
        for log in logs.values():
            log.close()
    return status


def _stop(process: subprocess.Popen) -> None:
    """Wait for a process sent SIGINT; then SIGTERM its group, then SIGKILL it."""
    for sent, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 60)):
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, sent)
    process.wait()
