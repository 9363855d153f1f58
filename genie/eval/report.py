"""The one-page markdown report of an evaluation, rendered from the metrics dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genie.eval.secondary_structure import SSE_CLASSES

_MAX_SKIPPED_LISTED = 20


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}%"


def _bond(group: Mapping[str, Any]) -> str:
    bond = group["bond_length"]
    if bond["mean"] is None:
        return "n/a"
    return f"{bond['mean']:.2f} ± {bond['std']:.2f}"


def _fit(fit: Mapping[str, Any] | None) -> str:
    if fit is None:
        return "n/a (one length only)"
    se = "" if fit["nu_se"] is None else f" ± {fit['nu_se']:.3f}"
    return f"{fit['nu']:.3f}{se} (L {fit['length_min']}-{fit['length_max']})"


def _tm(diversity: Mapping[str, Any]) -> str:
    if diversity["mean_tm"] is None:
        return "n/a"
    cut = ", time cap" if diversity["stopped_by_time"] else ""
    return f"{diversity['mean_tm']:.3f} ({diversity['pairs']}/{diversity['possible_pairs']}{cut})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


def _verdict(checks: list[Mapping[str, Any]]) -> list[str]:
    measured = [c for c in checks if c["passed"] is not None]
    passed = sum(c["passed"] for c in measured)
    lines = [f"**{passed} of {len(measured)} checks pass** (thresholds: docs/EVALUATION.md).", ""]
    rows = []
    for check in checks:
        result = {True: "pass", False: "**FAIL**", None: "n/a"}[check["passed"]]
        rows.append([check["name"], _num(check["value"]), check["rule"], result])
    return lines + _table(["check", "value", "rule", "result"], rows)


def _overall(metrics: Mapping[str, Any]) -> list[str]:
    gen, ref, settings = metrics["overall"], metrics["reference"], metrics["settings"]
    low, high = settings["bond_range"]
    clash = f"< {settings['clash_distance']:g} Å, |i−j| ≥ {settings['clash_min_separation']}"
    rows = [
        ["consecutive Cα distance (Å), mean ± std", _bond(gen), _bond(ref)],
        [
            f"distances outside {low:g}-{high:g} Å",
            _pct(gen["bond_length"]["fraction_outside"]),
            _pct(ref["bond_length"]["fraction_outside"]),
        ],
        [
            f"clashing pairs per residue ({clash})",
            _num(gen["clashes"]["per_residue"], 4),
            _num(ref["clashes"]["per_residue"], 4),
        ],
        [
            "chains with a clash",
            _pct(gen["clashes"]["fraction_chains_with_clash"]),
            _pct(ref["clashes"]["fraction_chains_with_clash"]),
        ],
    ]
    for key, label in (
        ("bond_length", "Cα distance"),
        ("bond_angle", "bond angle"),
        ("dihedral", "dihedral"),
    ):
        rows.append([f"JSD of {label} histogram vs reference (bits)", _num(gen["jsd"][key]), "0"])
    for name in SSE_CLASSES:
        rows.append([f"{name} fraction (P-SEA)", _num(gen["sse"][name]), _num(ref["sse"][name])])
    rows += [
        ["Rg exponent ν (Rg = R0·L^ν)", _fit(metrics["generated_rg_fit"]), _fit(ref["rg_fit"])],
        ["Rg / reference fit at the same length", _num(gen["rg_ratio_to_reference"]), "1"],
        ["mean pairwise TM-score (pairs aligned/possible)", _tm(gen["diversity"]), "—"],
    ]
    return _table(["figure", "generated", "reference"], rows)


def _buckets(metrics: Mapping[str, Any]) -> list[str]:
    header = [
        "length",
        "chains",
        "Cα–Cα (Å)",
        "outside",
        "clashes/res",
        "angle JSD",
        "dihedral JSD",
        "helix",
        "strand",
        "coil",
        "Rg/ref",
        "TM (pairs)",
    ]
    rows = []
    for b in metrics["buckets"]:
        rows.append(
            [
                b["label"],
                str(b["num_chains"]),
                _bond(b),
                _pct(b["bond_length"]["fraction_outside"]),
                _num(b["clashes"]["per_residue"], 4),
                _num(b["jsd"]["bond_angle"]),
                _num(b["jsd"]["dihedral"]),
                *(_num(b["sse"][k], 2) for k in SSE_CLASSES),
                _num(b["rg_ratio_to_reference"], 2),
                _tm(b["diversity"]),
            ]
        )
    return _table(header, rows)


def _notes(metrics: Mapping[str, Any]) -> list[str]:
    notes = []
    ref, settings = metrics["reference"], metrics["settings"]
    fit = ref["rg_fit"]
    gen = metrics["overall"]
    if fit is not None and (
        gen["length_min"] < fit["length_min"] or gen["length_max"] > fit["length_max"]
    ):
        notes.append(
            f"Rg/ref extrapolates the reference fit beyond its lengths "
            f"({fit['length_min']}-{fit['length_max']} residues)."
        )
    diversity = gen["diversity"]
    if diversity["skipped_long_chains"]:
        notes.append(
            f"{diversity['skipped_long_chains']} chains longer than {settings['max_tm_length']} "
            "residues are left out of the TM-score diversity (--max-tm-length)."
        )
    if diversity["pairs"] < diversity["possible_pairs"]:
        notes.append(
            f"TM-scores of {diversity['pairs']} of {diversity['possible_pairs']} pairs "
            f"(at most {settings['max_tm_pairs']} per bucket, {settings['tm_time_budget_s']:g} s "
            "per bucket)."
        )
    return [f"- {note}" for note in notes]


def render_report(
    metrics: Mapping[str, Any],
    *,
    samples_source: str,
    plots: Mapping[str, str] | None = None,
    skipped: Mapping[str, str] | None = None,
) -> str:
    """Markdown text of the report.

    Args:
        metrics: the dict of :func:`genie.eval.metrics.evaluate_backbones`.
        samples_source: where the samples came from (a folder).
        plots: figure name -> image file name relative to the report.
        skipped: sample file -> why it was not read.
    """
    gen, ref = metrics["overall"], metrics["reference"]
    lines = [
        "# Backbone evaluation",
        "",
        f"- Samples: {gen['num_chains']} chains, {gen['num_residues']} residues, lengths "
        f"{gen['length_min']}-{gen['length_max']}, from `{samples_source}`"
        + (f"; skipped files: {len(skipped)} (listed below)" if skipped else ""),
        f"- Reference: {ref['num_chains']} chains, {ref['num_residues']} residues, lengths "
        f"{ref['length_min']}-{ref['length_max']}, from {ref['source']}",
        "- Each length bucket is compared with the whole reference set. JSD: Jensen–Shannon "
        "divergence in bits (0 identical, 1 disjoint).",
        "",
        "## Verdict",
        "",
        *_verdict(metrics["checks"]),
        "",
        "## All samples vs reference",
        "",
        *_overall(metrics),
        "",
        "## By length",
        "",
        *_buckets(metrics),
        "",
    ]
    notes = _notes(metrics)
    if notes:
        lines += ["Notes:", "", *notes, ""]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{name}]({path})" for name, path in plots.items()]
        lines.append("")
    if skipped:
        lines += ["## Skipped files", ""]
        items = list(skipped.items())
        lines += [f"- `{path}`: {why}" for path, why in items[:_MAX_SKIPPED_LISTED]]
        if len(items) > _MAX_SKIPPED_LISTED:
            lines.append(f"- ... and {len(items) - _MAX_SKIPPED_LISTED} more (metrics.json)")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
