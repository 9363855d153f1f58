"""Sample provenance: which checkpoint and settings made each sample of an output folder.

``outputDirectory/provenance.json`` (:data:`MANIFEST`) maps every sample the sampler wrote there
(by file stem, ``NAME_L<length>_<i>``) to its record::

    {"format_version": 1, "samples": {"samples_L64_0000": {
        "checkpoint": {"sha256": "…", "path": "/…/last.ckpt"},
        "sampler": {"samplingStrategy": "ddpm", "temperature": 0.6, "skipSteps": 0,
                    "ddimEta": 0.0, "numTimesteps": 1000, "steps": 1000,
                    "knnUpdateFrequency": 1, "modelOverrides": {}},
        "seed": 2710…, "length": 64, "index": 0,
        "code": {"version": "0.1.0", "commit": "…"}, "device": "cpu"}}}

``checkpoint.sha256`` is the SHA-256 of the checkpoint's weights (its ``genie_checksum``,
:func:`genie.checkpoint.state_dict_digest`): the same weights give the same digest wherever
the file lies and whatever optimiser state it holds. ``sampler`` holds every setting that
changes the coordinates (the model's ``numTimesteps`` and the steps the sampler takes from it
included; ``modelOverrides`` are the sampling config's model keys, e.g. chunk sizes), ``seed``
the sample's own seed (:func:`~genie.sampling.chains.sample_seed`).

A re-run counts a sample file as done only when its record matches the run's checkpoint
digest, sampler settings, seed and length (:func:`differences`). ``code`` (package version, git
commit) and ``device`` are recorded but not compared: a code change rarely changes samples, and
refusing on it would strand every interrupted run after an update (a warning names the
difference instead); the CPU and a GPU give the same samples up to rounding.

The manifest is rewritten atomically (:mod:`genie.data.atomic`) under an exclusive lock of the
folder (POSIX ``flock``; where it is missing, concurrent runs into one folder may drop each
other's records, which then read as unknown provenance: a refusal, never a silent reuse).
Records are written before their sample files, so a run killed in between leaves a record
without a file (sampled again), never a file without a record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import genie
from genie.config import ConfigError
from genie.data.atomic import atomic_open

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger("genie.sample")

MANIFEST = "provenance.json"
FORMAT_VERSION = 1
COMPARED = ("checkpoint", "sampler", "seed", "length")  # what must match for a file to count


def code_version() -> dict[str, str | None]:
    """``{"version": package version, "commit": git commit of the code or None}`` (None when the
    package is not inside a git work tree, or git is missing; ``-dirty`` marks local edits)."""
    folder = Path(genie.__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                  text=True, timeout=10, check=True)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no", "--", "."):
        commit += "-dirty"
    return {"version": genie.__version__, "commit": commit or None}


def run_record(
    *,
    checkpoint_sha256: str,
    checkpoint_path: Path,
    sampler: Mapping[str, Any],
    device: str,
) -> dict[str, Any]:
    """The part of every record that the whole run shares (see the module docstring)."""
    return {
        "checkpoint": {"sha256": checkpoint_sha256, "path": str(Path(checkpoint_path).resolve())},
        "sampler": dict(sampler),
        "code": code_version(),
        "device": device,
    }


def sample_record(run: Mapping[str, Any], *, seed: int, length: int, index: int) -> dict:
    """The record of one sample of a run."""
    return {**run, "seed": int(seed), "length": int(length), "index": int(index)}


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple]:
    """What differs, among the compared entries (:data:`COMPARED`), between a recorded and the
    current record: ``{key: (recorded value, current value)}`` (the checkpoint as its weights
    digest); empty when they match."""
    found: dict[str, tuple] = {}
    old_sha = (recorded.get("checkpoint") or {}).get("sha256")
    new_sha = current["checkpoint"]["sha256"]
    if old_sha != new_sha:
        found["checkpoint weights sha256"] = (_short(old_sha), _short(new_sha))
    old_sampler = recorded.get("sampler") or {}
    for key, value in current["sampler"].items():
        if old_sampler.get(key, "missing") != value:
            found[key] = (old_sampler.get(key, "missing"), value)
    for key in ("seed", "length"):
        if recorded.get(key) != current[key]:
            found[key] = (recorded.get(key), current[key])
    return found


def _short(digest: object) -> str:
    return f"{digest[:12]}…" if isinstance(digest, str) else str(digest)


def read_manifest(folder: str | Path) -> tuple[dict[str, dict], str | None]:
    """The records of ``folder`` (stem -> record) and, when its manifest exists but cannot be
    read, why (then no record is returned: every file of the folder has unknown provenance)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        samples = data["samples"]
        if data.get("format_version") != FORMAT_VERSION or not isinstance(samples, dict):
            raise ValueError(f"format version {data.get('format_version')!r}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        return {}, f"{path} cannot be read ({type(error).__name__}: {error})"
    return {k: v for k, v in samples.items() if isinstance(v, dict)}, None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock of ``folder`` itself (``flock`` on the folder: no lock file)."""
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def record_samples(folder: str | Path, records: Mapping[str, Mapping[str, Any]]) -> None:
    """Add (or replace) the records of ``records`` (stem -> record) in ``folder``'s manifest,
    atomically and under the folder's lock (records of other stems are kept; an unreadable
    manifest is replaced)."""
    folder = Path(folder)
    with _locked(folder):
        samples, _ = read_manifest(folder)
        samples.update({stem: dict(record) for stem, record in records.items()})
        with atomic_open(folder / MANIFEST) as handle:
            json.dump({"format_version": FORMAT_VERSION, "samples": samples}, handle, indent=1,
                      sort_keys=True)  # fmt: skip
            handle.write("\n")


class PlannedSample(Protocol):
    """A sample a run plans (:class:`genie.sampling.jobs.SampleJob`)."""

    stem: Path  # output path without suffix; its name keys the manifest
    seed: int
    length: int
    index: int

    def done(self) -> bool: ...  # its structure file exists

    def remove_files(self) -> None: ...  # delete every file of it


def jobs_to_sample(
    folder: str | Path, jobs: Sequence[PlannedSample], run: Mapping[str, Any], *, overwrite: bool
) -> list[PlannedSample]:
    """The planned samples (``jobs``, in the output folder ``folder``) that still need
    sampling: those without a structure file and, with ``overwrite``, those whose file was made
    otherwise than ``run`` (:func:`run_record`) says or has no record (their files are deleted
    first). A file made by the same checkpoint and settings but another code version counts as
    done, with a warning.

    Raises:
        ConfigError: without ``overwrite``, a planned sample's file exists but its record is
            missing or differs (names the settings that differ, with both values).
    """
    records, problem = read_manifest(folder)
    todo, stale, unknown, other_code = [], [], [], 0
    changed: dict[str, list] = {}  # key -> [files, (recorded, now) of the first]
    for job in jobs:
        if not job.done():
            todo.append(job)
            continue
        recorded = records.get(job.stem.name)
        if recorded is None:
            unknown.append(job)
            continue
        found = differences(
            recorded, sample_record(run, seed=job.seed, length=job.length, index=job.index)
        )
        for key, values in found.items():
            changed.setdefault(key, [0, values])[0] += 1
        if found:
            stale.append(job)
        elif recorded.get("code") != run["code"]:
            other_code += 1
    if other_code:
        log.warning(
            "%d sample(s) in %s were made by another code version (now %s); counted as done, "
            "as their checkpoint and settings match (give --overwrite to sample them again)",
            other_code, folder, run["code"])  # fmt: skip
    if not stale and not unknown:
        return todo
    parts = []
    if stale:
        listed = "; ".join(f"{key} {old} in the folder, {now} now ({count} files)"
                           for key, (count, (old, now)) in changed.items())  # fmt: skip
        parts.append(f"{len(stale)} were made otherwise [{listed}]")
    if unknown:
        why = problem or f"{MANIFEST} has no record of them: written by an older version?"
        parts.append(f"{len(unknown)} have unknown provenance ({why})")
    summary = f"outputDirectory {folder}: of the {len(jobs)} planned samples, {' and '.join(parts)}"
    if not overwrite:
        raise ConfigError(
            f"{summary}; nothing was sampled: write to another outputDirectory, or give "
            "--overwrite to sample them again (their files are replaced)"
        )
    log.warning("--overwrite: %s; sampling them again", summary)
    for job in (*stale, *unknown):
        job.remove_files()
    return [job for job in jobs if not job.done()]
