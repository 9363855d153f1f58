"""The figures of a benchmark section: results and reference rows, the markdown table, the
metadata list and the error notes (``report.py`` puts them into docs/BENCHMARKS.md).

Several result files (e.g. one run split over several commands) are merged into one set of rows;
where two files hold the same (length, mode), the later file wins. The reference's training
series is the one matching the runs' precision unless one is asked for.

A reference document (``reference_genie_h100.json``, or one that ``report_original.py`` builds from
the original Genie's rows measured in the same run) holds ``name``, ``source`` and ``series``
(name -> ``{"results": [rows]}``), and optionally ``label``, the word its table columns start
with (default ``ref``), ``sample_series``, the series of its sample steps (default
``sample_fp32``), and ``plot_name``, its name in the plot's legend (default ``reference``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REFERENCE_TRAIN_SERIES = {"32": "train_fp32", "bf16": "train_bf16"}
REFERENCE_SAMPLE_SERIES = "sample_fp32"
PRECISION_LABELS = {
    "32": "fp32 (no autocast)",
    "bf16": "bf16 autocast",
    "16": "fp16 autocast with GradScaler",
}


# ---------------------------------------------------------------------------------------------
# Reading results
# ---------------------------------------------------------------------------------------------


def merge_results(runs: Sequence[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    """Index the rows of several runs by (length, mode); later runs win."""
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for run in runs:
        for row in run["results"]:
            rows[(int(row["length"]), row["mode"])] = row
    return rows


def run_precision(run: dict[str, Any]) -> str:
    """The precision a run trained in: ``"32"``, ``"16"`` or ``"bf16"``."""
    cfg = run.get("resolved_config") or {}
    if not cfg.get("useMixedPrecision"):
        return "32"
    precision = str(cfg.get("precision", "32"))
    return "bf16" if precision.startswith("bf16") else "16" if precision.startswith("16") else "32"


def reference_label(reference: dict[str, Any]) -> str:
    """The word the reference's columns start with: ``ref`` unless the document names one."""
    return reference.get("label", "ref")


def reference_sample_series(reference: dict[str, Any]) -> str:
    """The name of the reference's sample-step series."""
    return reference.get("sample_series", REFERENCE_SAMPLE_SERIES)


def reference_rows(reference: dict[str, Any], series: str) -> dict[int, dict[str, Any]]:
    """The rows of one reference series, indexed by length."""
    return {int(r["length"]): r for r in reference["series"][series]["results"]}


def pick_train_series(
    runs: Sequence[dict[str, Any]], reference: dict[str, Any], requested: str | None
) -> str | None:
    """The reference training series to compare with: asked for, or matching our precision."""
    if requested is not None:
        if requested not in reference["series"]:
            raise SystemExit(
                f"reference has no series {requested!r}: {sorted(reference['series'])}"
            )
        return requested
    precisions = {run_precision(run) for run in runs}
    if len(precisions) != 1:
        return None
    series = REFERENCE_TRAIN_SERIES.get(precisions.pop())
    return series if series in reference["series"] else None


# ---------------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------------


def _status(row: dict[str, Any] | None) -> str:
    """'ok', 'OOM', 'error' or 'missing'."""
    if row is None:
        return "missing"
    status = row["status"]
    return status if status in ("ok", "OOM") else "error"


def cell(row: dict[str, Any] | None, key: str, fmt: str) -> str:
    """One table cell: the number, or OOM / error / n/a / — when there is none."""
    status = _status(row)
    if status == "missing":
        return "—"
    if status != "ok":
        return status
    value = row.get(key)
    return "n/a" if value is None else format(value, fmt)


