"""P-SEA through biotite: ideal elements, version-independent class mapping, missing package."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from genie.eval.optional import MissingDependencyError
from genie.eval.secondary_structure import assign_sse, sse_counts


def _ideal_helix(n: int) -> np.ndarray:
    angle = np.radians(100.0) * np.arange(n)
    return np.stack([2.3 * np.cos(angle), 2.3 * np.sin(angle), 1.5 * np.arange(n)], axis=-1)


def _ideal_strand(n: int) -> np.ndarray:
    """Planar zigzag, 3.8 Å steps, virtual angle 124°: Cα(i)-Cα(i+2) 6.7 Å as in β-strands."""
    half = np.radians(124.0) / 2
    step_x, step_y = 3.8 * np.sin(half), 3.8 * np.cos(half)
    return np.stack([step_x * np.arange(n), step_y * (np.arange(n) % 2), np.zeros(n)], axis=-1)


def test_ideal_helix_is_helix():
    classes = assign_sse(_ideal_helix(30))
    assert classes.shape == (30,) and classes.dtype == np.int8
    assert np.mean(classes == 0) > 0.8


def test_ideal_strand_is_strand():
    # the ends lack the i+3 / i+4 distances P-SEA needs and stay coil
    classes = assign_sse(_ideal_strand(20))
    assert (classes[1:-2] == 1).all()


def test_straight_and_short_chains_are_coil():
    line = np.stack([3.8 * np.arange(20), np.zeros(20), np.zeros(20)], axis=-1)
    assert (assign_sse(line) == 2).all()
    assert (assign_sse(_ideal_helix(5)) == 2).all()  # P-SEA needs more than 5 residues


@pytest.mark.parametrize(
    "raw",
    [np.array(["a", "b", "c", "a"]), np.array([1, 2, 0, 1])],
    ids=["symbols (biotite 1.x)", "PSeaElement values (biotite 2.x)"],
)
def test_both_biotite_result_types_map_to_the_same_classes(monkeypatch, raw):
    import biotite.structure

    monkeypatch.setattr(biotite.structure, "annotate_sse", lambda atoms: raw)
    np.testing.assert_array_equal(assign_sse(np.zeros((4, 3))), [0, 1, 2, 0])


def test_unexpected_biotite_output_is_an_error(monkeypatch):
    import biotite.structure

    monkeypatch.setattr(biotite.structure, "annotate_sse", lambda atoms: np.array(["a", "x"]))
    with pytest.raises(ValueError, match="unexpected"):
        assign_sse(np.zeros((2, 3)))


def test_counts():
    np.testing.assert_array_equal(sse_counts(np.array([0, 0, 2, 1, 2, 2])), [2, 1, 3])
    np.testing.assert_array_equal(sse_counts(np.array([], dtype=np.int8)), [0, 0, 0])


def test_missing_biotite_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "biotite.structure", None)  # import now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'genie-long\[eval\]'"):
        assign_sse(_ideal_helix(10))
