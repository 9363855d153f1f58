"""Matplotlib figures of an evaluation, made from the metrics dict alone.

The figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state, no GUI
backend), so the command line saves them with ``savefig`` and a training loop can hand them to
TensorBoard's ``add_figure``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genie.eval.optional import import_optional
from genie.eval.secondary_structure import SSE_CLASSES

_GENERATED, _REFERENCE = "tab:orange", "tab:blue"
_TITLES = {
    "bond_length": ("consecutive Cα distance", "Å"),
    "bond_angle": ("virtual bond angle (i-1, i, i+1)", "degrees"),
    "dihedral": ("virtual dihedral (i-1 .. i+2)", "degrees"),
}


def _new_figure(width: float, height: float):
    figure_module = import_optional("matplotlib.figure", package="matplotlib", purpose="plots")
    return figure_module.Figure(figsize=(width, height), layout="constrained")


def _density(counts: list[int], edges: np.ndarray) -> np.ndarray:
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    return values / (total * np.diff(edges)) if total > 0 else values


def distributions_figure(metrics: dict[str, Any]):
    """Bond length, bond angle and dihedral densities: generated (all chains) vs reference."""
    figure = _new_figure(13.0, 3.6)
    axes = figure.subplots(1, 3)
    edges = metrics["settings"]["histogram_edges"]
    for ax, (key, (title, unit)) in zip(axes, _TITLES.items(), strict=True):
        bins = np.asarray(edges[key])
        for source, color, label in (
            (metrics["reference"], _REFERENCE, "reference"),
            (metrics["overall"], _GENERATED, "generated"),
        ):
            density = _density(source["histograms"][key], bins)
            ax.stairs(density, bins, color=color, label=label, linewidth=1.6)
        jsd = metrics["overall"]["jsd"][key]
        suffix = "" if jsd is None else f"  (JSD {jsd:.3f} bits)"
        ax.set_title(title + suffix, fontsize=10)
        ax.set_xlabel(unit)
        ax.set_ylabel("density")
    axes[0].legend(fontsize=8)
    return figure


def rg_figure(metrics: dict[str, Any]):
    """Radius of gyration against length (log-log) with the fitted ``Rg = R0 · L^ν`` lines."""
    figure = _new_figure(6.0, 4.5)
    ax = figure.subplots()
    reference = metrics["reference"]["chains"]
    samples = metrics["samples"]
    ax.scatter(
        [c["length"] for c in reference],
        [c["rg"] for c in reference],
        s=10,
        color=_REFERENCE,
        alpha=0.6,
        label="reference",
    )
    ax.scatter(
        [s["length"] for s in samples],
        [s["rg"] for s in samples],
        s=10,
        color=_GENERATED,
        alpha=0.6,
        label="generated",
    )
    lengths = [c["length"] for c in reference] + [s["length"] for s in samples]
    grid = np.geomspace(min(lengths), max(lengths), 50)
    for fit, color, label in (
        (metrics["reference"]["rg_fit"], _REFERENCE, "reference"),
        (metrics["generated_rg_fit"], _GENERATED, "generated"),
    ):
        if fit is not None:
            ax.plot(
                grid,
                fit["r0"] * grid ** fit["nu"],
                color=color,
                linestyle="--",
                label=f"{label} fit: {fit['r0']:.2f}·L^{fit['nu']:.3f}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticker = import_optional("matplotlib.ticker", package="matplotlib", purpose="plots")
    plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("length L (residues)")
    ax.set_ylabel("radius of gyration (Å)")
    ax.legend(fontsize=8)
    return figure


def sse_figure(metrics: dict[str, Any]):
    """Helix/strand/coil fractions: reference, all generated chains, each length bucket."""
    groups = [("reference", metrics["reference"]), ("generated", metrics["overall"])]
    groups += [(b["label"], b) for b in metrics["buckets"]]
    figure = _new_figure(max(5.0, 1.1 * len(groups) + 2.0), 4.0)
    ax = figure.subplots()
    x = np.arange(len(groups))
    width = 0.8 / len(SSE_CLASSES)
    for k, name in enumerate(SSE_CLASSES):
        values = [group["sse"][name] for _, group in groups]
        ax.bar(x + (k - 1) * width, values, width, label=name)
    ax.set_xticks(x, [label for label, _ in groups], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("fraction of residues (P-SEA)")
    ax.set_ylim(0.0, 1.0)
    ax.legend(fontsize=8)
    return figure


def make_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """All figures of an evaluation.

    Args:
        metrics: the dict of :func:`genie.eval.metrics.evaluate_backbones`.

    Returns:
        ``{"distributions": Figure, "rg_vs_length": Figure, "secondary_structure": Figure}``.

    Raises:
        MissingDependencyError: matplotlib is not installed.
    """
    return {
        "distributions": distributions_figure(metrics),
        "rg_vs_length": rg_figure(metrics),
        "secondary_structure": sse_figure(metrics),
    }
