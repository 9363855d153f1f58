"""The input chains of the step benchmark: synthetic Cα traces, crops of real chains, batches.

By default a batch holds seeded, centred, protein-like Cα traces (helix, strand and coil segments
grown from Cα virtual bond angles and dihedrals) with exactly 3.8 Å between consecutive residues.
With a processed dataset npz (``coords`` [N, 3] float32, ``offsets`` [S + 1] int64) it holds
random length-L windows of real chains; when L is longer than every chain, random chains are
joined into one trace with 3.8 Å artificial joins, and the joins are counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

CA_CA_DISTANCE = 3.8  # Å, consecutive Cα-Cα distance of a trans peptide

# Cα-trace internal coordinates (virtual bond angle at residue i, virtual dihedral), in degrees.
_HELIX = (91.0, 50.0)
_STRAND = (120.0, -170.0)


def _unit(v: np.ndarray) -> np.ndarray:
    """Return ``v`` scaled to unit length."""
    return v / np.linalg.norm(v)


def _place_next(a: np.ndarray, b: np.ndarray, c: np.ndarray, angle: float, dihedral: float):
    """Place the atom after ``a, b, c`` (NeRF).

    Args:
        a, b, c: [3] the three previous positions (Å).
        angle: angle b-c-d in radians.
        dihedral: dihedral a-b-c-d in radians.

    Returns:
        [3] the new position d with |d - c| = 3.8 Å.
    """
    bc = _unit(c - b)
    n = _unit(np.cross(b - a, bc))
    m = np.cross(n, bc)
    r = CA_CA_DISTANCE
    return (
        c
        - r * math.cos(angle) * bc
        + r * math.sin(angle) * math.cos(dihedral) * m
        + r * math.sin(angle) * math.sin(dihedral) * n
    )


def _internal_coordinates(length: int, rng: np.random.Generator) -> np.ndarray:
    """Draw protein-like (bond angle, dihedral) pairs, in radians, for a Cα trace.

    The trace alternates helices (6-18 residues), strands (4-10) and coils (3-8) with a few degrees
    of noise; coil angles are drawn from 85-135°, so residues i and i+2 stay ≥ 5.1 Å apart.

    Returns:
        [length, 2] angles; row i places residue i (rows 0-2 are unused).
    """
    angles = np.empty((length, 2))
    i = 0
    while i < length:
        kind = rng.choice(3, p=[0.4, 0.25, 0.35])
        if kind == 0:
            span, ideal = int(rng.integers(6, 19)), _HELIX
        elif kind == 1:
            span, ideal = int(rng.integers(4, 11)), _STRAND
        else:
            span, ideal = int(rng.integers(3, 9)), None
        span = min(span, length - i)
        if ideal is None:
            angles[i : i + span, 0] = rng.uniform(85.0, 135.0, span)
            angles[i : i + span, 1] = rng.uniform(-180.0, 180.0, span)
        else:
            angles[i : i + span] = np.asarray(ideal) + rng.normal(0.0, 4.0, (span, 2))
        i += span
    angles[:, 0] = np.clip(angles[:, 0], 85.0, 135.0)
    return np.deg2rad(angles)


def synthetic_trace(length: int, seed: int = 0) -> np.ndarray:
    """Build a seeded, centred, protein-like Cα trace with 3.8 Å steps.

    Helix, strand and coil segments are grown residue by residue from internal coordinates (an
    O(L) loop, run once per benchmark process).

    Args:
        length: number of residues L (≥ 1).
        seed: seed of the generator; the same seed gives the same trace.

    Returns:
        [L, 3] float32 coordinates in Å with zero mean.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    rng = np.random.default_rng(seed)
    ic = _internal_coordinates(length, rng)  # [L, 2]
    x = np.zeros((length, 3))
    if length > 1:
        x[1] = (CA_CA_DISTANCE, 0.0, 0.0)
    if length > 2:
        theta = ic[2, 0]
        x[2] = x[1] + CA_CA_DISTANCE * np.array([-math.cos(theta), math.sin(theta), 0.0])
    for i in range(3, length):
        x[i] = _place_next(x[i - 3], x[i - 2], x[i - 1], ic[i, 0], ic[i, 1])
    x -= x.mean(axis=0)
    return x.astype(np.float32)


