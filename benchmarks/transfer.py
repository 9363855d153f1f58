"""Files larger than what one file of a GPU machine's results may be (16 MiB there), sent back
as numbered parts and joined here, checked by size and SHA-256.

``benchmarks/long_study.py pack`` sends each arm's ``last.ckpt`` (≈ 35 MB with its optimiser
state) this way, so that a study's training continues in the next call or session, on a fresh
machine, from what the previous call sent back.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PART_BYTES = 15 * 2**20  # below the 16 MiB a returned file may have


def split_file(path: Path, out_dir: Path, stem: str, *, part_bytes: int = PART_BYTES) -> dict:
    """Write ``path`` as ``out_dir/stem.part00``, ``.part01``, … of at most ``part_bytes`` each;
    returns its manifest (``parts``, ``bytes``, ``sha256``) for :func:`join_parts`."""
    if part_bytes <= 0:
        raise ValueError(f"part_bytes must be > 0, got {part_bytes}")
    out_dir.mkdir(parents=True, exist_ok=True)
    parts, size, digest = [], 0, hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(part_bytes):
            name = f"{stem}.part{len(parts):02d}"
            (out_dir / name).write_bytes(chunk)
            digest.update(chunk)
            parts.append(name)
            size += len(chunk)
    return {"parts": parts, "bytes": size, "sha256": digest.hexdigest()}


def join_parts(manifest: dict, parts_dir: Path, target: Path) -> None:
    """Join the parts named by ``manifest`` (from :func:`split_file`) found in ``parts_dir``
    into ``target``, written only when size and SHA-256 match (else ``ValueError``, ``target``
    untouched)."""
    missing = [name for name in manifest["parts"] if not (parts_dir / name).is_file()]
    if missing:
        raise ValueError(f"parts missing from {parts_dir}: {', '.join(missing)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".joining")
    digest = hashlib.sha256()
    with open(partial, "wb") as out:
        for name in manifest["parts"]:
            chunk = (parts_dir / name).read_bytes()
            digest.update(chunk)
            out.write(chunk)
    size = partial.stat().st_size
    if size != manifest["bytes"] or digest.hexdigest() != manifest["sha256"]:
        partial.unlink()
        raise ValueError(
            f"{target.name}: the joined parts ({size} bytes) do not match what was split "
            f"({manifest['bytes']} bytes, sha256 {manifest['sha256'][:12]}…)"
        )
    partial.replace(target)
