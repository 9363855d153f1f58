"""Evaluation settings and length buckets.

Length buckets are given by their upper edges ``e_1 < e_2 < ... < e_k`` (residues): bucket 0
holds lengths ``1..e_1``, bucket m lengths ``e_m + 1..e_{m+1}``, and the last bucket every length
above ``e_k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)


@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """Everything that changes an evaluation's figures.

    Attributes:
        buckets: increasing upper edges of the length buckets (residues).
        max_tm_length: chains longer than this (residues) are left out of the TM-score diversity
            (TM-align costs O(n²) and more); all other metrics run at any length.
        max_tm_pairs: at most this many chain pairs are aligned per bucket (a random subset,
            drawn with ``seed``, when a bucket has more pairs).
        tm_time_budget_s: no new pair of a bucket is started once its alignments took this long
            (s); the pairs done so far are reported.
        clash_distance: two Cα closer than this (Å) clash...
        clash_min_separation: ...when they are at least this many residues apart in sequence.
        bond_range: consecutive Cα distances outside ``[low, high]`` (Å) count as outliers.
        reference_min_length: reference segments shorter than this (residues) are dropped: chain
            fragments between gaps of real structures would distort the Rg fit.
        seed: random seed of the TM pair subset.
    """

    buckets: tuple[int, ...] = DEFAULT_BUCKETS
    max_tm_length: int = 1024
    max_tm_pairs: int = 50
    tm_time_budget_s: float = 60.0
    clash_distance: float = 3.0
    clash_min_separation: int = 3
    bond_range: tuple[float, float] = (3.6, 4.0)
    reference_min_length: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        buckets = tuple(int(edge) for edge in self.buckets)
        if (
            not buckets
            or buckets[0] < 1
            or any(b <= a for a, b in zip(buckets[:-1], buckets[1:], strict=True))
        ):
            raise ValueError(
                f"buckets must be strictly increasing positive lengths, got {list(self.buckets)}"
            )
        object.__setattr__(self, "buckets", buckets)
        bond_range = tuple(float(v) for v in self.bond_range)
        if len(bond_range) != 2 or not 0 < bond_range[0] < bond_range[1]:
            raise ValueError(
                f"bond_range must be (low, high) with 0 < low < high Å, got {bond_range}"
            )
        object.__setattr__(self, "bond_range", bond_range)
        if self.max_tm_length < 3:
            raise ValueError(f"max_tm_length must be >= 3 residues, got {self.max_tm_length}")
        if self.max_tm_pairs < 0:
            raise ValueError(
                f"max_tm_pairs must be >= 0 (0 skips diversity), got {self.max_tm_pairs}"
            )
        if not self.tm_time_budget_s > 0:
            raise ValueError(f"tm_time_budget_s must be > 0 s, got {self.tm_time_budget_s}")
        if not self.clash_distance > 0:
            raise ValueError(f"clash_distance must be > 0 Å, got {self.clash_distance}")
        if self.clash_min_separation < 1:
            raise ValueError(
                f"clash_min_separation must be >= 1 residue, got {self.clash_min_separation}"
            )
        if self.reference_min_length < 1:
            raise ValueError(
                f"reference_min_length must be >= 1 residue, got {self.reference_min_length}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def parse_buckets(text: str) -> tuple[int, ...]:
    """``"64,128,256"`` -> ``(64, 128, 256)``; the ``--buckets`` option of the command line.

    Raises:
        ValueError: an entry that is not a positive integer, or edges that do not increase.
    """
    try:
        edges = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"--buckets must be comma-separated integers, got {text!r}") from error
    EvalSettings(buckets=edges)  # validates
    return edges


def bucket_index(length: int, buckets: Sequence[int]) -> int:
    """Index of the bucket that holds a chain of ``length`` residues (0..len(buckets))."""
    for index, edge in enumerate(buckets):
        if length <= edge:
            return index
    return len(buckets)


def bucket_bounds(index: int, buckets: Sequence[int]) -> tuple[int, int | None]:
    """``(min_length, max_length)`` of bucket ``index``; max is None for the open last bucket."""
    low = 1 if index == 0 else buckets[index - 1] + 1
    high = buckets[index] if index < len(buckets) else None
    return low, high


def bucket_label(index: int, buckets: Sequence[int]) -> str:
    """``"65-128"``; ``"8193+"`` for the open last bucket."""
    low, high = bucket_bounds(index, buckets)
    return f"{low}+" if high is None else f"{low}-{high}"
