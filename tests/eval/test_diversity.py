"""TM-score diversity: self-alignment, caps on length, pairs and time."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from genie.data.dataset_file import default_dataset_path, load_dataset_file
from genie.eval.diversity import pairwise_tm_diversity, tm_score
from genie.eval.optional import MissingDependencyError


@pytest.fixture(scope="module")
def chains() -> list[np.ndarray]:
    data = load_dataset_file(default_dataset_path())
    return [data.segment(i).astype(np.float64) for i in range(6)]


def test_rotated_copy_scores_one(chains):
    x = chains[0]
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    q = q if np.linalg.det(q) > 0 else -q
    moved = x @ q.T + np.array([30.0, -12.0, 4.0])
    assert tm_score(x, moved) == pytest.approx(1.0, abs=1e-4)


def test_unrelated_natural_chains_score_low(chains):
    assert tm_score(chains[0], chains[1]) < 0.5
    assert tm_score(chains[0], chains[1]) == pytest.approx(tm_score(chains[1], chains[0]), 1e-3)


def test_pair_cap_and_length_cap(chains):
    result = pairwise_tm_diversity(chains, max_length=10_000, max_pairs=4, time_budget_s=1e9)
    assert len(result.scores) == 4 and result.possible_pairs == 15
    assert not result.stopped_by_time
    longest = max(len(x) for x in chains)
    capped = pairwise_tm_diversity(chains, max_length=longest - 1, max_pairs=100, time_budget_s=1e9)
    kept = sum(len(x) <= longest - 1 for x in chains)
    assert capped.skipped_long == len(chains) - kept
    assert capped.possible_pairs == kept * (kept - 1) // 2 == len(capped.scores)
    none = pairwise_tm_diversity(chains, max_length=10_000, max_pairs=0, time_budget_s=1.0)
    assert none.scores == () and none.to_dict()["mean_tm"] is None


def test_time_budget_stops_new_pairs(chains):
    ticks = iter(range(0, 1000, 10))  # every call to the clock advances 10 s
    seen = []
    result = pairwise_tm_diversity(
        chains,
        max_length=10_000,
        max_pairs=15,
        time_budget_s=15.0,
        clock=lambda: next(ticks),
        progress=lambda done, total: seen.append((done, total)),
    )
    # start 0; pair 1 runs; check at 10 s < 15: pair 2 runs; check at 20 s: stop.
    assert len(result.scores) == 2 and result.stopped_by_time
    assert seen == [(1, 15), (2, 15)]


def test_missing_tmtools_names_the_extra(monkeypatch, chains):
    monkeypatch.setitem(sys.modules, "tmtools", None)
    with pytest.raises(MissingDependencyError, match=r"genie-long\[eval\]"):
        tm_score(chains[0], chains[1])
