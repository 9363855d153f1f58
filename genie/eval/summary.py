"""Per-chain summaries and their aggregation over a group of chains.

A :class:`ChainSummary` holds everything the evaluation needs from one chain in a few numbers
and fixed histograms (no per-residue arrays), so that groups (length buckets, the whole set, the
reference) are aggregated by adding summaries, and 16,000-residue chains cost no more memory
than short ones once summarised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from genie.eval.ca_geometry import (
    as_trace,
    bond_angles,
    bond_lengths,
    dihedrals,
    fit_scaling_exponent,
    radius_of_gyration,
)
from genie.eval.clashes import count_clashes
from genie.eval.divergence import HISTOGRAM_EDGES, histogram, jensen_shannon_divergence
from genie.eval.secondary_structure import SSE_CLASSES, assign_sse, sse_counts
from genie.eval.settings import EvalSettings


@dataclass(frozen=True, kw_only=True, eq=False)
class ChainSummary:
    """What the evaluation keeps of one chain.

    Attributes:
        name: chain name.
        length: residues n.
        bond_sum, bond_sq_sum: sums of consecutive Cα distances (Å) and of their squares (Å²).
        bond_outside: bonds outside ``settings.bond_range``.
        histograms: counts per fixed bin for each key of
            :data:`genie.eval.divergence.HISTOGRAM_EDGES`.
        clash_pairs: clashing pairs (see :mod:`genie.eval.clashes`).
        sse: ``[3]`` residues that P-SEA calls helix, strand, coil.
        rg: radius of gyration (Å).
    """

    name: str
    length: int
    bond_sum: float
    bond_sq_sum: float
    bond_outside: int
    histograms: dict[str, np.ndarray]
    clash_pairs: int
    sse: np.ndarray
    rg: float

    @property
    def num_bonds(self) -> int:
        return self.length - 1


def summarize_chain(coords: np.ndarray, *, name: str, settings: EvalSettings) -> ChainSummary:
    """Summarise one chain.

    Args:
        coords: ``[n, 3]`` Cα coordinates (Å).
        name: chain name for the per-sample table.
        settings: clash and bond-range definitions.
    """
    xyz = as_trace(coords, name=f"chain {name!r}")
    bonds = bond_lengths(xyz)  # [n-1]
    low, high = settings.bond_range
    values = {"bond_length": bonds, "bond_angle": bond_angles(xyz), "dihedral": dihedrals(xyz)}
    return ChainSummary(
        name=name,
        length=int(xyz.shape[0]),
        bond_sum=float(bonds.sum()),
        bond_sq_sum=float(np.sum(bonds**2)),
        bond_outside=int(np.count_nonzero((bonds < low) | (bonds > high))),
        histograms={key: histogram(values[key], edges) for key, edges in HISTOGRAM_EDGES.items()},
        clash_pairs=count_clashes(
            xyz, distance=settings.clash_distance, min_separation=settings.clash_min_separation
        ),
        sse=sse_counts(assign_sse(xyz)),
        rg=radius_of_gyration(xyz),
    )


def _fraction(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def aggregate(chains: Sequence[ChainSummary]) -> dict[str, Any]:
    """Pooled figures of a group of chains (residue-weighted where that applies).

    Returns a JSON-ready dict: counts and lengths; ``bond_length`` mean/std/fraction_outside over
    all bonds; ``clashes`` pairs, per_residue (pairs / residues) and the fraction of chains with
    at least one; ``sse`` helix/strand/coil fractions of all residues; ``mean_rg`` (Å);
    ``histograms`` (counts per fixed bin). Figures without data are None.
    """
    if not chains:
        raise ValueError("cannot aggregate an empty group of chains")
    residues = sum(c.length for c in chains)
    bonds = sum(c.num_bonds for c in chains)
    bond_mean = _fraction(sum(c.bond_sum for c in chains), bonds)
    bond_std = None
    if bond_mean is not None:
        second_moment = sum(c.bond_sq_sum for c in chains) / bonds
        bond_std = float(np.sqrt(max(second_moment - bond_mean**2, 0.0)))
    sse = np.sum([c.sse for c in chains], axis=0)  # [3]
    clash_pairs = sum(c.clash_pairs for c in chains)
    return {
        "num_chains": len(chains),
        "num_residues": residues,
        "length_min": min(c.length for c in chains),
        "length_max": max(c.length for c in chains),
        "bond_length": {
            "mean": bond_mean,
            "std": bond_std,
            "fraction_outside": _fraction(sum(c.bond_outside for c in chains), bonds),
        },
        "clashes": {
            "pairs": clash_pairs,
            "per_residue": clash_pairs / residues,
            "fraction_chains_with_clash": sum(c.clash_pairs > 0 for c in chains) / len(chains),
        },
        "sse": {name: float(sse[k] / residues) for k, name in enumerate(SSE_CLASSES)},
        "mean_rg": float(np.mean([c.rg for c in chains])),
        "histograms": {
            key: np.sum([c.histograms[key] for c in chains], axis=0).tolist()
            for key in HISTOGRAM_EDGES
        },
    }


def rg_fit(chains: Sequence[ChainSummary]) -> dict[str, Any] | None:
    """``{"r0": Å, "nu": exponent, "nu_se": its standard error or None, "length_min",
    "length_max"}`` of ``Rg = R0 · L^ν`` over the chains; None when their lengths do not differ
    (the exponent is then undefined)."""
    lengths = [c.length for c in chains]
    fit = fit_scaling_exponent(lengths, [c.rg for c in chains])
    if fit is None:
        return None
    return {**asdict(fit), "length_min": min(lengths), "length_max": max(lengths)}


def compare(
    group: dict[str, Any],
    chains: Sequence[ChainSummary],
    reference: dict[str, Any],
    reference_fit: dict[str, Any] | None,
) -> dict[str, Any]:
    """Figures of a group against the reference.

    Args:
        group: :func:`aggregate` of ``chains``.
        chains: the group's chains.
        reference: :func:`aggregate` of the reference chains.
        reference_fit: :func:`rg_fit` of the reference chains.

    Returns:
        ``jsd``: Jensen–Shannon divergence (bits) of each histogram against the reference's
        (None when the group has no value, e.g. only chains shorter than 4 for dihedrals);
        ``sse_difference``: group fraction minus reference fraction per class;
        ``rg_ratio_to_reference``: mean over chains of ``Rg / (R0_ref · L^ν_ref)`` (None without
        a reference fit).
    """
    jsd = {}
    for key in HISTOGRAM_EDGES:
        mine, theirs = (
            np.asarray(group["histograms"][key]),
            np.asarray(reference["histograms"][key]),
        )
        jsd[key] = jensen_shannon_divergence(mine, theirs) if mine.sum() and theirs.sum() else None
    ratio = None
    if reference_fit is not None:
        expected = [reference_fit["r0"] * c.length ** reference_fit["nu"] for c in chains]
        ratio = float(np.mean([c.rg / e for c, e in zip(chains, expected, strict=True)]))
    return {
        "jsd": jsd,
        "sse_difference": {k: group["sse"][k] - reference["sse"][k] for k in SSE_CLASSES},
        "rg_ratio_to_reference": ratio,
    }
