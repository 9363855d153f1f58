"""Lanes of commands with a deadline (benchmarks/lanes.py): a command past the deadline gets
SIGINT first (a handled stop), SIGTERM to its group only after the grace period."""

from __future__ import annotations

import sys

import benchmarks.lanes as lanes

HANDLES_SIGINT = """
import pathlib, sys, time
try:
    time.sleep(60)
except KeyboardInterrupt:
    pathlib.Path(sys.argv[1]).write_text("saved")
"""
IGNORES_SIGINT = """
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
time.sleep(60)
"""


def test_a_deadline_interrupts_then_terminates(tmp_path, monkeypatch):
    monkeypatch.setattr(lanes, "GRACE_SECONDS", 2)
    saved = tmp_path / "saved"
    status = lanes.run_lanes(
        {
            "handled": [[sys.executable, "-c", HANDLES_SIGINT, str(saved)], ["false"]],
            "stubborn": [[sys.executable, "-c", IGNORES_SIGINT]],
            "quick": [["true"], ["true"]],
        },
        log_dir=tmp_path / "logs",
        step="t",
        gpus=0,
        deadline=3,
    )
    assert saved.read_text() == "saved"  # it stopped through its own handler
    assert status == {"handled": -15, "stubborn": -15, "quick": 0}  # "false" never ran
    assert "[t handled] false" not in (tmp_path / "logs" / "t_handled.log").read_text()
