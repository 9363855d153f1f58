"""Cα-trace geometry: virtual bonds, bond angles, dihedrals, radius of gyration, Rg scaling.

Notation: ``n`` residues of one chain; coordinates in Å, angles in degrees. Everything is
computed in float64 and vectorised over residues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def as_trace(coords: np.ndarray, *, name: str = "coords") -> np.ndarray:
    """Validate a Cα trace and return it as float64 ``[n, 3]`` (Å).

    Raises:
        ValueError: not ``[n, 3]`` with n >= 1, or NaN/Inf values; the message names ``name``.
    """
    xyz = np.asarray(coords, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] == 0:
        raise ValueError(f"{name} must have shape [n, 3] with n >= 1, got {list(xyz.shape)}")
    if not np.isfinite(xyz).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return xyz


def bond_lengths(coords: np.ndarray) -> np.ndarray:
    """Consecutive Cα distances ``|x_{i+1} - x_i|``.

    Args:
        coords: ``[n, 3]`` Å.

    Returns:
        ``[n - 1]`` Å (empty for n = 1).
    """
    xyz = as_trace(coords)
    return np.linalg.norm(np.diff(xyz, axis=0), axis=-1)


def bond_angles(coords: np.ndarray) -> np.ndarray:
    """Virtual bond angles: the angle at residue i between ``x_{i-1} - x_i`` and ``x_{i+1} - x_i``.

    Args:
        coords: ``[n, 3]`` Å.

    Returns:
        ``[n - 2]`` degrees in [0, 180] for i = 1..n-2 (empty for n < 3); 180 for a straight
        trace. A zero-length bond (direction undefined) gives 0.
    """
    xyz = as_trace(coords)
    if xyz.shape[0] < 3:
        return np.zeros(0)
    back = xyz[:-2] - xyz[1:-1]  # [n-2, 3]
    forward = xyz[2:] - xyz[1:-1]  # [n-2, 3]
    # atan2(|a x b|, a . b) is accurate near 0 and 180 degrees, where arccos is not.
    cross = np.linalg.norm(np.cross(back, forward), axis=-1)  # [n-2]
    dot = np.einsum("nc,nc->n", back, forward)  # [n-2]
    return np.degrees(np.arctan2(cross, dot))


def dihedrals(coords: np.ndarray) -> np.ndarray:
    """Virtual dihedral angles of residues i-1, i, i+1, i+2 (IUPAC sign convention).

    Looking along the bond i -> i+1, the angle is positive when the bond i -> i-1 turns
    clockwise onto the bond i+1 -> i+2 (an α-helix gives about +50, a β-strand about -170).

    Args:
        coords: ``[n, 3]`` Å.

    Returns:
        ``[n - 3]`` degrees in [-180, 180] (empty for n < 4).
    """
    xyz = as_trace(coords)
    if xyz.shape[0] < 4:
        return np.zeros(0)
    b1 = xyz[1:-2] - xyz[:-3]  # [n-3, 3]
    b2 = xyz[2:-1] - xyz[1:-2]  # [n-3, 3]
    b3 = xyz[3:] - xyz[2:-1]  # [n-3, 3]
    n12 = np.cross(b1, b2)  # [n-3, 3]
    n23 = np.cross(b2, b3)  # [n-3, 3]
    y = np.linalg.norm(b2, axis=-1) * np.einsum("nc,nc->n", b1, n23)  # [n-3]
    x = np.einsum("nc,nc->n", n12, n23)  # [n-3]
    return np.degrees(np.arctan2(y, x))


def radius_of_gyration(coords: np.ndarray) -> float:
    """``sqrt(mean_i |x_i - mean(x)|²)`` over the Cα of one chain (Å), all masses equal."""
    xyz = as_trace(coords)
    centred = xyz - xyz.mean(axis=0)  # [n, 3]
    return float(np.sqrt(np.mean(np.sum(centred**2, axis=-1))))


@dataclass(frozen=True)
class ScalingFit:
    """``Rg = r0 · L^nu`` fitted in log-log space.

    Attributes:
        r0: prefactor (Å).
        nu: exponent.
        nu_se: standard error of ``nu`` from the regression residuals (None with only two
            chains); a narrow length range gives a large one.
    """

    r0: float
    nu: float
    nu_se: float | None


def fit_scaling_exponent(
    lengths: Sequence[int] | np.ndarray, radii: Sequence[float] | np.ndarray
) -> ScalingFit | None:
    """Least-squares fit of ``log Rg = log R0 + ν log L`` (the law ``Rg = R0 · L^ν``).

    Args:
        lengths: ``[m]`` chain lengths (residues).
        radii: ``[m]`` radii of gyration (Å), all > 0.

    Returns:
        The fit, or None when fewer than two distinct lengths are given (ν is then undefined).
    """
    length = np.asarray(lengths, dtype=np.float64)
    radius = np.asarray(radii, dtype=np.float64)
    if length.shape != radius.shape or length.ndim != 1:
        raise ValueError(
            f"lengths and radii must be 1-d of equal size, got {length.shape}, {radius.shape}"
        )
    if np.unique(length).size < 2:
        return None
    if (length <= 0).any() or (radius <= 0).any():
        raise ValueError("lengths and radii must be positive for a log-log fit")
    x, y = np.log(length), np.log(radius)  # [m] each
    x_centred = x - x.mean()
    nu = float(np.sum(x_centred * (y - y.mean())) / np.sum(x_centred**2))
    log_r0 = float(y.mean() - nu * x.mean())
    nu_se = None
    if x.size > 2:
        residual = y - (log_r0 + nu * x)
        nu_se = float(np.sqrt(np.sum(residual**2) / (x.size - 2) / np.sum(x_centred**2)))
    return ScalingFit(r0=float(np.exp(log_r0)), nu=nu, nu_se=nu_se)
