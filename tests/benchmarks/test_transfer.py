"""Files sent back from a GPU machine in parts (benchmarks/transfer.py), and the long-chain
study's per-call training minutes (benchmarks/long_study.py call_minutes)."""

from __future__ import annotations

import hashlib
import os

import pytest

from benchmarks.long_study import START_SECONDS, call_minutes
from benchmarks.transfer import join_parts, split_file


def test_split_and_join_give_back_the_file(tmp_path):
    data = os.urandom(10_000)
    source = tmp_path / "last.ckpt"
    source.write_bytes(data)
    manifest = split_file(source, tmp_path / "out", "arm.last.ckpt", part_bytes=4096)
    assert manifest["parts"] == [f"arm.last.ckpt.part0{i}" for i in range(3)]
    sizes = [(tmp_path / "out" / name).stat().st_size for name in manifest["parts"]]
    assert sizes == [4096, 4096, 10_000 - 8192]
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    target = tmp_path / "here" / "runs" / "last.ckpt"
    join_parts(manifest, tmp_path / "out", target)
    assert target.read_bytes() == data


def test_a_damaged_or_missing_part_is_refused_and_writes_nothing(tmp_path):
    source = tmp_path / "last.ckpt"
    source.write_bytes(os.urandom(5000))
    manifest = split_file(source, tmp_path / "out", "x", part_bytes=2000)
    damaged = tmp_path / "out" / "x.part01"
    damaged.write_bytes(bytes([damaged.read_bytes()[0] ^ 1]) + damaged.read_bytes()[1:])
    target = tmp_path / "here" / "last.ckpt"
    with pytest.raises(ValueError, match="do not match"):
        join_parts(manifest, tmp_path / "out", target)
    assert not target.exists() and not list(target.parent.iterdir())
    (tmp_path / "out" / "x.part02").unlink()
    with pytest.raises(ValueError, match="x.part02"):
        join_parts(manifest, tmp_path / "out", target)


def test_a_call_trains_until_its_deadline_leaves_time_to_stop():
    assert call_minutes(25, 3.0, None) == 25  # no deadline: the arm's budget
    assert call_minutes(25, 3.0, START_SECONDS + 420) == pytest.approx(10.0)  # 3 + 7 minutes
    assert call_minutes(25, 20.0, START_SECONDS + 600) == 25  # the budget comes first
    assert call_minutes(25, 3.0, START_SECONDS / 2) == 3.0  # no time: nothing to train
