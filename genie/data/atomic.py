"""Atomic file writing: a temporary file in the destination folder, then ``os.replace``.

A reader never sees a half-written structure or dataset file: either the old file (or none) or the
complete new one. If writing fails, the temporary file is removed and the destination is untouched;
a process killed while writing (SIGKILL) leaves its temporary file, which
:func:`remove_stale_temporaries` clears on the next run.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def temporary_sibling(path: Path) -> Path:
    """A unique hidden temporary path in the same folder as ``path`` (same file system).

    Args:
        path: final destination.

    Returns:
        ``<folder>/.<name>.<pid>.<random>.tmp``.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_open(path: str | Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success move it onto ``path``.

    The parent folder is created if needed. The temporary file is created with the process umask
    (not 0600), so the final file has ordinary permissions.

    Args:
        path: destination file.
        binary: open in ``"xb"`` instead of ``"x"`` (text, UTF-8) mode.

    Yields:
        The open file handle to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        if binary:
            handle: IO[Any] = open(tmp, "xb")
        else:
            handle = open(tmp, "x", encoding="utf-8", newline="\n")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _process_exists(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would signal the process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: str | Path, *, prefix: str = "") -> list[Path]:
    """Remove the temporary files of :func:`atomic_open` in ``folder`` whose destination name
    starts with ``prefix`` and whose writing process no longer runs (it was killed mid-write).

    Returns:
        The files removed (none when ``folder`` does not exist).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        match = _TEMPORARY.fullmatch(path.name)
        if match and match["name"].startswith(prefix) and not _process_exists(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
