"""Pass/fail checks that turn the figures into a verdict: do the backbones look like proteins?

Each threshold is set from the calibration in ``docs/EVALUATION.md``: one half of the TS50
chains scored against the other half passes every check with a wide margin, and 3.8 Å random
walks fail the geometry, clash and secondary-structure checks by a wide margin. They are
heuristics for watching a model learn, not publication criteria.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BOND_OUTSIDE_MAX = 0.05  # fraction of consecutive Cα distances outside bond_range
CLASHES_PER_RESIDUE_MAX = 0.01  # clashing pairs per residue
JSD_MAX = 0.05  # bits, for bond length, bond angle and dihedral histograms
SSE_DIFFERENCE_MAX = 0.1  # |generated - reference| fraction, per class
# Distribution and composition checks need this many residues: single real chains differ from
# the reference by up to 0.24 bits (their own fold, plus sampling noise), groups of ~1,000
# residues by <= 0.012 (docs/EVALUATION.md); below it those checks report n/a.
MIN_RESIDUES_FOR_DISTRIBUTIONS = 1000
# Rg scaling exponent: real chains measure 0.28-0.33 (docs/EVALUATION.md), compact globules 1/3,
# ideal random coils 0.5, self-avoiding (unfolded) chains 0.59.
NU_RANGE = (0.25, 0.45)
RG_RATIO_RANGE = (0.8, 1.25)  # Rg against the reference's fitted Rg at the same length
DIVERSITY_TM_MAX = 0.5  # mean pairwise TM-score; above it samples tend to share one fold


@dataclass(frozen=True, kw_only=True)
class Check:
    """One check: its name, the measured value, the rule and whether it holds."""

    name: str
    value: float | None
    rule: str
    passed: bool | None  # None when the value could not be measured

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "rule": self.rule, "passed": self.passed}


def _at_most(name: str, value: float | None, limit: float, *, rule: str = "") -> Check:
    passed = None if value is None else bool(value <= limit)
    return Check(name=name, value=value, rule=rule or f"<= {limit:g}", passed=passed)


def _distribution(name: str, value: float | None, limit: float, residues: int) -> Check:
    """``value <= limit``, judged only for groups of MIN_RESIDUES_FOR_DISTRIBUTIONS or more."""
    rule = f"<= {limit:g} (judged from {MIN_RESIDUES_FOR_DISTRIBUTIONS} residues)"
    if residues < MIN_RESIDUES_FOR_DISTRIBUTIONS:
        return Check(name=name, value=value, rule=rule, passed=None)
    return _at_most(name, value, limit, rule=rule)


def _within(name: str, value: float | None, low: float, high: float) -> Check:
    passed = None if value is None else bool(low <= value <= high)
    return Check(name=name, value=value, rule=f"in [{low:g}, {high:g}]", passed=passed)


def _exponent(fit: dict[str, Any] | None) -> Check:
    """ν is in NU_RANGE within two standard errors (a narrow length range cannot pin ν down)."""
    low, high = NU_RANGE
    rule = f"in [{low:g}, {high:g}] within 2 standard errors"
    if fit is None:
        return Check(name="Rg exponent ν", value=None, rule=rule, passed=None)
    margin = 2.0 * (fit["nu_se"] or 0.0)
    passed = bool(fit["nu"] + margin >= low and fit["nu"] - margin <= high)
    return Check(name="Rg exponent ν", value=fit["nu"], rule=rule, passed=passed)


def protein_likeness_checks(
    overall: dict[str, Any], generated_fit: dict[str, Any] | None
) -> list[Check]:
    """Checks of the whole generated set.

    Args:
        overall: the ``overall`` entry of the metrics (aggregate, comparison and diversity).
        generated_fit: :func:`genie.eval.summary.rg_fit` of the generated chains, or None.
    """
    residues = overall["num_residues"]
    checks = [
        _at_most(
            "bond length outliers", overall["bond_length"]["fraction_outside"], BOND_OUTSIDE_MAX
        ),
        _at_most("clashes per residue", overall["clashes"]["per_residue"], CLASHES_PER_RESIDUE_MAX),
    ]
    for key, label in (
        ("bond_length", "bond length"),
        ("bond_angle", "bond angle"),
        ("dihedral", "dihedral"),
    ):
        checks.append(_distribution(f"{label} JSD (bits)", overall["jsd"][key], JSD_MAX, residues))
    for key, difference in overall["sse_difference"].items():
        name = f"{key} fraction |difference|"
        checks.append(_distribution(name, abs(difference), SSE_DIFFERENCE_MAX, residues))
    checks.append(_exponent(generated_fit))
    checks.append(_within("Rg / reference Rg", overall["rg_ratio_to_reference"], *RG_RATIO_RANGE))
    checks.append(
        _at_most("mean pairwise TM-score", overall["diversity"]["mean_tm"], DIVERSITY_TM_MAX)
    )
    return checks
