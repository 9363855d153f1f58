"""Steric clashes of a Cα trace, found with a uniform grid in linear memory.

A clash is a pair of residues (i, j) with ``j - i >= min_separation`` whose Cα are closer than
``distance``. Real proteins have essentially none at 3 Å with ``min_separation = 3``: Cα of
residues i and i+2 can legitimately come close (tight turns), non-bonded Cα rarely come within
~3.8 Å.

Search: space is cut into cubes of side ``distance``; only residues in the same or one of the
26 neighbouring cubes can clash. Residues are sorted by cube, and for each residue and each of
the 27 cubes the slice of candidates is found by binary search. Candidates are expanded and
checked in chunks of at most ``max_candidates`` pairs (more only when one residue alone has more
candidates), so memory is O(n + max_candidates) whatever the geometry, and time is O(n) for
protein-like densities (a trace collapsed into one cube degrades gracefully to O(n²) time, still
in bounded memory).
"""

from __future__ import annotations

import numpy as np

from genie.eval.ca_geometry import as_trace

_OFFSETS = np.stack(
    np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij"), axis=-1
).reshape(27, 3)  # [27, 3] neighbouring cubes


def count_clashes(
    coords: np.ndarray,
    *,
    distance: float = 3.0,
    min_separation: int = 3,
    max_candidates: int = 1 << 20,
) -> int:
    """Number of clashing residue pairs of one chain (each unordered pair counted once).

    Args:
        coords: ``[n, 3]`` Cα coordinates (Å).
        distance: pairs closer than this (Å) clash.
        min_separation: only pairs with ``|i - j| >= min_separation`` are counted.
        max_candidates: candidate pairs checked at once (memory bound; results do not depend
            on it).

    Returns:
        The number of pairs ``i < j`` with ``j - i >= min_separation`` and
        ``|x_i - x_j| < distance``.
    """
    if not distance > 0:
        raise ValueError(f"distance must be > 0 Å, got {distance}")
    if min_separation < 1:
        raise ValueError(f"min_separation must be >= 1, got {min_separation}")
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
    xyz = as_trace(coords)  # [n, 3]
    n = xyz.shape[0]
    if n <= min_separation:
        return 0

    cube = np.floor((xyz - xyz.min(axis=0)) / distance).astype(np.int64) + 1  # [n, 3], >= 1
    extent = cube.max(axis=0) + 2  # cubes per axis, with a free layer on both sides
    strides = np.array([extent[1] * extent[2], extent[2], 1], dtype=np.int64)
    # A linear key: key(c + o) = key(c) + key(o). Should it wrap around int64 for absurdly
    # spread coordinates, unrelated cubes may share a key; that only adds candidates that the
    # exact distance test below rejects, it never loses a neighbour.
    key = cube @ strides  # [n]
    order = np.argsort(key, kind="stable")  # [n]
    sorted_key = key[order]  # [n]
    target = key[:, None] + (_OFFSETS @ strides)[None, :]  # [n, 27]
    start = np.searchsorted(sorted_key, target, side="left")  # [n, 27]
    stop = np.searchsorted(sorted_key, target, side="right")  # [n, 27]
    per_residue = (stop - start).sum(axis=1)  # [n] candidates of each residue

    limit = distance * distance
    clashes = 0
    first = 0
    cumulative = np.cumsum(per_residue)  # [n]
    while first < n:
        done = cumulative[first - 1] if first > 0 else 0
        # the largest block of residues whose candidates fit, at least one residue
        last = max(int(np.searchsorted(cumulative, done + max_candidates, side="right")), first + 1)
        clashes += _count_block(
            xyz, order, start[first:last], stop[first:last], first, limit, min_separation
        )
        first = last
    return clashes


def _count_block(
    xyz: np.ndarray,
    order: np.ndarray,
    start: np.ndarray,
    stop: np.ndarray,
    first: int,
    limit: float,
    min_separation: int,
) -> int:
    """Clashes between residues ``first .. first + len(start) - 1`` and their candidates.

    ``start``/``stop`` ``[r, 27]`` delimit each residue's candidates in ``order``.
    """
    counts = (stop - start).ravel()  # [r * 27]
    total = int(counts.sum())
    if total == 0:
        return 0
    rows = np.repeat(np.arange(first, first + start.shape[0]), 27)  # [r * 27] residue of a slice
    group_start = np.cumsum(counts) - counts  # [r * 27] position of each slice in the output
    position = np.arange(total) - np.repeat(group_start - start.ravel(), counts)  # [total]
    i = np.repeat(rows, counts)  # [total]
    j = order[position]  # [total]
    keep = j - i >= min_separation  # each unordered pair once, near neighbours excluded
    i, j = i[keep], j[keep]
    delta = xyz[i] - xyz[j]  # [pairs, 3]
    return int(np.count_nonzero(np.einsum("pc,pc->p", delta, delta) < limit))
