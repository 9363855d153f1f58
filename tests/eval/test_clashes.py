"""Clash search: hand-built trace, brute force, an analytic long helix, bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from genie.eval.clashes import count_clashes


def _brute_force(x: np.ndarray, distance: float, separation: int) -> int:
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    i, j = np.triu_indices(len(x), separation)
    return int(np.count_nonzero(d[i, j] < distance))


def test_hand_built_trace():
    line = [(3.8 * k, 0.0, 0.0) for k in range(10)]  # p0..p9, 3.8 Å apart: no clash
    extra = [
        (0.0, 2.0, 0.0),  # p10: 2.0 Å from p0 (clash, |i-j| = 10); 4.29 Å from p1
        (3.8, 0.0, 2.5),  # p11: 2.5 Å from p1 (clash); 4.55 Å from p0 and p2, 4.94 Å from p10
        (3.8, 0.0, 4.5),  # p12: 2.0 Å from p11 (adjacent, never counted)
        (3.8, 2.0, 2.5),  # p13: 2.0 Å from p11 (|i-j| = 2), 3.2 Å from p1, 2.83 Å from p12
    ]
    x = np.array(line + extra)
    assert count_clashes(x) == 2  # p0-p10, p1-p11
    assert count_clashes(x, min_separation=2) == 3  # + p11-p13
    assert count_clashes(x, distance=3.3) == 3  # + p1-p13 (3.2 Å)
    assert count_clashes(x[:10]) == 0


@pytest.mark.parametrize("max_candidates", [1, 7, 33, 1 << 20])
@pytest.mark.parametrize("spread", [0.3, 1.5, 6.0])
def test_matches_brute_force(max_candidates, spread):
    rng = np.random.default_rng(int(spread * 10))
    x = rng.normal(size=(300, 3)) * spread * 300 ** (1 / 3)
    for distance, separation in ((3.0, 3), (4.5, 1)):
        expected = _brute_force(x, distance, separation)
        assert expected > 0
        got = count_clashes(
            x, distance=distance, min_separation=separation, max_candidates=max_candidates
        )
        assert got == expected


def test_collapsed_trace_in_bounded_memory():
    # All n points within 0.2 Å: every pair with j - i >= 3 clashes, (n-3)(n-2)/2 pairs.
    n = 2000
    x = np.random.default_rng(0).normal(size=(n, 3)) * 0.05
    tracemalloc.start()
    try:
        count = count_clashes(x, max_candidates=1 << 14)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == (n - 3) * (n - 2) // 2
    assert peak < 8 * 1024 * 1024  # a dense n x n float64 matrix alone would be 32 MB


def test_long_helix_matches_analytic_count():
    # A helix squeezed along its axis: |x_i - x_j| depends on k = j - i only,
    # d(k)² = 2 r² (1 - cos kθ) + (k h)², so the clashes are sum over k >= 3 of (n - k)·[d(k) < 3].
    n, r, theta, h = 16000, 2.3, np.radians(100.0), 0.3
    angle = theta * np.arange(n)
    x = np.stack([r * np.cos(angle), r * np.sin(angle), h * np.arange(n)], axis=-1)
    expected = 0
    for k in range(3, n):
        if k * h >= 3.0:
            break
        if 2 * r * r * (1 - np.cos(k * theta)) + (k * h) ** 2 < 9.0:
            expected += n - k
    assert expected > 2 * n  # several separations clash
    assert count_clashes(x) == expected


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="distance"):
        count_clashes(np.zeros((5, 3)), distance=0.0)
    with pytest.raises(ValueError, match="min_separation"):
        count_clashes(np.zeros((5, 3)), min_separation=0)
