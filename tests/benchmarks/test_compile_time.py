"""benchmarks/compile_time.py: bad arguments are refused before any child starts (exit 2)."""

from __future__ import annotations

import pytest

from benchmarks.compile_time import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arms", "apart,fused"], "unknown arm(s) fused"),
        (["--chunks", "1,x"], "--chunks must be comma-separated integers"),
        (["--length", "16", "--chunks", "1,32"], "chunk counts must lie in 1..16"),
        (["--chunks", "0"], "chunk counts must lie in 1..256"),
    ],
)
def test_bad_arguments_are_refused(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
