"""Cα geometry against hand-computed values and independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genie.eval.ca_geometry import (
    bond_angles,
    bond_lengths,
    dihedrals,
    fit_scaling_exponent,
    radius_of_gyration,
)


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _ideal_helix(n: int) -> np.ndarray:
    """α-helix Cα: radius 2.3 Å, 100° per residue, 1.5 Å rise, right-handed."""
    angle = np.radians(100.0) * np.arange(n)
    return np.stack([2.3 * np.cos(angle), 2.3 * np.sin(angle), 1.5 * np.arange(n)], axis=-1)


@pytest.mark.parametrize(
    ("last", "dihedral"),
    [((0, 1, 1), -90.0), ((0, 1, -1), 90.0), ((1, 1, 0), 0.0), ((-1, 1, 0), 180.0)],
)
def test_four_point_trace(last, dihedral):
    # p0 on +x, p1 at the origin, p2 on +y: the first plane is z = 0, the angle at p1 is 90°.
    # Looking down p1 -> p2 (+y) with +z up, +x points right: a last bond along +z is reached
    # from +x by turning counter-clockwise, so the IUPAC dihedral is -90°; along -z it is +90°;
    # a last point on the side of p0 is cis (0°), on the other side trans (180°).
    # Every last point is 1 Å from p2 at a right angle to p1 - p2.
    trace = np.array([(1, 0, 0), (0, 0, 0), (0, 1, 0), last], dtype=float)
    np.testing.assert_allclose(bond_lengths(trace), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(bond_angles(trace), [90.0, 90.0], atol=1e-12)
    if dihedral == 180.0:  # +180 and -180 are the same angle
        assert abs(dihedrals(trace)[0]) == pytest.approx(180.0, abs=1e-12)
    else:
        assert dihedrals(trace)[0] == pytest.approx(dihedral, abs=1e-12)


def test_non_right_angles():
    # An equilateral triangle has 60° at every corner; a straight trace 180°.
    triangle = np.array([(0, 0, 0), (1, 0, 0), (0.5, math.sqrt(3) / 2, 0)])
    assert bond_angles(triangle)[0] == pytest.approx(60.0)
    assert bond_angles(np.array([(0, 0, 0), (3.8, 0, 0), (7.6, 0, 0)]))[0] == pytest.approx(180.0)


def test_short_traces_give_empty_arrays():
    assert bond_lengths(np.zeros((1, 3))).shape == (0,)
    assert bond_angles(np.zeros((2, 3))).shape == (0,)
    assert dihedrals(np.zeros((3, 3))).shape == (0,)


def test_helix_has_known_virtual_geometry():
    # Real α-helices: Cα-Cα 3.8 Å, virtual angle ≈ 91°, virtual dihedral ≈ +50°.
    helix = _ideal_helix(20)
    np.testing.assert_allclose(bond_lengths(helix), 3.83, atol=0.01)
    np.testing.assert_allclose(bond_angles(helix), 91.0, atol=2.0)
    np.testing.assert_allclose(dihedrals(helix), 50.0, atol=5.0)


def test_dihedral_matches_biotite():
    structure = pytest.importorskip("biotite.structure")
    x = np.random.default_rng(0).normal(size=(40, 3)) * 3.0
    expected = np.degrees(structure.dihedral(x[:-3], x[1:-2], x[2:-1], x[3:]))
    np.testing.assert_allclose(dihedrals(x), expected, atol=1e-4)


def test_invariance_under_rigid_motion_and_sign_under_reflection():
    x = np.random.default_rng(1).normal(size=(30, 3)) * 4.0
    moved = x @ _rotation(2).T + np.array([10.0, -5.0, 3.0])
    np.testing.assert_allclose(bond_angles(moved), bond_angles(x), atol=1e-9)
    np.testing.assert_allclose(dihedrals(moved), dihedrals(x), atol=1e-9)
    assert radius_of_gyration(moved) == pytest.approx(radius_of_gyration(x))
    mirrored = x * np.array([1.0, 1.0, -1.0])
    np.testing.assert_allclose(dihedrals(mirrored), -dihedrals(x), atol=1e-9)


def test_radius_of_gyration_of_known_point_sets():
    # Six points at distance a from their centroid: Rg = a exactly, wherever the set is placed.
    a = 2.5
    axes = np.concatenate([np.eye(3), -np.eye(3)]) * a + np.array([7.0, -1.0, 4.0])
    assert radius_of_gyration(axes) == pytest.approx(a)
    # Two points d apart: each is d/2 from the centroid.
    assert radius_of_gyration(np.array([(0, 0, 0), (0, 6.0, 0)])) == pytest.approx(3.0)
    assert radius_of_gyration(np.ones((1, 3))) == 0.0


def test_exponent_fit_recovers_synthetic_law():
    lengths = np.array([50, 80, 128, 200, 400, 1000, 4000])
    fit = fit_scaling_exponent(lengths, 2.0 * lengths**0.4)
    assert fit.r0 == pytest.approx(2.0, rel=1e-10)
    assert fit.nu == pytest.approx(0.4, rel=1e-10)
    assert fit.nu_se == pytest.approx(0.0, abs=1e-10)


def test_exponent_fit_standard_error_and_degenerate_input():
    lengths = np.array([100, 100, 200, 200])
    # log Rg deviates by ±e around the law: residuals ±e, so se = sqrt(4e²/2 / Sxx).
    e = 0.05
    radii = 3.0 * lengths**0.35 * np.exp(np.array([e, -e, e, -e]))
    fit = fit_scaling_exponent(lengths, radii)
    sxx = 4 * (0.5 * math.log(2.0)) ** 2
    assert fit.nu == pytest.approx(0.35)
    assert fit.nu_se == pytest.approx(math.sqrt(4 * e * e / 2 / sxx))
    assert fit_scaling_exponent([100, 100], [10.0, 11.0]) is None
    assert fit_scaling_exponent([100, 200], [10.0, 11.0]).nu_se is None
    with pytest.raises(ValueError, match="positive"):
        fit_scaling_exponent([100, 200], [10.0, 0.0])


def test_invalid_trace_is_rejected():
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        bond_lengths(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        radius_of_gyration(np.full((3, 3), np.nan))
