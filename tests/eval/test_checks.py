"""The pass/fail rules of the verdict, on hand-made figures."""

from __future__ import annotations

from genie.eval.checks import MIN_RESIDUES_FOR_DISTRIBUTIONS, protein_likeness_checks


def _overall(*, residues: int, jsd: float, helix_difference: float, ratio: float, tm):
    return {
        "num_residues": residues,
        "bond_length": {"fraction_outside": 0.01},
        "clashes": {"per_residue": 0.02},
        "jsd": {"bond_length": 0.01, "bond_angle": jsd, "dihedral": 0.01},
        "sse_difference": {"helix": helix_difference, "strand": 0.0, "coil": -helix_difference},
        "rg_ratio_to_reference": ratio,
        "diversity": {"mean_tm": tm},
    }


def _by_name(checks):
    return {check.name: check.passed for check in checks}


def test_rules_on_a_large_group():
    overall = _overall(residues=5000, jsd=0.2, helix_difference=-0.15, ratio=1.1, tm=None)
    fit = {"nu": 0.6, "nu_se": 0.05}  # 0.6 - 2 * 0.05 = 0.5 > 0.45: too swollen
    result = _by_name(protein_likeness_checks(overall, fit))
    assert result["bond length outliers"] is True
    assert result["clashes per residue"] is False  # 0.02 > 0.01
    assert result["bond angle JSD (bits)"] is False and result["dihedral JSD (bits)"] is True
    assert result["helix fraction |difference|"] is False  # |-0.15| > 0.1
    assert result["strand fraction |difference|"] is True
    assert result["Rg exponent ν"] is False
    assert result["Rg / reference Rg"] is True
    assert result["mean pairwise TM-score"] is None  # not measured


def test_exponent_uncertainty_and_small_groups():
    overall = _overall(
        residues=MIN_RESIDUES_FOR_DISTRIBUTIONS - 1,
        jsd=0.2,
        helix_difference=0.3,
        ratio=0.7,
        tm=0.9,
    )
    fit = {"nu": 0.55, "nu_se": 0.06}  # 0.55 - 0.12 = 0.43 <= 0.45: not excluded
    result = _by_name(protein_likeness_checks(overall, fit))
    assert result["Rg exponent ν"] is True
    assert result["bond angle JSD (bits)"] is None  # too few residues to judge
    assert result["helix fraction |difference|"] is None
    assert result["Rg / reference Rg"] is False  # 0.7 < 0.8
    assert result["mean pairwise TM-score"] is False  # 0.9 > 0.5
    assert _by_name(protein_likeness_checks(overall, None))["Rg exponent ν"] is None
