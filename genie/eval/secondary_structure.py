"""Secondary structure of Cα traces by P-SEA, with biotite's implementation.

P-SEA (Labesse et al., 1997) assigns α-helix, β-strand or coil from Cα distances (i to i+2,
i+3, i+4), virtual bond angles and dihedrals only, so it applies to Cα-only backbones. We call
``biotite.structure.annotate_sse`` (optional dependency, the ``eval`` extra) on a one-chain
Cα-only atom array; chains of 5 residues or fewer are all coil.
"""

from __future__ import annotations

import numpy as np

from genie.eval.ca_geometry import as_trace
from genie.eval.optional import import_optional

SSE_CLASSES = ("helix", "strand", "coil")
_SYMBOL_CLASS = {"a": 0, "b": 1, "c": 2}  # biotite 1.x returns these one-letter symbols
_VALUE_CLASS = {1: 0, 2: 1, 0: 2}  # biotite >= 2 returns PSeaElement values (HELIX, STRAND, COIL)


def assign_sse(coords: np.ndarray) -> np.ndarray:
    """P-SEA class of every residue of one chain.

    Args:
        coords: ``[n, 3]`` Cα coordinates (Å).

    Returns:
        ``[n]`` int8: 0 helix, 1 strand, 2 coil (the order of :data:`SSE_CLASSES`).

    Raises:
        MissingDependencyError: biotite is not installed.
    """
    struc = import_optional(
        "biotite.structure", package="biotite", purpose="secondary structure (P-SEA)"
    )
    xyz = as_trace(coords)
    n = xyz.shape[0]
    atoms = struc.AtomArray(n)
    atoms.coord = xyz.astype(np.float32)
    atoms.chain_id[:] = "A"
    atoms.res_id[:] = np.arange(1, n + 1)
    atoms.res_name[:] = "GLY"
    atoms.atom_name[:] = "CA"
    atoms.element[:] = "C"
    atoms.hetero[:] = False
    raw = np.asarray(struc.annotate_sse(atoms))  # [n]
    if raw.dtype.kind in "US":
        table, keys = _SYMBOL_CLASS, raw.astype(str)
    else:
        table, keys = _VALUE_CLASS, raw.astype(np.int64)
    classes = np.full(n, -1, dtype=np.int8)  # [n]
    for key, index in table.items():
        classes[keys == key] = index
    if (classes < 0).any():
        unexpected = sorted(set(keys[classes < 0].tolist()))
        raise ValueError(f"biotite's annotate_sse returned unexpected classes {unexpected}")
    return classes


def sse_counts(classes: np.ndarray) -> np.ndarray:
    """``[3]`` int64 residues per class (helix, strand, coil) from :func:`assign_sse` output."""
    return np.bincount(np.asarray(classes, dtype=np.int64), minlength=len(SSE_CLASSES))
