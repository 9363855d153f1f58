"""Turn folders/files/globs of PDB and mmCIF files into one cached Cα dataset file.

The cache file ``<cache_dir>/ca_dataset_<hash>.npz`` is named by a hash of the input files
(resolved path, size, mtime) and every filter parameter plus the format version, so it is rebuilt
only when an input or a filter changes, or when it cannot be read in full (truncated, damaged,
not an archive of this format or version: reported once, then rebuilt). Files that cannot be
read are skipped and counted by reason. Format: :mod:`genie.data.dataset_file`.

Command line::

    python -m genie.data.preprocess SOURCE [SOURCE ...] --cache-dir DIR [--min-length N] \
        [--max-length N] [--keep-chain-breaks] [--workers N] [--output FILE.npz]

``--output`` also writes the dataset to a file of your choosing (a copy of the cache file), e.g.
a small file to carry to a GPU machine and name in ``dataDirectory``.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genie.data.atomic import atomic_open
from genie.data.dataset_file import (
    FORMAT_VERSION,
    CaDatasetArrays,
    arrays_from_segments,
    load_dataset_file,
    save_dataset_file,
)
from genie.data.structure_io import (
    CaSegment,
    StructureReadError,
    read_ca_segments,
    structure_format,
)
from genie.utils.cli import run_command
from genie.utils.errors import DataError, UserInputError
from genie.utils.paths import ensure_writable_dir, ensure_writable_file

__all__ = [
    "BuildSummary",
    "CaDatasetArrays",
    "build_dataset",
    "collect_structure_files",
    "load_dataset_file",
    "main",
]

logger = logging.getLogger(__name__)
DEFAULT_MIN_LENGTH = 20  # residues: the command line's default, the config's minimumNumResidues


def _is_structure_file(path: Path) -> bool:
    return path.is_file() and structure_format(path) is not None


def collect_structure_files(sources: str | Path | Sequence[str | Path]) -> list[Path]:
    """Resolve sources into a sorted, duplicate-free list of structure files.

    Args:
        sources: each a folder (searched recursively for ``.pdb``/``.ent``/``.cif``/``.mmcif``,
            optionally ``.gz``), a file (taken as is, whatever its suffix) or a glob pattern
            (``**`` allowed; matched folders are searched like folders).

    Returns:
        Resolved absolute paths, sorted.

    Raises:
        FileNotFoundError: nothing found; the message names the sources.
    """
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    found: set[Path] = set()
    for source in items:
        path = Path(source).expanduser()
        if path.is_dir():
            found.update(p for p in path.rglob("*") if _is_structure_file(p))
        elif path.is_file():
            found.add(path)
        else:
            for match in map(Path, glob.glob(str(path), recursive=True)):
                if match.is_dir():
                    found.update(p for p in match.rglob("*") if _is_structure_file(p))
                elif _is_structure_file(match):
                    found.add(match)
    if not found:
        raise FileNotFoundError(f"no PDB/mmCIF files (.pdb/.ent/.cif/.mmcif[.gz]) in {items}")
    return sorted({p.resolve() for p in found})


@dataclass
class BuildSummary:
    """Counts of one dataset build (stored in the file's metadata)."""

    files_found: int = 0
    files_read: int = 0
    files_skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    skipped_examples: dict[str, str] = field(default_factory=dict)  # file -> message
    segments_kept: int = 0
    segments_too_short: int = 0
    segments_too_long: int = 0
    residues: int = 0
    seconds: float = 0.0

    def text(self) -> str:
        skipped = sum(self.files_skipped.values())
        reasons = ", ".join(f"{r}: {c}" for r, c in sorted(self.files_skipped.items()))
        return (
            f"Cα dataset: {self.files_found} files found, {self.files_read} read, {skipped} skipped"
            + (f" ({reasons})" if reasons else "")
            + f"; segments: {self.segments_kept} kept, {self.segments_too_short} too short, "
            f"{self.segments_too_long} too long; {self.residues} residues; "
            f"{self.seconds:.1f} s"
        )


def _fingerprint(files: Sequence[Path], params: dict) -> str:
    entries = []
    for path in files:
        stat = path.stat()
        entries.append([str(path), stat.st_size, stat.st_mtime_ns])
    blob = json.dumps(
        {"format_version": FORMAT_VERSION, "files": entries, "params": params}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _read_file(
    path: Path, chain_break_distance: float, split_chain_breaks: bool
) -> tuple[list[CaSegment], str | None, str | None]:
    """Worker: (segments, skip reason, message); reason is None on success."""
    try:
        segments = read_ca_segments(
            path, chain_break_distance=chain_break_distance, split_chain_breaks=split_chain_breaks
        )
    except StructureReadError as error:
        return [], error.reason, str(error)
    if not segments:
        return [], "no protein residues", f"{path}: no protein Cα"
    return segments, None, None


def _parse_all(
    files: Sequence[Path],
    *,
    chain_break_distance: float,
    split_chain_breaks: bool,
    num_workers: int,
) -> Iterator[tuple[list[CaSegment], str | None, str | None]]:
    """Results in the order of ``files`` (independent of the number of workers)."""
    args = (files, [chain_break_distance] * len(files), [split_chain_breaks] * len(files))
    if num_workers <= 1 or len(files) <= 1:
        yield from map(_read_file, *args)
        return
    chunksize = max(1, len(files) // (num_workers * 8))
    with ProcessPoolExecutor(max_workers=num_workers) as pool:
        yield from pool.map(_read_file, *args, chunksize=chunksize)


def _progress(iterable: Iterable, *, total: int, enabled: bool) -> Iterable:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc="reading structures", unit="file")


def _report(text: str, progress: bool) -> None:
    if progress:
        print(text, flush=True)
    else:
        logger.info(text)


def build_dataset(
    sources: str | Path | Sequence[str | Path],
    *,
    cache_dir: str | Path,
    min_length: int,
    max_length: int | None = None,
    chain_break_distance: float = 4.2,
    split_chain_breaks: bool = True,
    num_workers: int = 2,
    progress: bool = True,
) -> Path:
    """Read all structure files of ``sources`` into one cached ``.npz`` (or reuse the cache).

    Args:
        sources: folders, files or globs (see :func:`collect_structure_files`).
        cache_dir: folder of the cache file (created if needed).
        min_length: drop segments with fewer residues.
        max_length: drop segments with more residues; None keeps all (crop later instead).
        chain_break_distance: Cα distance (Å) above which consecutive residues are a break.
        split_chain_breaks: split chains at breaks; otherwise keep chains whole with ``breaks``.
        num_workers: parsing processes; <= 1 parses serially.
        progress: show a tqdm bar and print the summary (else log it at INFO).

    Returns:
        Path of the dataset file; load it with :func:`load_dataset_file`.

    Raises:
        FileNotFoundError: no structure file in ``sources``.
        DataError: no segment passed the filters (message names the sources and counts).
        ValueError: bad length bounds.
    """
    if min_length < 1 or (max_length is not None and max_length < min_length):
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    source_list = [str(s) for s in ([sources] if isinstance(sources, (str, Path)) else sources)]
    files = collect_structure_files(source_list)
    params = {
        "min_length": int(min_length),
        "max_length": None if max_length is None else int(max_length),
        "chain_break_distance": float(chain_break_distance),
        "split_chain_breaks": bool(split_chain_breaks),
    }
    path = Path(cache_dir) / f"ca_dataset_{_fingerprint(files, params)}.npz"
    if path.is_file():
        try:  # read in full: a cache is used only when the loader accepts all of it
            cached = load_dataset_file(path)
        except DataError as error:
            # any unreadable cache (truncated, damaged, garbage, a pickle, another format or
            # version) is reported once and rebuilt
            _report(f"Cα dataset: cache {path} unreadable ({error}); rebuilding", progress)
        else:
            _report(
                f"Cα dataset: using cached {path} ({len(cached)} segments, "
                f"{cached.num_residues} residues)",
                progress,
            )
            return path

    start = time.perf_counter()
    summary = BuildSummary(files_found=len(files))
    skipped: Counter[str] = Counter()
    kept: list[CaSegment] = []
    results = _parse_all(
        files,
        chain_break_distance=chain_break_distance,
        split_chain_breaks=split_chain_breaks,
        num_workers=num_workers,
    )
    for file, (segments, reason, message) in zip(
        files, _progress(results, total=len(files), enabled=progress), strict=True
    ):
        if reason is not None:
            skipped[reason] += 1
            summary.skipped_examples[str(file)] = str(message)
            continue
        summary.files_read += 1
        for segment in segments:
            if len(segment) < min_length:
                summary.segments_too_short += 1
            elif max_length is not None and len(segment) > max_length:
                summary.segments_too_long += 1
            else:
                kept.append(segment)
    summary.files_skipped = dict(skipped)
    summary.segments_kept = len(kept)
    summary.residues = sum(len(s) for s in kept)
    summary.seconds = time.perf_counter() - start
    if not kept:
        raise DataError(f"no usable Cα segment in {source_list} with {params}: {summary.text()}")

    metadata = {"sources": source_list, "params": params, "summary": asdict(summary)}
    save_dataset_file(path, arrays_from_segments(kept, metadata=metadata))
    _report(f"{summary.text()}\nCα dataset written to {path}", progress)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the summary and the dataset path.

    Returns:
        0 on success, 2 on a user mistake (one line on stderr), 1 on a bug
        (:mod:`genie.utils.cli`).
    """
    parser = argparse.ArgumentParser(
        prog="python -m genie.data.preprocess",
        description="Build (or reuse) a cached Cα dataset from PDB/mmCIF files.",
    )
    parser.add_argument("sources", nargs="+", help="folders, files or glob patterns")
    parser.add_argument("--cache-dir", required=True, help="folder for the .npz cache")
    parser.add_argument(
        "--min-length",
        type=int,
        default=DEFAULT_MIN_LENGTH,
        help=f"minimum segment length (default {DEFAULT_MIN_LENGTH})",
    )
    parser.add_argument("--max-length", type=int, default=None, help="maximum segment length")
    parser.add_argument(
        "--keep-chain-breaks",
        action="store_true",
        help="keep chains whole (breaks marked) instead of splitting them at breaks",
    )
    parser.add_argument("--chain-break-distance", type=float, default=4.2, help="Å")
    parser.add_argument("--workers", type=int, default=2, help="parsing processes")
    parser.add_argument(
        "--output", default=None, help="also write the dataset to this .npz file (a copy)"
    )
    args = parser.parse_args(argv)
    return run_command(_preprocess, args, prog=parser.prog)


def _preprocess(args: argparse.Namespace) -> None:
    if args.min_length < 1 or (args.max_length is not None and args.max_length < args.min_length):
        raise UserInputError(
            f"need 1 <= --min-length <= --max-length, got {args.min_length}, {args.max_length}"
        )
    if args.output is not None:
        if not args.output.endswith(".npz"):
            raise UserInputError(f"--output must name a .npz file, got {args.output}")
        ensure_writable_file(args.output, what="--output")
    ensure_writable_dir(args.cache_dir, what="--cache-dir")
    path = build_dataset(
        args.sources,
        cache_dir=args.cache_dir,
        min_length=args.min_length,
        max_length=args.max_length,
        chain_break_distance=args.chain_break_distance,
        split_chain_breaks=not args.keep_chain_breaks,
        num_workers=args.workers,
        progress=True,
    )
    if args.output is not None:
        with open(path, "rb") as source, atomic_open(args.output, binary=True) as target:
            shutil.copyfileobj(source, target)
        path = Path(args.output)
    print(path)


if __name__ == "__main__":
    # Re-import under the package name so that pool workers unpickle ``_read_file`` from
    # ``genie.data.preprocess`` rather than from ``__main__``.
    from genie.data.preprocess import main as _main

    sys.exit(_main())
