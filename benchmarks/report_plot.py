"""The log-log plot of a benchmark section: training memory and step times against L, ours
beside the reference, OOM as crosses along the top edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.report_tables import reference_rows, reference_sample_series


def _series_points(rows: dict[int, dict[str, Any]], key: str):
    """(lengths, values) of the ok rows with a value, and the lengths that ran out of memory."""
    ok = sorted((L, r[key]) for L, r in rows.items() if r["status"] == "ok" and r.get(key))
    oom = sorted(L for L, r in rows.items() if r["status"] == "OOM")
    return [L for L, _ in ok], [v for _, v in ok], oom


def _draw_panel(
    ax: Any,
    key: str,
    modes: Sequence[str],
    sources: dict[str, dict[str, dict[int, dict[str, Any]]]],
    lengths: Sequence[int],
    names: dict[str, str],
) -> bool:
    """Draw one log-log panel: a line per (who, mode), OOM as crosses along the top edge.

    Returns:
        Whether any measured value was drawn.
    """
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    styles = {"ours": "-o", "reference": "--s"}
    colors = {("ours", "train"): "C0", ("ours", "sample"): "C1"}
    colors |= {("reference", "train"): "0.45", ("reference", "sample"): "0.7"}
    drawn, crosses = False, []
    for mode in modes:
        for who, source in sources.items():
            if mode not in source:
                continue
            xs, ys, oom = _series_points(source[mode], key)
            color, label = colors[(who, mode)], f"{names[who]} {mode}"
            if xs:
                ax.plot(xs, ys, styles[who], color=color, label=label)
                drawn = True
            if oom:
                crosses.append((oom, color, f"{label} OOM"))
    ax.set_xscale("log")
    if drawn:
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 2.5)  # headroom for the OOM crosses along the top edge
        for oom, color, label in crosses:
            top = [0.96] * len(oom)
            transform = ax.get_xaxis_transform()  # x in data, y in axes fraction
            ax.plot(oom, top, "x", color=color, markersize=9, transform=transform, label=label)
        ax.legend(fontsize=8)
    else:
        ax.set_yticks([])
    ax.set_xlabel("chain length L (residues)")
    ax.grid(True, which="both", alpha=0.3)
    if lengths:
        ax.set_xlim(min(lengths) / 1.15, max(lengths) * 1.15)
        ax.set_xticks(lengths)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.tick_params(axis="x", labelrotation=45)
    return drawn


def plot(
    path: Path,
    title: str,
    rows: dict[tuple[int, str], dict[str, Any]],
    reference: dict[str, Any] | None = None,
    train_series: str | None = None,
) -> None:
    """Save a log-log plot of training memory and step times against L, beside the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = {mode: {L: r for (L, m), r in rows.items() if m == mode} for mode in ("train", "sample")}
    theirs: dict[str, dict[int, dict[str, Any]]] = {}
    if reference is not None:
        if train_series is not None:
            theirs["train"] = reference_rows(reference, train_series)
        if reference_sample_series(reference) in reference["series"]:
            theirs["sample"] = reference_rows(reference, reference_sample_series(reference))
    sources = {"ours": ours, "reference": theirs}
    names = {"ours": "ours", "reference": (reference or {}).get("plot_name", "reference")}
    lengths = sorted({L for L, _ in rows})

    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 4.5))
    if not _draw_panel(ax_mem, "peak_mem_gib", ("train",), sources, lengths, names):
        ax_mem.text(0.5, 0.5, "memory not measured", ha="center", transform=ax_mem.transAxes)
    _draw_panel(ax_time, "median_s", ("train", "sample"), sources, lengths, names)
    ax_mem.set_ylabel("peak allocated memory, train step (GiB)")
    ax_time.set_ylabel("median step time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
