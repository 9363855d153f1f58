"""Files sent back from a GPU machine in parts (benchmarks/transfer.py), the long-chain study's
pack and unpack (benchmarks/long_study_files.py) and its per-call training minutes
(benchmarks/long_study.py call_minutes)."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch

from benchmarks import long_study_files
from benchmarks.long_study import START_SECONDS, call_minutes
from benchmarks.transfer import join_parts, split_file
from genie.utils.errors import UserInputError


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


def fake_work(work):
    """A study's WORK with one arm's checkpoint (a 20 kB tensor), compile cache and log."""
    last = long_study_files.last_checkpoint(work, "today")
    last.parent.mkdir(parents=True)
    torch.save({"global_step": 7, "epoch": 1, "callbacks": {"TimeBudget": {"elapsed_seconds": 90}},
                "state_dict": {"w": torch.randn(5000)}}, last)  # fmt: skip
    cache = long_study_files.compile_cache(work, "today")
    cache.parent.mkdir(parents=True)
    cache.write_bytes(os.urandom(3000))
    (work / "logs").mkdir()
    (work / "logs" / "train_today.log").write_text("trained\n")
    return last, cache


def test_pack_and_unpack_carry_checkpoint_cache_and_logs(tmp_path):
    work, here = tmp_path / "machine", tmp_path / "here"
    last, cache = fake_work(work)
    manifest = long_study_files.pack(work, tmp_path / "out", ["today"])
    assert manifest["checkpoints"]["today"]["progress"] == {"steps": 7, "epoch": 1, "minutes": 1.5}
    long_study_files.unpack(tmp_path / "out", here)
    assert long_study_files.last_checkpoint(here, "today").read_bytes() == last.read_bytes()
    assert long_study_files.compile_cache(here, "today").read_bytes() == cache.read_bytes()
    assert (here / "logs" / manifest["date"] / "train_today.log").read_text() == "trained\n"


def test_a_cache_over_the_limits_stays_behind_and_a_checkpoint_over_them_is_refused(
    tmp_path, monkeypatch
):
    work = tmp_path / "machine"
    last, _ = fake_work(work)
    monkeypatch.setattr(long_study_files, "RETURNED_BYTES", last.stat().st_size + 2000)
    manifest = long_study_files.pack(work, tmp_path / "out", ["today"])
    assert manifest["compile_caches"] == {} and "today" in manifest["checkpoints"]
    monkeypatch.setattr(long_study_files, "RETURNED_BYTES", 1000)
    with pytest.raises(UserInputError, match="fewer --arms"):
        long_study_files.pack(work, tmp_path / "out2", ["today"])
