"""Fixed histograms and the Jensen–Shannon divergence between them.

The bins are constants, not settings, so that divergences of different runs can be compared:

- bond length: 40 bins of 0.1 Å over [2.0, 6.0] Å; values outside go to the end bins;
- bond angle (i-1, i, i+1): 36 bins of 5° over [0°, 180°];
- dihedral (i-1 .. i+2): 36 bins of 10° over [-180°, 180°].

The divergence is in **bits** (log base 2): 0 for identical distributions, 1 for distributions
with disjoint support (ln 2 ≈ 0.693 in nats).
"""

from __future__ import annotations

import numpy as np

BOND_LENGTH_EDGES = np.linspace(2.0, 6.0, 41)  # [41] Å
BOND_ANGLE_EDGES = np.linspace(0.0, 180.0, 37)  # [37] degrees
DIHEDRAL_EDGES = np.linspace(-180.0, 180.0, 37)  # [37] degrees
HISTOGRAM_EDGES = {  # histogram name -> fixed bin edges
    "bond_length": BOND_LENGTH_EDGES,
    "bond_angle": BOND_ANGLE_EDGES,
    "dihedral": DIHEDRAL_EDGES,
}


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins ``[edges[k], edges[k+1])`` (the last bin closed).

    Values below the first edge count in the first bin, values above the last edge in the last.

    Args:
        values: ``[m]`` any units, matching ``edges``.
        edges: ``[bins + 1]`` increasing.

    Returns:
        ``[bins]`` int64 counts summing to m.
    """
    clipped = np.clip(np.asarray(values, dtype=np.float64), edges[0], edges[-1])
    counts, _ = np.histogram(clipped, bins=edges)
    return counts.astype(np.int64)


def jensen_shannon_divergence(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Jensen–Shannon divergence (bits) of two histograms over the same bins.

    ``JSD(P, Q) = ½ KL(P ‖ M) + ½ KL(Q ‖ M)`` with ``M = ½ (P + Q)``, the counts normalised to
    probabilities and ``0 · log 0 = 0``. Symmetric, in [0, 1].

    Args:
        p_counts: ``[bins]`` non-negative counts (or weights).
        q_counts: ``[bins]`` the same bins.

    Raises:
        ValueError: different shapes, negative entries, or an empty histogram.
    """
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"histograms must be 1-d over the same bins, got {p.shape}, {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("histogram counts must be non-negative")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("cannot compare an empty histogram")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    return float(0.5 * _kl_bits(p, m) + 0.5 * _kl_bits(q, m))


def _kl_bits(p: np.ndarray, m: np.ndarray) -> float:
    support = p > 0  # m > 0 wherever p > 0
    return float(np.sum(p[support] * np.log2(p[support] / m[support])))
