"""Fixed histograms and the Jensen–Shannon divergence (bits) against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genie.eval.divergence import (
    BOND_ANGLE_EDGES,
    DIHEDRAL_EDGES,
    histogram,
    jensen_shannon_divergence,
)


def test_identical_histograms_have_zero_divergence():
    counts = np.array([3, 0, 5, 2])
    assert jensen_shannon_divergence(counts, counts) == 0.0
    assert jensen_shannon_divergence(counts, 7 * counts) == pytest.approx(0.0, abs=1e-15)


def test_disjoint_histograms_have_one_bit():
    # In nats this would be ln 2; in bits it is exactly 1.
    assert jensen_shannon_divergence([4, 1, 0, 0], [0, 0, 2, 9]) == pytest.approx(1.0)


def test_hand_computed_value_and_symmetry():
    # P = (1, 0), Q = (1/2, 1/2), M = (3/4, 1/4):
    # KL(P||M) = log2(4/3); KL(Q||M) = 1/2 log2(2/3) + 1/2 log2(2).
    expected = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5)
    assert jensen_shannon_divergence([1, 0], [1, 1]) == pytest.approx(expected)
    assert jensen_shannon_divergence([1, 1], [1, 0]) == pytest.approx(expected)


def test_divergence_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        jensen_shannon_divergence([0, 0], [1, 0])
    with pytest.raises(ValueError, match="same bins"):
        jensen_shannon_divergence([1, 0], [1, 0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        jensen_shannon_divergence([1, -1], [1, 0])


def test_histogram_bins_and_end_bins():
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    # -5 goes to the first bin, 3.0 (the last edge) and 9 to the last one.
    np.testing.assert_array_equal(histogram([-5, 0.5, 1.0, 1.5, 3.0, 9], edges), [2, 2, 2])


def test_fixed_bins_are_as_documented():
    assert BOND_ANGLE_EDGES.size == 37 and np.allclose(np.diff(BOND_ANGLE_EDGES), 5.0)
    assert DIHEDRAL_EDGES[0] == -180.0 and np.allclose(np.diff(DIHEDRAL_EDGES), 10.0)
