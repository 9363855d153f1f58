"""The processed Cα dataset file (``.npz``) and its in-memory form, :class:`CaDatasetArrays`.

Notation: ``S`` segments, ``N`` residues in all (sum of segment lengths), ``n_i`` residues of
segment i; coordinates in Å.

File keys (format version 1; all arrays, no pickled objects):

- ``coords``: float32 ``[N, 3]``, segments concatenated;
- ``offsets``: int64 ``[S + 1]``, segment i is ``coords[offsets[i]:offsets[i + 1]]``;
- ``names``: str ``[S]``;
- ``sequence``: uint8 ``[N]``, ASCII one-letter codes aligned with ``coords`` (one flat array
  instead of ``S`` fixed-width strings, which numpy would pad to the longest segment);
- ``breaks``: bool ``[N]``, True where the Cα distance to the previous residue of the same
  segment exceeds the break distance (all False for split segments);
- ``metadata``: 0-d str, JSON (sources, filter parameters, counts, format version, provenance).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genie.data.atomic import atomic_open
from genie.data.structure_io import CaSegment
from genie.utils.errors import DataError

FORMAT_VERSION = 1
DEFAULT_DATASET_NAME = "ts50_ca.npz"
_KEYS = ("coords", "offsets", "names", "sequence", "breaks", "metadata")


@dataclass(frozen=True, eq=False)
class CaDatasetArrays:
    """All segments of a dataset as flat arrays.

    Attributes:
        coords: ``[N, 3]`` float32 Cα coordinates (Å).
        offsets: ``[S + 1]`` int64 segment boundaries into ``coords``.
        names: ``[S]`` segment names.
        sequences: ``S`` one-letter sequences.
        breaks: ``[N]`` bool chain-break flags.
        metadata: parsed JSON metadata.
    """

    coords: np.ndarray
    offsets: np.ndarray
    names: np.ndarray
    sequences: tuple[str, ...]
    breaks: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        offsets = self.offsets
        if self.coords.ndim != 2 or self.coords.shape[1] != 3:
            raise ValueError(f"coords must be [N, 3], got {list(self.coords.shape)}")
        if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0:
            raise ValueError("offsets must be a 1-d array starting at 0")
        if offsets[-1] != self.coords.shape[0] or np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must be non-decreasing and end at len(coords)")
        if len(self.names) != len(self) or len(self.sequences) != len(self):
            raise ValueError("names and sequences need one entry per segment")
        if self.breaks.shape != (self.coords.shape[0],):
            raise ValueError("breaks must be [N]")

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def lengths(self) -> np.ndarray:
        """``[S]`` int64 residues per segment."""
        return np.diff(self.offsets)

    @property
    def num_residues(self) -> int:
        return int(self.coords.shape[0])

    def segment(self, i: int) -> np.ndarray:
        """Coordinates ``[n_i, 3]`` (a view) of segment ``i``."""
        return self.coords[self.offsets[i] : self.offsets[i + 1]]

    def segment_breaks(self, i: int) -> np.ndarray:
        """Break flags ``[n_i]`` (a view) of segment ``i``."""
        return self.breaks[self.offsets[i] : self.offsets[i + 1]]


def arrays_from_segments(
    segments: Sequence[CaSegment], *, metadata: dict[str, Any] | None = None
) -> CaDatasetArrays:
    """Concatenate segments into a :class:`CaDatasetArrays`."""
    lengths = np.array([len(s) for s in segments], dtype=np.int64)
    offsets = np.zeros(len(segments) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if segments:
        coords = np.concatenate([s.coords for s in segments]).astype(np.float32)
        breaks = np.concatenate([s.breaks for s in segments]).astype(bool)
    else:
        coords, breaks = np.zeros((0, 3), np.float32), np.zeros(0, bool)
    return CaDatasetArrays(
        coords=coords,
        offsets=offsets,
        names=np.array([s.name for s in segments], dtype=str),
        sequences=tuple(s.sequence for s in segments),
        breaks=breaks,
        metadata=dict(metadata or {}),
    )


def save_dataset_file(
    path: str | Path, arrays: CaDatasetArrays, *, compressed: bool = False
) -> Path:
    """Write ``arrays`` to ``path`` atomically (format :data:`FORMAT_VERSION`).

    Args:
        path: destination ``.npz``.
        arrays: the dataset; ``metadata`` gets ``format_version`` added.
        compressed: ``np.savez_compressed`` (small bundled files) instead of ``np.savez``
            (fast-loading caches).

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    sequence = "".join(arrays.sequences)
    if not sequence.isascii():
        raise ValueError("sequences must be ASCII one-letter codes")
    metadata = {**arrays.metadata, "format_version": FORMAT_VERSION}
    payload = {
        "coords": np.ascontiguousarray(arrays.coords, dtype=np.float32),
        "offsets": np.asarray(arrays.offsets, dtype=np.int64),
        "names": np.asarray(arrays.names, dtype=str),
        "sequence": np.frombuffer(sequence.encode("ascii"), dtype=np.uint8),
        "breaks": np.asarray(arrays.breaks, dtype=bool),
        "metadata": np.array(json.dumps(metadata, sort_keys=True)),
    }
    save = np.savez_compressed if compressed else np.savez
    with atomic_open(path, binary=True) as handle:
        save(handle, **payload)
    return path