def ratio(
    ours: dict[str, Any] | None, ref: dict[str, Any] | None, key: str, label: str = "ref"
) -> str:
    """Our value over the reference's, e.g. ``0.45×``; says which side ran out of memory."""
    mine, theirs = _status(ours), _status(ref)
    if mine == "ok" and theirs == "ok":
        a, b = ours.get(key), ref.get(key)
        return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}×"
    if mine == "ok" and theirs == "OOM":
        return f"{label} OOM"
    if mine == "OOM" and theirs == "ok":
        return "OOM"
    return "—"


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def results_table(
    rows: dict[tuple[int, str], dict[str, Any]],
    reference: dict[str, Any] | None = None,
    train_series: str | None = None,
) -> str:
    """The markdown table: one row per length, ours and (optionally) the reference's figures."""
    header = [
        "L",
        "train mem (GiB)",
        "train step (s)",
        "train samples/s",
        "sample mem (GiB)",
        "sample step (s)",
    ]
    ref_train: dict[int, dict[str, Any]] = {}
    ref_sample: dict[int, dict[str, Any]] = {}
    label = "ref"
    if reference is not None:
        label = reference_label(reference)
        header += [
            f"{label} train mem (GiB)",
            f"{label} train step (s)",
            f"mem ours/{label}",
            f"time ours/{label}",
            f"{label} sample step (s)",
            f"sample time ours/{label}",
        ]
        if train_series is not None:
            ref_train = reference_rows(reference, train_series)
        if reference_sample_series(reference) in reference["series"]:
            ref_sample = reference_rows(reference, reference_sample_series(reference))
    body = []
    for length in sorted({length for length, _ in rows}):
        train, sample = rows.get((length, "train")), rows.get((length, "sample"))
        line = [
            str(length),
            cell(train, "peak_mem_gib", ".2f"),
            cell(train, "median_s", "#.3g"),
            cell(train, "samples_per_s", "#.3g"),
            cell(sample, "peak_mem_gib", ".2f"),
            cell(sample, "median_s", "#.3g"),
        ]
        if reference is not None:
            rt, rs = ref_train.get(length), ref_sample.get(length)
            line += [
                cell(rt, "peak_mem_gib", ".2f"),
                cell(rt, "median_s", "#.3g"),
                ratio(train, rt, "peak_mem_gib", label),
                ratio(train, rt, "median_s", label),
                cell(rs, "median_s", "#.3g"),
                ratio(sample, rs, "median_s", label),
            ]
        body.append(line)
    return _table(header, body)


def _values(runs: Sequence[dict[str, Any]], key: str, missing: str = "unknown") -> str:
    """The distinct values of one metadata key over the runs, joined by '; '."""
    seen: list[str] = []
    for run in runs:
        value = run.get(key)
        text = missing if value is None else str(value)
        if text not in seen:
            seen.append(text)
    return "; ".join(seen)


def metadata_block(
    runs: Sequence[dict[str, Any]],
    reference: dict[str, Any] | None,
    train_series: str | None,
    sources: Sequence[str],
) -> str:
    """The bullet list saying where, when and how the figures were measured."""
    commits = []
    for run in runs:
        text = f"`{run.get('git_commit', 'unknown')}`" + (
            " (dirty tree)" if run.get("git_dirty") else ""
        )
        if text not in commits:
            commits.append(text)
    overrides = sorted({o for run in runs for o in run.get("overrides", [])})
    parameters = {run.get("parameters") for run in runs} - {None}
    precisions = {run_precision(run) for run in runs}
    lines = [
        f"- **Device:** {_values(runs, 'device')}",
        f"- **Date:** {_values(runs, 'date')}",
        f"- **Git commit:** {'; '.join(commits)}",
        f"- **torch / CUDA:** {_values(runs, 'torch')} / {_values(runs, 'cuda', 'none')}",
        f"- **Config:** `{_values(runs, 'config')}`",
        "- **Overrides:** " + (", ".join(f"`{o}`" for o in overrides) or "none"),
        "- **Parameters:** " + (", ".join(f"{p:,}" for p in sorted(parameters)) or "unknown"),
        "- **Training precision:** " + ", ".join(PRECISION_LABELS[p] for p in sorted(precisions)),
        f"- **Batch size / warm-up / timed steps:** {_values(runs, 'batch_size')} / "
        f"{_values(runs, 'warmup')} / {_values(runs, 'repeat')}",
        f"- **Inputs:** {_values(runs, 'data')}",
        f"- **Results:** {', '.join(f'`{s}`' for s in sources)}",
    ]
    added = sorted(
        {o for run in runs for r in run["results"] for o in r.get("overrides_added", [])}
    )
    if added:
        lines.append(
            "- **Raised per length by the harness:** " + ", ".join(f"`{o}`" for o in added)
        )
    if reference is not None:
        lines.append(
            f"- **Reference:** {reference.get('name', 'reference')} — {reference['source']}; "
            f"training series `{train_series or 'none'}`, sampling series "
            f"`{reference_sample_series(reference)}`"
        )
    lines.append("- **Command:**")
    lines.append("")
    lines.append("  ```")
    lines += [f"  {run.get('command', '')}" for run in runs]
    lines.append("  ```")
    return "\n".join(lines)


def error_notes(rows: dict[tuple[int, str], dict[str, Any]]) -> str:
    """One line per error row (the table only says 'error')."""
    notes = [
        f"- L={length} {mode}: {row['status']}"
        for (length, mode), row in sorted(rows.items())
        if _status(row) == "error"
    ]
    return "\n".join(["Errors:", "", *notes]) if notes else ""
