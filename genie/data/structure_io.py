"""Reading Cα traces from PDB/mmCIF files and writing Cα-only structures.

Notation: ``n`` residues of one segment; coordinates in Å.

Reading (Biopython, first model only): protein residues are the standard amino acids, modified
amino acids that Biopython knows (``is_aa(res, standard=False)``: MSE, SEP, ...), ``UNK``, and any
other non-water residue with backbone atoms N, CA and C. Waters, ions (calcium is a residue *named*
CA), ligands and nucleic acids are ignored. Alternate locations: Biopython's default for atoms
(highest occupancy, first on ties); for residue-level alternatives (point mutations) the residue
whose CA has the highest occupancy. Insertion codes are separate residues in file order. Residues
without a CA are skipped. A chain break is a consecutive Cα distance above
``chain_break_distance``; chains are split there into unbroken segments (or kept whole with a
``breaks`` mask).

Speed: only the records that can matter are handed to Biopython (:mod:`genie.data.ca_records`),
5-15x faster than a full parse. A side effect for PDB: atom records after a CONECT record in
mid-file are read too (Biopython alone stops at the first CONECT; bm5_unbound/3BP8_r_u.pdb.gz
holds a second copy of its chain after one).

Writing: one CA atom per residue, PDB for up to 9999 residues, mmCIF beyond (PDB columns cannot
hold more), written atomically.
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from Bio.Data.PDBData import protein_letters_3to1, protein_letters_3to1_extended
from Bio.PDB import MMCIFParser, PDBParser

from genie.data.atomic import atomic_open
from genie.data.ca_records import KNOWN_RESIDUES, cif_ca_records, pdb_ca_records

if TYPE_CHECKING:  # torch tensors are accepted, but torch is not imported for reading files
    import torch

PDB_SUFFIXES = (".pdb", ".ent")
CIF_SUFFIXES = (".cif", ".mmcif")
PDB_MAX_RESIDUES = 9999  # residue number columns 23-26
PDB_COORD_RANGE = (-999.999, 9999.999)  # %8.3f columns
_PDB_BFACTOR_RANGE = (-99.99, 999.99)  # %6.2f columns


class StructureReadError(ValueError):
    """A structure file that cannot be read; ``reason`` is a short category for counting."""

    def __init__(self, path: str | Path, reason: str, detail: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        message = f"{self.path}: {reason}" + (f" ({detail})" if detail else "")
        super().__init__(message)

    def __reduce__(self):  # picklable across process pools despite the custom constructor
        return (type(self), (self.path, self.reason, self.detail))


@dataclass(frozen=True, eq=False)
class CaSegment:
    """One Cα trace read from a structure file.

    Attributes:
        name: ``<file stem>_<chain id>_<k>``, k = index of the unbroken piece within the chain
            (0 when chains are not split); a blank chain id is written ``-``.
        coords: ``[n, 3]`` float32 Cα coordinates in Å.
        sequence: one letter per residue; modified residues take their parent's letter where
            Biopython knows it (MSE -> M), ``X`` otherwise.
        breaks: ``[n]`` bool, True at i when ``|x_i - x_{i-1}|`` > the break distance (all False
            for split segments).
    """

    name: str
    coords: np.ndarray
    sequence: str
    breaks: np.ndarray

    def __len__(self) -> int:
        return int(self.coords.shape[0])


def structure_format(path: str | Path) -> str | None:
    """``"pdb"``, ``"cif"`` or None from the file name (``.gz`` ignored), case-insensitive."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(PDB_SUFFIXES):
        return "pdb"
    if name.endswith(CIF_SUFFIXES):
        return "cif"
    return None


def structure_stem(path: str | Path) -> str:
    """File name without ``.gz`` and the structure suffix: ``1abc.cif.gz`` -> ``1abc``."""
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    lower = name.lower()
    for suffix in PDB_SUFFIXES + CIF_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _sniff_format(path: Path) -> str:
    with _open_text(path) as handle:
        head = handle.read(65536)
    if re.search(r"^data_", head, flags=re.MULTILINE):
        return "cif"
    if re.search(r"^(ATOM  |HETATM)", head, flags=re.MULTILINE):
        return "pdb"
    raise StructureReadError(path, "unknown format", "no PDB/mmCIF suffix and no records found")


def _first_model(path: Path, fmt: str):
    """The first model, or None when the file has atoms but none that can be a Cα."""
    with _open_text(path) as handle:
        text = handle.read()
    if fmt == "pdb":
        filtered = pdb_ca_records(text.splitlines(keepends=True))
        parser = PDBParser(QUIET=True)
    else:
        filtered = cif_ca_records(text)
        parser = MMCIFParser(QUIET=True)
    if filtered is not None:
        text, atoms = filtered
        if atoms == 0:
            raise StructureReadError(path, "no atoms", "no atom records")
        if not text:
            return None
    structure = parser.get_structure(structure_stem(path), io.StringIO(text))
    model = next(iter(structure), None)
    if model is None:
        raise StructureReadError(path, "no atoms", "no model with atom records")
    return model


