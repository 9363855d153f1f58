"""Long training items made of several real Cα segments joined end to end (artificial joins).

No real single chain longer than ~1,300 residues is available offline, so an item that must be
longer than its own segment is assembled from further real segments of the same dataset. The
local geometry inside every piece is real; the joins and the arrangement of the pieces are
artificial, and they are marked rather than disguised:

- no fake peptide bond: pieces are placed apart (below), never 3.8 Å end to start;
- ``breaks`` is True at the first residue of every appended piece;
- the residue index jumps by ``residue_gap`` at every join (the next piece starts ``residue_gap``
  after the previous piece's last residue; 1 would continue the numbering), so relative-position
  features clipped at ±k (``relativePositionK``) see the pieces as separate chains when
  ``residue_gap`` > k, as AlphaFold-Multimer does between chains.

Placement rule (no artificial clashes): each appended piece is rotated by a uniformly random
rotation and enclosed in its bounding sphere (centre = its Cα centroid, radius = its largest
centroid distance). From the centre of the previous piece, ``PLACEMENT_TRIES`` random directions
are tried; along each, the new centre goes to the nearest distance at which its sphere keeps
``clearance`` Å from the sphere of every piece placed so far; of these candidates the one closest
to the running centroid of the placed pieces wins (keeps the assembly compact). Every Cα of a piece
is therefore at least ``clearance`` Å from every Cα of every other piece, and each piece sits next
to its predecessor unless that spot is taken. With ``clearance`` ≥ 32 Å no pair of residues of
different pieces falls inside the cut-offs of the multi-scale distance loss (8/16/32 Å).

Randomness: everything (partner segments, crop of the last piece, rotations, directions) comes
from one ``np.random.Generator`` that the dataset seeds with ``(seed, epoch, segment, stream)``.

Notation: ``n`` residues of the item, ``P`` pieces; coordinates in Å.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genie.data.dataset_file import CaDatasetArrays

PLACEMENT_TRIES = 8  # random directions tried per appended piece
_EDGE = 1e-6  # Å beyond the exact touching distance, so rounding never lands inside a sphere


@dataclass(frozen=True, kw_only=True)
class Piece:
    """A window ``[start, stop)`` of segment ``segment`` (a global index into the arrays)."""

    segment: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def draw_pieces(
    *,
    first: int,
    pool: np.ndarray,
    lengths: np.ndarray,
    target_length: int,
    rng: np.random.Generator,
) -> list[Piece]:
    """The pieces of one concatenated item: the whole first segment, then segments drawn
    uniformly with replacement from ``pool`` until ``target_length`` residues are reached; the
    last one is cut to a random window of the residues still missing.

    Args:
        first: global index of the item's own segment (shorter than ``target_length``).
        pool: ``[m]`` global indices of the segments that may be appended (the dataset's own).
        lengths: ``[S]`` lengths of all segments (indexed by global index).
        target_length: residues of the item.
        rng: the item's random stream.

    Returns:
        Pieces whose lengths sum to exactly ``target_length``.
    """
    if len(pool) == 0:
        raise ValueError("cannot concatenate: the pool of segments is empty")
    first_length = int(lengths[first])
    if not 0 < first_length < target_length:
        raise ValueError(
            f"segment {first} has {first_length} residues; concatenation needs 0 < length < "
            f"target_length ({target_length})"
        )
    pool_lengths = lengths[pool]
    if pool_lengths.min() < 1:
        raise ValueError("cannot concatenate: the pool holds empty segments")
    mean = float(pool_lengths.mean())
    chosen: list[np.ndarray] = []
    missing = target_length - first_length
    while missing > 0:  # draws in blocks, usually one
        block = pool[rng.integers(0, len(pool), size=math.ceil(missing / mean) + 4)]
        total = np.cumsum(lengths[block])
        count = int(np.searchsorted(total, missing)) + 1  # first prefix with sum >= missing
        chosen.append(block[:count])
        missing -= int(total[min(count, len(block)) - 1])
    segments = np.concatenate(chosen)
    pieces = [Piece(segment=first, start=0, stop=first_length)]
    pieces += [Piece(segment=int(s), start=0, stop=int(lengths[s])) for s in segments]
    excess = sum(len(p) for p in pieces) - target_length  # >= 0, < length of the last piece
    if excess:
        last = pieces[-1]
        start = int(rng.integers(0, excess + 1))
        pieces[-1] = Piece(segment=last.segment, start=start, stop=start + len(last) - excess)
    return pieces


def random_rotations(rng: np.random.Generator, count: int) -> np.ndarray:
    """``[count, 3, 3]`` uniformly random proper rotations (normalised Gaussian quaternions)."""
    q = rng.normal(size=(count, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q.T
    rot = np.stack(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )  # [3, 3, count]
    return np.moveaxis(rot, -1, 0)


def _free_distances(
    origin: np.ndarray, directions: np.ndarray, centres: np.ndarray, reach: np.ndarray
) -> np.ndarray:
    """Nearest ``s >= 0`` along each ray ``origin + s·u`` outside every ball ``(centres, reach)``.

    Args:
        origin: ``[3]`` Å.
        directions: ``[d, 3]`` unit vectors.
        centres: ``[p, 3]`` Å, ball centres.
        reach: ``[p]`` Å, ball radii (forbidden distance of the new centre from each centre).

    Returns:
        ``[d]`` distances (Å).
    """
    rel = centres - origin  # [p, 3]
    along = directions @ rel.T  # [d, p]
    disc = along**2 - ((rel**2).sum(-1) - reach**2)  # [d, p]
    cols = np.flatnonzero((disc > 0).any(axis=0))  # balls that some ray crosses
    if cols.size == 0:
        return np.zeros(len(directions))
    along, disc = along[:, cols], disc[:, cols]  # [d, c]
    hit = disc > 0
    root = np.sqrt(np.maximum(disc, 0.0))
    lo, hi = along - root, along + root + _EDGE  # [d, c] forbidden open intervals
    candidates = np.concatenate([np.zeros((len(directions), 1)), np.where(hit, hi, 0.0)], 1)
    inside = hit[:, None, :] & (candidates[:, :, None] > lo[:, None, :])
    inside &= candidates[:, :, None] < hi[:, None, :]  # [d, c + 1, c]
    free = ~inside.any(axis=-1) & (candidates >= 0)  # [d, c + 1]
    return np.where(free, candidates, np.inf).min(axis=-1)  # the candidate beyond all is free


def place_pieces(
    pieces: Sequence[np.ndarray], *, clearance: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Rigidly move pieces so that they keep ``clearance`` from each other (module docstring).

    Args:
        pieces: ``P`` coordinate arrays ``[n_p, 3]`` (Å); the first stays unrotated.
        clearance: minimum Cα-Cα distance between different pieces (Å), >= 0.
        rng: random stream (rotations and directions).

    Returns:
        ``P`` arrays ``[n_p, 3]`` float64 (Å), each a rigid motion of its input.
    """
    if clearance < 0:
        raise ValueError(f"clearance must be >= 0 Å, got {clearance}")
    count = len(pieces)
    rotations = random_rotations(rng, count)  # [P, 3, 3]
    rotations[0] = np.eye(3)
    local, radii = [], np.zeros(count)
    for p, xyz in enumerate(pieces):
        xyz = np.asarray(xyz, dtype=np.float64)
        centred = (xyz - xyz.mean(axis=0)) @ rotations[p].T  # [n_p, 3]
        local.append(centred)
        radii[p] = np.sqrt((centred**2).sum(-1).max())
    centres = np.zeros((count, 3))
    weights = np.array([len(x) for x in local], dtype=np.float64)  # [P]
    for p in range(1, count):
        directions = rng.normal(size=(PLACEMENT_TRIES, 3))
        directions /= np.linalg.norm(directions, axis=-1, keepdims=True)  # [d, 3]
        reach = radii[:p] + radii[p] + clearance  # [p]
        distance = _free_distances(centres[p - 1], directions, centres[:p], reach)  # [d]
        options = centres[p - 1] + distance[:, None] * directions  # [d, 3]
        middle = weights[:p] @ centres[:p] / weights[:p].sum()  # [3]
        centres[p] = options[np.argmin(((options - middle) ** 2).sum(-1))]
    return [x + c for x, c in zip(local, centres, strict=True)]


def concatenate_pieces(
    arrays: CaDatasetArrays,
    pieces: Sequence[Piece],
    *,
    residue_gap: int,
    clearance: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assemble pieces into one trace with the joins marked.

    Args:
        arrays: the dataset's segments.
        pieces: from :func:`draw_pieces`.
        residue_gap: residue-index step across a join (>= 1).
        clearance: minimum distance between pieces (Å).
        rng: random stream (placement).

    Returns:
        ``coords`` float64 ``[n, 3]`` (Å, centred on the Cα centroid), ``residue_index`` int64
        ``[n]`` (starts at 0), ``breaks`` bool ``[n]`` (True at every join and at the segments'
        own breaks inside a piece; False at residue 0).
    """
    if residue_gap < 1:
        raise ValueError(f"residue_gap must be >= 1, got {residue_gap}")
    coords = [arrays.segment(p.segment)[p.start : p.stop] for p in pieces]
    xyz = np.concatenate(place_pieces(coords, clearance=clearance, rng=rng))  # [n, 3]
    xyz -= xyz.mean(axis=0, keepdims=True)
    sizes = np.array([len(p) for p in pieces])  # [P]
    piece_of = np.repeat(np.arange(len(pieces)), sizes)  # [n]
    residue_index = np.arange(len(xyz)) + piece_of * (residue_gap - 1)  # [n]
    breaks = np.concatenate([arrays.segment_breaks(p.segment)[p.start : p.stop] for p in pieces])
    starts = np.cumsum(sizes) - sizes  # [P]
    breaks[starts] = True
    breaks[0] = False
    return xyz, residue_index.astype(np.int64), breaks


def joined_name(names: Sequence[str]) -> str:
    """Item name: ``a+b+c`` for up to 4 pieces, else ``a+<P-1> more``."""
    if len(names) <= 4:
        return "+".join(names)
    return f"{names[0]}+{len(names) - 1} more"
