"""Structural diversity: mean pairwise TM-score of a set of chains (TM-align via ``tmtools``).

TM-align is sequence-independent; chains are given a dummy all-alanine sequence. The score of a
pair is the mean of its two TM-scores (normalised by each chain's length), so it is symmetric.
Values near 1 mean the chains are the same fold (mode collapse); pairs of unrelated natural
proteins score about 0.2-0.35.

TM-align costs O(n²) and more per pair (≈0.05 s at n = 256, ≈0.4 s at 512, several seconds at
1,024 on one CPU core), so the work is capped: chains longer than ``max_length`` are left out,
at most ``max_pairs`` pairs are aligned (a seeded random subset), and no pair is started after
``time_budget_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from genie.eval.ca_geometry import as_trace
from genie.eval.optional import import_optional

MIN_TM_LENGTH = 3  # TM-align refuses shorter chains


def tm_score(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric TM-score of two Cα traces: the mean of TM-align's two normalisations.

    Args:
        a: ``[n_a, 3]`` Å, n_a >= 3.
        b: ``[n_b, 3]`` Å, n_b >= 3.

    Raises:
        MissingDependencyError: tmtools is not installed.
    """
    tmtools = import_optional("tmtools", package="tmtools", purpose="TM-score diversity")
    xa, xb = as_trace(a, name="a"), as_trace(b, name="b")
    if min(xa.shape[0], xb.shape[0]) < MIN_TM_LENGTH:
        raise ValueError(f"TM-align needs chains of >= {MIN_TM_LENGTH} residues")
    result = tmtools.tm_align(xa, xb, "A" * xa.shape[0], "A" * xb.shape[0])
    return 0.5 * (float(result.tm_norm_chain1) + float(result.tm_norm_chain2))


@dataclass(frozen=True, kw_only=True)
class DiversityResult:
    """Pairwise TM-scores of one set of chains.

    Attributes:
        scores: the TM-score of every aligned pair.
        possible_pairs: pairs among the chains short enough to align.
        skipped_long: chains left out for being longer than ``max_length``.
        stopped_by_time: True when the time budget cut the pairs short.
        seconds: time spent aligning.
    """

    scores: tuple[float, ...] = field(default_factory=tuple)
    possible_pairs: int = 0
    skipped_long: int = 0
    stopped_by_time: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready summary (mean and std are None when no pair was aligned)."""
        values = np.asarray(self.scores, dtype=np.float64)
        return {
            "mean_tm": float(values.mean()) if values.size else None,
            "std_tm": float(values.std()) if values.size else None,
            "pairs": int(values.size),
            "possible_pairs": self.possible_pairs,
            "skipped_long_chains": self.skipped_long,
            "stopped_by_time": self.stopped_by_time,
            "seconds": round(self.seconds, 3),
        }


def pairwise_tm_diversity(
    traces: Sequence[np.ndarray],
    *,
    max_length: int,
    max_pairs: int,
    time_budget_s: float,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DiversityResult:
    """TM-scores of pairs of chains, within the caps described in the module docstring.

    Args:
        traces: chains ``[n_i, 3]`` (Å).
        max_length: chains with more residues are left out.
        max_pairs: at most this many pairs (0: none).
        time_budget_s: no new pair is started once this many seconds have passed.
        seed: seed of the random pair subset.
        progress: called with (pairs done, pairs planned) after each pair.
        clock: seconds, monotonic (a parameter so tests can control time).
    """
    eligible = [i for i, x in enumerate(traces) if MIN_TM_LENGTH <= len(x) <= max_length]
    skipped_long = sum(1 for x in traces if len(x) > max_length)
    k = len(eligible)
    possible = k * (k - 1) // 2
    if possible == 0 or max_pairs == 0:
        return DiversityResult(possible_pairs=possible, skipped_long=skipped_long)
    first, second = np.triu_indices(k, 1)  # [possible] each
    if possible > max_pairs:
        chosen = np.sort(np.random.default_rng(seed).choice(possible, max_pairs, replace=False))
        first, second = first[chosen], second[chosen]
    scores: list[float] = []
    stopped = False
    start = clock()
    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        if scores and clock() - start >= time_budget_s:
            stopped = True
            break
        scores.append(tm_score(traces[eligible[a]], traces[eligible[b]]))
        if progress is not None:
            progress(len(scores), len(first))
    return DiversityResult(
        scores=tuple(scores),
        possible_pairs=possible,
        skipped_long=skipped_long,
        stopped_by_time=stopped,
        seconds=clock() - start,
    )