def _select_residue(residue):
    """For residue-level alternatives, the alternative whose CA has the highest occupancy."""
    if residue.is_disordered() != 2:
        return residue
    best, best_occupancy = None, -np.inf
    for candidate in residue.disordered_get_list():
        occupancy = candidate["CA"].get_occupancy() if "CA" in candidate else -1.0
        if occupancy > best_occupancy:
            best, best_occupancy = candidate, occupancy
    return best


def _is_protein_residue(residue) -> bool:
    if residue.id[0] == "W":
        return False
    if residue.get_resname().strip().upper() in KNOWN_RESIDUES:
        return True
    return "N" in residue and "CA" in residue and "C" in residue


def _one_letter(residue) -> str:
    name = residue.get_resname().strip().upper()
    letter = protein_letters_3to1.get(name) or protein_letters_3to1_extended.get(name, "X")
    return letter if len(letter) == 1 and letter.isalpha() else "X"


def read_ca_segments(
    path: str | Path,
    *,
    chain_break_distance: float = 4.2,
    split_chain_breaks: bool = True,
    min_length: int = 1,
) -> list[CaSegment]:
    """Read the protein Cα traces of the first model of a structure file.

    Args:
        path: ``.pdb``/``.ent``/``.cif``/``.mmcif``, optionally ``.gz``; other names are sniffed.
        chain_break_distance: consecutive Cα farther apart than this (Å) are a chain break.
        split_chain_breaks: split chains at breaks into unbroken segments; otherwise one segment
            per chain with the ``breaks`` mask set.
        min_length: drop segments with fewer residues.

    Returns:
        Segments in file order (possibly empty when the file holds no protein Cα).

    Raises:
        StructureReadError: missing, undecodable, unparsable or atom-less file, or non-finite
            coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise StructureReadError(path, "missing file")
    try:
        fmt = structure_format(path) or _sniff_format(path)
        model = _first_model(path, fmt)
    except StructureReadError:
        raise
    except Exception as error:  # Biopython, gzip and decoding raise many unrelated types
        raise StructureReadError(path, "parse error", f"{type(error).__name__}: {error}") from error
    if model is None:
        return []

    stem = structure_stem(path)
    segments: list[CaSegment] = []
    for chain in model:
        coords, letters = [], []
        for residue in chain:
            residue = _select_residue(residue)
            if residue is None or not _is_protein_residue(residue) or "CA" not in residue:
                continue
            coords.append(residue["CA"].coord)
            letters.append(_one_letter(residue))
        if not coords:
            continue
        xyz = np.asarray(coords, dtype=np.float64)  # [n, 3]
        if not np.isfinite(xyz).all():
            raise StructureReadError(path, "non-finite coordinates", f"chain {chain.id!r}")
        breaks = np.zeros(len(xyz), dtype=bool)  # [n]
        breaks[1:] = np.linalg.norm(np.diff(xyz, axis=0), axis=-1) > chain_break_distance
        chain_label = chain.id.strip() or "-"
        sequence = "".join(letters)
        if split_chain_breaks:
            bounds = [0, *np.flatnonzero(breaks).tolist(), len(xyz)]
            pieces = [(k, bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
        else:
            pieces = [(0, 0, len(xyz))]
        for k, start, stop in pieces:
            if stop - start < min_length:
                continue
            piece_breaks = breaks[start:stop].copy()
            piece_breaks[0] = False
            segments.append(
                CaSegment(
                    name=f"{stem}_{chain_label}_{k}",
                    coords=xyz[start:stop].astype(np.float32),
                    sequence=sequence[start:stop],
                    breaks=piece_breaks,
                )
            )
    return segments


def _as_float64(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on a GPU or requiring grad
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _as_coords(coords: np.ndarray | torch.Tensor) -> np.ndarray:
    xyz = _as_float64(coords)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] == 0:
        raise ValueError(f"coords must have shape [n, 3] with n >= 1, got {list(xyz.shape)}")
    if not np.isfinite(xyz).all():
        raise ValueError("coords contain NaN or Inf")
    return xyz


def _fits_pdb(xyz: np.ndarray) -> bool:
    low, high = PDB_COORD_RANGE
    return xyz.shape[0] <= PDB_MAX_RESIDUES and xyz.min() >= low and xyz.max() <= high


def _pdb_text(xyz: np.ndarray, b: np.ndarray, chain_id: str, residue_name: str) -> str:
    lines = [
        f"ATOM  {i + 1:5d}  CA  {residue_name:>3s} {chain_id}{i + 1:4d}    "
        f"{x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{bf:6.2f}           C  "
        for i, ((x, y, z), bf) in enumerate(zip(xyz.tolist(), b.tolist(), strict=True))
    ]
    n = xyz.shape[0]
    lines.append(f"TER   {n + 1:5d}      {residue_name:>3s} {chain_id}{n:4d}")
    lines.append("END")
    return "\n".join(lines) + "\n"


_CIF_FIELDS = (
    "group_PDB",
    "id",
    "type_symbol",
    "label_atom_id",
    "label_alt_id",
    "label_comp_id",
    "label_asym_id",
    "label_entity_id",
    "label_seq_id",
    "pdbx_PDB_ins_code",
    "Cartn_x",
    "Cartn_y",
    "Cartn_z",
    "occupancy",
    "B_iso_or_equiv",
    "auth_seq_id",
    "auth_asym_id",
    "pdbx_PDB_model_num",
)


def _cif_text(xyz: np.ndarray, b: np.ndarray, chain_id: str, residue_name: str, block: str) -> str:
    header = [f"data_{block}", "#", "loop_", *(f"_atom_site.{field}" for field in _CIF_FIELDS)]
    rows = [
        f"ATOM {i + 1} C CA . {residue_name} {chain_id} 1 {i + 1} ? "
        f"{x:.3f} {y:.3f} {z:.3f} 1.00 {bf:.2f} {i + 1} {chain_id} 1"
        for i, ((x, y, z), bf) in enumerate(zip(xyz.tolist(), b.tolist(), strict=True))
    ]
    return "\n".join([*header, *rows, "#"]) + "\n"


def write_ca_structure(
    path: str | Path,
    coords: np.ndarray | torch.Tensor,
    *,
    fmt: str = "auto",
    chain_id: str = "A",
    residue_name: str = "GLY",
    b_factors: np.ndarray | torch.Tensor | None = None,
) -> Path:
    """Write a Cα-only structure (one CA atom per residue, residues numbered 1..n), atomically.

    Args:
        path: destination; with ``fmt="auto"`` its suffix is replaced when it disagrees with the
            chosen format (``.pdb``/``.ent`` vs ``.cif``/``.mmcif``).
        coords: ``[n, 3]`` Cα coordinates in Å.
        fmt: ``"pdb"``, ``"cif"`` or ``"auto"`` (PDB when n <= 9999 and the coordinates fit the
            PDB columns, mmCIF otherwise).
        chain_id: one character for PDB; letters/digits for mmCIF.
        residue_name: 1-3 letters/digits, e.g. ``GLY``.
        b_factors: optional ``[n]`` values for the B-factor column (default 0).

    Returns:
        The path written (suffix possibly changed).

    Raises:
        ValueError: wrong shape, NaN/Inf, values that the chosen format cannot hold, bad ids.
    """
    xyz = _as_coords(coords)  # [n, 3]
    n = xyz.shape[0]
    if b_factors is None:
        b = np.zeros(n)
    else:
        b = _as_float64(b_factors)
        if b.shape != (n,) or not np.isfinite(b).all():
            raise ValueError(f"b_factors must be finite with shape [{n}], got {list(b.shape)}")
    if not re.fullmatch(r"[A-Za-z0-9]{1,3}", residue_name):
        raise ValueError(f"residue_name must be 1-3 letters/digits, got {residue_name!r}")

    path = Path(path)
    if fmt == "auto":
        fmt = "pdb" if _fits_pdb(xyz) else "cif"
        suffixes = PDB_SUFFIXES if fmt == "pdb" else CIF_SUFFIXES
        if path.suffix.lower() not in suffixes:
            path = path.with_suffix(suffixes[0])
    if fmt == "pdb":
        if not _fits_pdb(xyz):
            raise ValueError(
                f"PDB format holds at most {PDB_MAX_RESIDUES} residues with coordinates in "
                f"{PDB_COORD_RANGE} Å; got n={n}, range [{xyz.min():.1f}, {xyz.max():.1f}]: "
                "use fmt='cif' or 'auto'"
            )
        if b.min() < _PDB_BFACTOR_RANGE[0] or b.max() > _PDB_BFACTOR_RANGE[1]:
            raise ValueError(f"PDB B-factor columns hold values in {_PDB_BFACTOR_RANGE}")
        if len(chain_id) != 1 or chain_id.isspace():
            raise ValueError(f"PDB chain_id must be one non-blank character, got {chain_id!r}")
        text = _pdb_text(xyz, b, chain_id, residue_name.upper())
    elif fmt == "cif":
        if not re.fullmatch(r"[A-Za-z0-9]+", chain_id):
            raise ValueError(f"mmCIF chain_id must be letters/digits, got {chain_id!r}")
        block = re.sub(r"[^A-Za-z0-9_.-]", "_", structure_stem(path)) or "ca"
        text = _cif_text(xyz, b, chain_id, residue_name.upper(), block)
    else:
        raise ValueError(f"fmt must be 'pdb', 'cif' or 'auto', got {fmt!r}")

    with atomic_open(path) as handle:
        handle.write(text)
    return path