def read_dataset_metadata(path: str | Path) -> dict[str, Any]:
    """Only the JSON metadata of a dataset file (cheap: other arrays are not read)."""
    with np.load(Path(path), allow_pickle=False) as data:
        return json.loads(str(data["metadata"]))


def load_dataset_file(path: str | Path) -> CaDatasetArrays:
    """Load a dataset file written by :func:`save_dataset_file`, every array read and checked.

    Raises:
        FileNotFoundError, PermissionError: the file is missing or cannot be opened.
        DataError: anything else that keeps it from being a dataset of this format: not an
            ``.npz`` archive (garbage, a pickle, a single array), truncated or damaged (a zip
            CRC error), missing keys, unreadable or non-JSON metadata, another format version,
            pickled object arrays, inconsistent arrays.
    """
    path = Path(path)
    try:
        return _load(path)
    except (FileNotFoundError, PermissionError, DataError, MemoryError):
        raise
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as error:
        reason = str(error).split(". ")[0].strip()  # numpy's first sentence (not its advice)
        raise DataError(
            f"{path} is not a Cα dataset file (an .npz of python -m genie.data.preprocess) or "
            f"is damaged: {type(error).__name__}: {reason}"
        ) from error


def _load(path: Path) -> CaDatasetArrays:
    not_dataset = f"{path} is not a Cα dataset file (an .npz of python -m genie.data.preprocess)"
    opened = np.load(path, allow_pickle=False)
    if not isinstance(opened, np.lib.npyio.NpzFile):  # a single .npy array
        raise DataError(f"{not_dataset}: one array, not an archive")
    with opened as data:
        missing = [key for key in _KEYS if key not in data.files]
        if missing:
            raise DataError(f"{path} is not a Cα dataset file: missing {missing}")
        metadata = json.loads(str(data["metadata"]))
        if not isinstance(metadata, dict):
            raise DataError(f"{not_dataset}: its metadata is not a JSON object")
        version = metadata.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(
                f"{path} has format version {version}, this code reads {FORMAT_VERSION}: rebuild it"
            )
        offsets = data["offsets"].astype(np.int64)
        sequence = data["sequence"].tobytes().decode("ascii")
        bounds = offsets.tolist()
        return CaDatasetArrays(
            coords=data["coords"].astype(np.float32, copy=False),
            offsets=offsets,
            names=data["names"],
            sequences=tuple(sequence[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)),
            breaks=data["breaks"].astype(bool, copy=False),
            metadata=metadata,
        )


def default_dataset_path() -> Path:
    """The bundled TS50 Cα dataset (``genie/data/default/ts50_ca.npz``; see its README)."""
    path = Path(__file__).resolve().parent / "default" / DEFAULT_DATASET_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled dataset {path} is missing: install the package with its package data "
            "(genie.data: default/*.npz) or run scripts/build_default_dataset.py"
        )
    return path
