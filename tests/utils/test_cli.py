"""The one error path of the entry points (genie/utils/cli.py) and the output-path checks
(genie/utils/paths.py) on their own; tests/test_entry_points.py runs every entry point."""

from __future__ import annotations

import os
import shutil
from collections import namedtuple

import pytest

from genie.config import ConfigError
from genie.utils import paths
from genie.utils.cli import REPORT_HINT, describe, run_command
from genie.utils.errors import DataError, UserInputError
from genie.utils.paths import ensure_writable_dir, ensure_writable_file


def raising(error: BaseException):
    def body():
        raise error

    return body


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("batchSize = 0 is below the minimum 1"),
        DataError("no usable Cα segment in ['x']"),
        UserInputError("--out is empty"),
        FileNotFoundError(2, "No such file or directory", "x.config"),
        NotADirectoryError("logDirectory runs is a file"),
        PermissionError(13, "Permission denied", "/root/x"),
        FloatingPointError("non-finite training loss (nan) at global step 3"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_user_error_is_one_line_and_exit_2(error, capsys):
    assert run_command(raising(error), prog="cmd") == 2
    captured = capsys.readouterr()
    assert captured.err == f"cmd: error: {describe(error)}\n"
    assert "Traceback" not in captured.err and captured.out == ""


def test_an_operating_system_error_names_its_path():
    assert describe(FileNotFoundError(2, "No such file or directory", "a.cfg")) == (
        "a.cfg: No such file or directory"
    )
    assert describe(ConfigError("one\n  two")) == "one two"  # one line, always


@pytest.mark.parametrize("error", [RuntimeError("simulated bug"), ValueError("a bug's value"),
                                   KeyError("k"), OSError("device error")])  # fmt: skip
def test_anything_else_is_a_bug_with_its_traceback_and_exit_1(error, capsys):
    assert run_command(raising(error), prog="cmd") == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert f"{type(error).__name__}: " in err
    assert err.strip().splitlines()[-1] == f"cmd: internal error: {REPORT_HINT}"


def test_interrupt_is_exit_130_and_system_exit_passes_through(capsys):
    assert run_command(raising(KeyboardInterrupt()), prog="cmd") == 130
    assert capsys.readouterr().err == "cmd: interrupted\n"
    with pytest.raises(SystemExit) as exit_info:
        run_command(raising(SystemExit(2)))
    assert exit_info.value.code == 2
    assert run_command(lambda: None) == 0 and run_command(lambda: 3) == 3


def test_writable_dir_accepts_an_existing_or_missing_folder(tmp_path):
    assert ensure_writable_dir(tmp_path, what="logDirectory") == tmp_path
    assert ensure_writable_dir(tmp_path / "a" / "b", what="logDirectory") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checks only, creates nothing


def test_a_file_where_a_folder_is_needed(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"^logDirectory .*/f is a file, not a folder"):
        ensure_writable_dir(tmp_path / "f", what="logDirectory")
    with pytest.raises(NotADirectoryError, match=r"cacheDirectory .*/f/sub cannot be written: "
                                                 r".*/f is a file"):  # fmt: skip
        ensure_writable_dir(tmp_path / "f" / "sub", what="cacheDirectory")
    with pytest.raises(IsADirectoryError, match=r"--output .* is a folder: give a file name"):
        ensure_writable_file(tmp_path, what="--output")
    with pytest.raises(NotADirectoryError, match=r"--output .*/f/x.npz cannot be written"):
        ensure_writable_file(tmp_path / "f" / "x.npz", what="--output")
    with pytest.raises(UserInputError, match="--out is empty"):
        ensure_writable_dir("", what="--out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the permission bits say")
def test_a_folder_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="outputDirectory .* no permission to write in"):
        ensure_writable_dir(locked / "out", what="outputDirectory")


def test_a_full_disk_says_how_much_is_free(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(UserInputError, match=r"outputDirectory .*: only 4.0 KiB free on the disk "
                                             r"of .* \(at least 1.0 MiB needed\)"):  # fmt: skip
        ensure_writable_dir(tmp_path / "out", what="outputDirectory")
    assert paths.format_bytes(3 * 2**30) == "3.0 GiB"