def _rotation_between(v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Return the proper rotation [3, 3] that turns unit vector ``v`` into unit vector ``u``."""
    w = np.cross(v, u)
    s, c = np.linalg.norm(w), float(np.dot(v, u))
    if s < 1e-8:
        if c > 0:
            return np.eye(3)
        # Half turn about any axis perpendicular to v.
        helper = np.array([1.0, 0.0, 0.0]) if abs(v[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        a = _unit(np.cross(v, helper))
        return 2.0 * np.outer(a, a) - np.eye(3)
    k = w / s
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + s * kx + (1.0 - c) * (kx @ kx)


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    """Return a uniformly random unit vector [3]."""
    return _unit(rng.normal(size=3))


def join_chains(pieces: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Concatenate Cα traces into one, with a 3.8 Å artificial join between neighbours.

    Each next piece is moved rigidly so that it starts 3.8 Å beyond the end of the trace so far, in
    the direction pointing away from that trace's centroid, and is turned to grow in that direction
    (its first residue → its centroid), which keeps the pieces from piling onto each other.

    Args:
        pieces: traces [n_i, 3] in Å.
        rng: generator for the directions left undefined by one-residue traces.

    Returns:
        [sum n_i, 3] float64 trace; internal geometry of every piece is unchanged.
    """
    out = [np.asarray(pieces[0], dtype=np.float64)]
    total = out[0].sum(axis=0)
    count = len(out[0])
    for piece in pieces[1:]:
        piece = np.asarray(piece, dtype=np.float64)
        last = out[-1][-1]
        outward = last - total / count
        u = _unit(outward) if np.linalg.norm(outward) > 1e-6 else _random_unit(rng)
        along = piece.mean(axis=0) - piece[0]
        v = _unit(along) if np.linalg.norm(along) > 1e-6 else _random_unit(rng)
        rot = _rotation_between(v, u)
        moved = (piece - piece[0]) @ rot.T + last + CA_CA_DISTANCE * u
        out.append(moved)
        total = total + moved.sum(axis=0)
        count += len(moved)
    return np.concatenate(out, axis=0)


def load_chains(path: str | Path) -> list[np.ndarray]:
    """Read a processed dataset npz (``coords`` [N, 3] float32, ``offsets`` [S + 1] int64).

    Returns:
        The S chains, chain s being ``coords[offsets[s]:offsets[s + 1]]`` ([n_s, 3], Å).
    """
    with np.load(path) as data:
        coords = np.asarray(data["coords"], dtype=np.float32)
        offsets = np.asarray(data["offsets"], dtype=np.int64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"{path}: coords must be [N, 3], got {list(coords.shape)}")
    if (
        offsets.ndim != 1
        or len(offsets) < 2
        or offsets[0] != 0
        or offsets[-1] != len(coords)
        or np.any(np.diff(offsets) <= 0)
    ):
        raise ValueError(f"{path}: offsets must rise strictly from 0 to len(coords)")
    return [coords[offsets[s] : offsets[s + 1]] for s in range(len(offsets) - 1)]


def crop_chain(
    chains: Sequence[np.ndarray], length: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Take a random length-L window of a real chain, joining chains when none is long enough.

    Args:
        chains: traces [n_s, 3] in Å.
        length: window length L.
        rng: seeded generator.

    Returns:
        The centred [L, 3] float32 window and the number of artificial joins inside it.
    """
    sizes = np.array([len(c) for c in chains])
    long_enough = np.flatnonzero(sizes >= length)
    if len(long_enough) > 0:
        chain = chains[int(rng.choice(long_enough))]
        start = int(rng.integers(0, len(chain) - length + 1))
        window, joins = np.asarray(chain[start : start + length], dtype=np.float64), 0
    else:
        picked: list[np.ndarray] = []
        while sum(len(p) for p in picked) < length:
            picked.append(chains[int(rng.integers(len(chains)))])
        boundaries = np.cumsum([len(p) for p in picked])[:-1]  # first index of each later piece
        joined = join_chains(picked, rng)
        start = int(rng.integers(0, len(joined) - length + 1))
        window = joined[start : start + length]
        joins = int(np.sum((boundaries > start) & (boundaries < start + length)))
    window = window - window.mean(axis=0)
    return window.astype(np.float32), joins


def make_batch(
    length: int,
    batch_size: int,
    seed: int = 0,
    data: str | Path | None = None,
) -> tuple[dict[str, torch.Tensor], int]:
    """Build a benchmark batch of ``batch_size`` chains of exactly ``length`` residues.

    Args:
        length: residues per chain L.
        batch_size: chains b.
        seed: seed for the synthetic traces or for the choice of crops.
        data: processed dataset npz to crop real chains from; ``None`` for synthetic traces.

    Returns:
        The batch (``coords`` [b, L, 3] float32 Å, ``mask`` [b, L] float32, ``residue_index``
        [b, L] long, ``lengths`` [b] long) on the CPU, and the number of artificial joins in it.
    """
    if data is None:
        traces = [synthetic_trace(length, seed + i) for i in range(batch_size)]
        joins = 0
    else:
        chains = load_chains(data)
        rng = np.random.default_rng(seed)
        crops = [crop_chain(chains, length, rng) for _ in range(batch_size)]
        traces, joins = [c for c, _ in crops], sum(j for _, j in crops)
    coords = torch.from_numpy(np.stack(traces))  # [b, L, 3]
    batch = {
        "coords": coords,
        "mask": torch.ones(batch_size, length, dtype=torch.float32),
        "residue_index": torch.arange(length).expand(batch_size, length).clone(),
        "lengths": torch.full((batch_size,), length, dtype=torch.long),
    }
    return batch, joins
