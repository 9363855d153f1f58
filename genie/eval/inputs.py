"""Reading the generated backbones and the reference set from disk.

Generated files are read with chains kept whole (``split_chain_breaks=False``): a bad
consecutive Cα distance is exactly what the evaluation must see, so it must not be split away.
Every chain of a file is one sample. The sampler's optional fragment files
(``saveFragments``: ``STEM_frag000.pdb`` ... beside ``STEM.pdb``/``.cif``) repeat pieces of a
sample and are skipped when their whole chain's file is in the same folder.

Reference structures are real, and their Cα gaps are missing residues, not geometry: they are
split into unbroken segments and segments shorter than ``min_length`` are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genie.data.dataset_file import default_dataset_path, load_dataset_file
from genie.data.preprocess import collect_structure_files
from genie.data.structure_io import StructureReadError, read_ca_segments, structure_stem
from genie.utils.errors import DataError

Progress = Callable[[str, int, int], None]  # (stage, done, total)
_FRAGMENT = re.compile(r"(?P<parent>.+)_frag\d{3,}")


@dataclass(frozen=True, kw_only=True, eq=False)
class ChainSet:
    """Named Cα traces read from disk.

    Attributes:
        source: what was read (for the report).
        names: one name per chain.
        traces: ``[n_i, 3]`` float64 Å.
        skipped: file or segment -> why it was left out.
    """

    source: str
    names: tuple[str, ...]
    traces: tuple[np.ndarray, ...]
    skipped: dict[str, str] = field(default_factory=dict)


def _read_files(
    files: list[Path], *, split: bool, min_length: int, stage: str, progress: Progress | None
) -> tuple[list[str], list[np.ndarray], dict[str, str]]:
    names, traces, skipped = [], [], {}
    for index, path in enumerate(files):
        try:
            segments = read_ca_segments(path, split_chain_breaks=split, min_length=min_length)
        except StructureReadError as error:
            skipped[str(path)] = error.reason + (f" ({error.detail})" if error.detail else "")
            segments = []
        else:
            if not segments:
                skipped[str(path)] = f"no protein chain of >= {min_length} Cα"
        for segment in segments:
            names.append(segment.name)
            traces.append(segment.coords.astype(np.float64))
        if progress is not None:
            progress(stage, index + 1, len(files))
    return names, traces, skipped


def read_samples(folder: str | Path, *, progress: Progress | None = None) -> ChainSet:
    """Every chain of every PDB/mmCIF file (``.gz`` too) under ``folder``, chains kept whole.

    Raises:
        FileNotFoundError: no structure file found.
        DataError: files found but none holds a protein chain.
    """
    files = collect_structure_files(folder)
    stems = {(path.parent, structure_stem(path)) for path in files}
    fragments = {}
    for path in files:
        match = _FRAGMENT.fullmatch(structure_stem(path))
        if match and (path.parent, match["parent"]) in stems:
            fragments[str(path)] = f"fragment of {match['parent']} (saveFragments), not a sample"
    files = [path for path in files if str(path) not in fragments]
    names, traces, skipped = _read_files(
        files, split=False, min_length=1, stage="reading samples", progress=progress
    )
    skipped.update(fragments)
    if not traces:
        raise DataError(f"no readable protein chain in the {len(files)} files under {folder}")
    return ChainSet(source=str(folder), names=tuple(names), traces=tuple(traces), skipped=skipped)


def read_reference(
    path: str | Path | None, *, min_length: int = 30, progress: Progress | None = None
) -> ChainSet:
    """The reference set: a processed dataset ``.npz`` or a folder/file of real structures.

    Args:
        path: a ``.npz`` written by :mod:`genie.data.dataset_file`, a folder (or file, or glob)
            of PDB/mmCIF files, or None for the bundled TS50 dataset.
        min_length: unbroken segments shorter than this (residues) are dropped.

    Raises:
        FileNotFoundError: nothing at ``path``.
        DataError: no segment of ``min_length`` residues or more, or not a dataset file.
    """
    if path is None or str(path).lower().endswith(".npz"):
        npz = default_dataset_path() if path is None else Path(path)
        if not npz.is_file():
            raise FileNotFoundError(f"--reference: no dataset file {npz}")
        source = "bundled TS50 (genie/data/default/ts50_ca.npz)" if path is None else str(npz)
        names, traces, skipped = _dataset_segments(npz, min_length)
    else:
        files = collect_structure_files(path)
        source = str(path)
        names, traces, skipped = _read_files(
            files, split=True, min_length=min_length, stage="reading reference", progress=progress
        )
    if not traces:
        raise DataError(f"--reference {source}: no unbroken chain of >= {min_length} residues")
    return ChainSet(source=source, names=tuple(names), traces=tuple(traces), skipped=skipped)


def _dataset_segments(
    path: Path, min_length: int
) -> tuple[list[str], list[np.ndarray], dict[str, str]]:
    """Segments of a dataset file, split where its ``breaks`` flags mark a chain break."""
    arrays = load_dataset_file(path)
    names, traces, skipped = [], [], {}
    for index in range(len(arrays)):
        coords = arrays.segment(index).astype(np.float64)  # [n_i, 3]
        cuts = np.flatnonzero(arrays.segment_breaks(index))  # starts of unbroken pieces
        for piece, part in enumerate(np.split(coords, cuts)):
            name = f"{arrays.names[index]}" + (f"_{piece}" if cuts.size else "")
            if len(part) >= min_length:
                names.append(name)
                traces.append(part)
            else:
                skipped[name] = f"{len(part)} residues < {min_length}"
    return names, traces, skipped
