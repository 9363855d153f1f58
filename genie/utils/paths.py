"""Checks that an output folder or file can be written, made before any slow work starts.

Each check looks at the path and its nearest existing parent only (nothing is created): the path
or a parent that is a file, a folder without write permission (or on a read-only file system), or
a disk with less than :data:`MIN_FREE_BYTES` free, raise an error whose message names the option
or config key (``what``) and the path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from genie.utils.errors import UserInputError

MIN_FREE_BYTES = 1 << 20  # 1 MiB: less than one sampled structure of 10,000 residues


def format_bytes(count: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest parent that exists (a broken symbolic link counts as existing)."""
    existing = path
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    return existing


def ensure_writable_dir(
    path: str | Path, *, what: str, min_free: int = MIN_FREE_BYTES, target: Path | None = None
) -> Path:
    """Check that ``path`` is a folder, or can be created as one, where files can be written.

    Args:
        path: the folder (need not exist yet).
        what: the option or config key that names it, e.g. ``"logDirectory"`` or ``"--out"``.
        min_free: the fewest free bytes on its disk that are accepted.
        target: the file to be written in ``path``, when that is what ``what`` names (for the
            message).

    Returns:
        ``path`` as a Path.

    Raises:
        NotADirectoryError: the path, or one of its parents, is a file.
        PermissionError: no permission to write in the path or its nearest existing parent.
        UserInputError: an empty path, or less than ``min_free`` bytes free.
    """
    if not str(path).strip():
        raise UserInputError(f"{what} is empty: give a folder")
    path = Path(path).expanduser()
    named = f"{what} {target if target is not None else path}"
    existing = _nearest_existing(path)
    if not existing.is_dir():
        if existing.is_symlink() and not existing.exists():
            raise NotADirectoryError(f"{named}: {existing} is a broken symbolic link")
        if existing == path and target is None:
            raise NotADirectoryError(f"{named} is a file, not a folder: give a folder")
        raise NotADirectoryError(f"{named} cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        how = "cannot be written" if existing == path or target else "cannot be created"
        raise PermissionError(f"{named} {how}: no permission to write in {existing}")
    free = shutil.disk_usage(existing).free
    if free < min_free:
        raise UserInputError(
            f"{named}: only {format_bytes(free)} free on the disk of {existing} (at least "
            f"{format_bytes(min_free)} needed): free some space or choose another folder"
        )
    return path


def ensure_writable_file(path: str | Path, *, what: str, min_free: int = MIN_FREE_BYTES) -> Path:
    """Check that the file ``path`` can be written (replaced, if it exists): it is not a folder
    and :func:`ensure_writable_dir` passes for its folder.

    Raises:
        IsADirectoryError: ``path`` is a folder.
        (and what :func:`ensure_writable_dir` raises)
    """
    if not str(path).strip():
        raise UserInputError(f"{what} is empty: give a file name")
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder: give a file name")
    ensure_writable_dir(path.parent, what=what, min_free=min_free, target=path)
    return path
