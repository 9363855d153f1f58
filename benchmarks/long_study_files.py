"""The long-chain study's work folder (``benchmarks/long_study.py``), and how it travels between
a GPU machine and here: ``pack`` on the machine, ``unpack`` here.

One call of the GPU machine sends back at most 8 files of 16 MiB; an arm's ``last.ckpt`` (≈ 35 MB
with its optimiser state) and its torch.compile cache file (``compileCacheFile``) travel in
parts (:mod:`benchmarks.transfer`), listed with their checksums in ``pack.json``; the rest
(logs, training records, evaluations, samples, TensorBoard events) in one archive. Several arms'
full checkpoints do not fit those limits: ``weights_only`` sends each arm's weights (≈ 11 MB, no
optimiser state: it samples, it does not resume training), unpacked as ``WORK/weights/ARM.ckpt``.
"""

from __future__ import annotations

import datetime
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.transfer import PART_BYTES, join_parts, split_file
from genie.utils.errors import UserInputError

RETURNED_FILES = 8  # files one call of the GPU machine sends back
RETURNED_BYTES = 64 * 2**20  # bytes it sends back, all files together
ARCHIVED = ("logs", "training", "eval", "samples")  # WORK's folders in the archive


def last_checkpoint(work: Path, arm: str) -> Path:
    return work / "runs" / arm / "version_0" / "checkpoints" / "last.ckpt"


def weights_checkpoint(work: Path, arm: str) -> Path:
    """The arm's weights-only checkpoint, where :func:`unpack` puts what ``weights_only`` sent."""
    return work / "weights" / f"{arm}.ckpt"


def sampling_checkpoint(work: Path, arm: str) -> Path:
    """The checkpoint the arm samples from: ``last.ckpt`` where training ran in WORK, else the
    weights-only one (which may not exist either)."""
    last = last_checkpoint(work, arm)
    return last if last.is_file() else weights_checkpoint(work, arm)


OPTIMISATION_STATE = ("optimizer_states", "lr_schedulers", "loops")  # what resuming needs alone


def strip_to_weights(source: Path, target: Path) -> None:
    """``source`` without :data:`OPTIMISATION_STATE`: weights, config and progress, which
    sampling loads; training cannot resume from it."""
    stored = torch.load(source, map_location="cpu", weights_only=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v for k, v in stored.items() if k not in OPTIMISATION_STATE}, target)


def compile_cache(work: Path, arm: str) -> Path:
    """The arm's torch.compile cache file (``compileCacheFile``)."""
    return work / "compile_cache" / f"{arm}.bin"


def checkpoint_progress(path: Path) -> dict | None:
    """Optimiser steps, epoch and training minutes stored in a checkpoint (None: none)."""
    if not path.is_file():
        return None
    stored = torch.load(path, map_location="cpu", weights_only=True)
    budget = (stored.get("callbacks") or {}).get("TimeBudget", {})  # genie.training.time_budget
    return {"steps": stored.get("global_step"), "epoch": stored.get("epoch"),
            "minutes": round(budget.get("elapsed_seconds", 0.0) / 60, 4)}  # fmt: skip


def describe(record: dict | None) -> str:
    """One line of a training record's progress."""
    if not record:
        return "no checkpoint"
    return (f"step {record['steps']}, epoch {record['epoch']}, "
            f"{record['minutes']:.1f} training minutes")  # fmt: skip


def pack(work: Path, out: Path, arms: Sequence[str], *, weights_only: bool = False) -> dict:
    """WORK's logs, records, evaluations, samples and TensorBoard events as
    ``out/long_study.tar.gz``; each arm's checkpoint (``weights_only``: its weights, see
    :func:`strip_to_weights`) and compile cache in parts; ``out/pack.json`` lists the parts. A
    compile cache that would take the sending over its limits stays behind (it only saves
    compilation). Returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    archive = out / "long_study.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for folder in ARCHIVED:
            if (work / folder).exists():
                tar.add(work / folder, arcname=folder)
        for events in sorted((work / "runs").glob("*/version_*/events.out.tfevents.*")):
            tar.add(events, arcname=str(events.relative_to(work)))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kind = "weights" if weights_only else "checkpoints"
    manifest = {"date": date, kind: {}, "compile_caches": {}}
    files, size = 2, archive.stat().st_size  # the archive and pack.json
    for arm in arms:
        last = last_checkpoint(work, arm)
        if not last.is_file():
            continue
        sent, stem = last, f"{arm}.last.ckpt"
        if weights_only:
            sent, stem = weights_checkpoint(work, arm), f"{arm}.weights.ckpt"
            strip_to_weights(last, sent)
        entry = split_file(sent, out, stem)
        entry.update(path=str(sent.relative_to(work)), progress=checkpoint_progress(sent))
        manifest[kind][arm] = entry
        files, size = files + len(entry["parts"]), size + entry["bytes"]
    if files > RETURNED_FILES or size > RETURNED_BYTES:
        raise UserInputError(f"pack: {files} files, {size / 2**20:.0f} MiB, more than one call "
                             "sends back: pack fewer --arms per call")  # fmt: skip
    for arm in arms:
        cache = compile_cache(work, arm)
        if not cache.is_file():
            continue
        parts = -(-cache.stat().st_size // PART_BYTES)
        if files + parts > RETURNED_FILES or size + cache.stat().st_size > RETURNED_BYTES:
            print(f"pack {arm}: compile cache left behind ({cache.stat().st_size / 2**20:.0f} "
                  "MiB: over what the call sends back)")  # fmt: skip
            continue
        entry = split_file(cache, out, f"{arm}.compile_cache")
        entry["path"] = str(cache.relative_to(work))
        manifest["compile_caches"][arm] = entry
        files, size = files + len(entry["parts"]), size + entry["bytes"]
    (out / "pack.json").write_text(json.dumps(manifest, indent=1))
    print(f"pack: {files} files, {size / 2**20:.1f} MiB in {out}")
    return manifest


def unpack(folder: Path, work: Path) -> dict:
    """What :func:`pack` wrote into ``folder``, back into WORK: parts checked and joined, logs
    under ``logs/PACK_DATE/``, the rest in place. Returns the manifest."""
    manifest_path = folder / "pack.json"
    if not manifest_path.is_file():
        raise UserInputError(f"unpack: no pack.json in {folder} (written by 'pack OUT_DIR')")
    manifest = json.loads(manifest_path.read_text())
    with tarfile.open(folder / "long_study.tar.gz") as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if parts and parts[0] == "logs":
                member.name = str(Path("logs", manifest["date"], *parts[1:]))
            tar.extract(member, work, filter="data")
    for kind in ("checkpoints", "weights", "compile_caches"):
        for arm, entry in manifest.get(kind, {}).items():
            try:
                join_parts(entry, folder, work / entry["path"])
            except ValueError as err:
                raise UserInputError(f"unpack {arm}: {err}") from None
            what = describe(entry["progress"]) if "progress" in entry else "compile cache"
            print(f"unpack {arm}: {work / entry['path']} ({what})")
    return manifest
