"""Tables and training curves of docs/QUALITY.md from genie-eval outputs and TensorBoard runs.

Usage::

    python benchmarks/quality_report.py --eval LABEL=EVAL_DIR [--eval ...] \
        [--run NAME=RUN_DIR[,RUN_DIR ...] ...] [--curves docs/quality/training_curves.png] \
        [--json docs/quality/evaluation.json]

``EVAL_DIR`` is an output folder of ``genie-eval`` (its ``metrics.json``); ``RUN_DIR`` a run folder
(``logDirectory/name/version_N``) whose event files hold ``train/noise_loss_epoch`` and
``val/noise_loss``; several comma-separated run folders are one training run in parts (a run
started with ``--init-weights`` from the previous part's last checkpoint): each part's steps
continue from the previous part's last step, and the plot marks the joins. Prints one markdown
table (the reference first, then one row per label) and
writes the curves and a JSON of the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.utils.cli import run_command  # noqa: E402
from genie.utils.errors import UserInputError  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402


def sample_figures(summary: dict[str, Any]) -> dict[str, Any]:
    """The per-set figures of a ``genie-eval`` group (a bucket, ``overall`` or ``reference`` of
    metrics.json): chains, Cα–Cα, clashes, secondary structure, angle/dihedral JSD, mean TM."""
    jsd = summary.get("jsd") or {}
    return {
        "chains": summary["num_chains"],
        "ca_ca_mean": summary["bond_length"]["mean"],
        "ca_ca_std": summary["bond_length"]["std"],
        "ca_ca_outside": summary["bond_length"]["fraction_outside"],
        "clashes_per_residue": summary["clashes"]["per_residue"],
        "helix": summary["sse"]["helix"],
        "strand": summary["sse"]["strand"],
        "coil": summary["sse"]["coil"],
        "jsd_angle": jsd.get("bond_angle"),
        "jsd_dihedral": jsd.get("dihedral"),
        "mean_tm": (summary.get("diversity") or {}).get("mean_tm"),
    }


def _row(label: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The figures of one evaluated set (``overall`` or ``reference`` of metrics.json)."""
    figures = sample_figures(summary)
    mean_tm = figures.pop("mean_tm")
    return {"set": label, **figures, "rg_ratio": summary.get("rg_ratio_to_reference"),
            "mean_tm": mean_tm}  # fmt: skip


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of evaluation rows."""
    header = (
        "| set | chains | Cα–Cα (Å) | outside 3.6-4.0 Å | clashes / residue | helix / strand / coil"
        " | JSD angle | JSD dihedral | Rg / reference | mean pairwise TM |"
    )
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['chains']} | {r['ca_ca_mean']:.2f} ± {r['ca_ca_std']:.2f} | "
            f"{r['ca_ca_outside']:.2f} | {r['clashes_per_residue']:.3f} | "
            f"{r['helix']:.2f} / {r['strand']:.2f} / {r['coil']:.2f} | "
            f"{_fmt(r['jsd_angle'], '.3f')} | {_fmt(r['jsd_dihedral'], '.3f')} | "
            f"{_fmt(r['rg_ratio'], '.2f')} | {_fmt(r['mean_tm'], '.2f')} |"
        )
    return "\n".join(lines)


def read_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``train/noise_loss_epoch`` and ``val/noise_loss`` of every event file of a run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, list[tuple[int, float]]] = {
        "train/noise_loss_epoch": [],
        "val/noise_loss": [],
    }
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        for tag, points in curves.items():
            if tag in events.Tags()["scalars"]:
                points += [(e.step, e.value) for e in events.Scalars(tag)]
    return {tag: sorted(points) for tag, points in curves.items()}


def chain_curves(
    parts: list[dict[str, list[tuple[int, float]]]],
) -> tuple[dict[str, list[tuple[int, float]]], list[int]]:
    """The curves of a run trained in parts, each part's steps shifted to follow the previous
    part's last step (its step counter restarted at 0); also returns the join steps."""
    chained: dict[str, list[tuple[int, float]]] = {tag: [] for tag in parts[0]}
    offset, joins = 0, []
    for i, part in enumerate(parts):
        if i:
            joins.append(offset)
        last = 0
        for tag, points in part.items():
            chained[tag] += [(step + offset, value) for step, value in points]
            last = max([last, *(step for step, _ in points)])
        offset += last
    return chained, joins


def plot_curves(
    runs: dict[str, dict[str, list[tuple[int, float]]]],
    path: Path,
    joins: dict[str, list[int]] | None = None,
) -> None:
    """One panel: the noise loss of every run against optimiser steps; ``joins``: per run, the
    steps where a new part began (dotted vertical lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (name, curves), color in zip(
        runs.items(), ("tab:blue", "tab:orange", "tab:green"), strict=False
    ):
        for tag, style in (("train/noise_loss_epoch", "--"), ("val/noise_loss", "-")):
            if curves[tag]:
                steps, values = zip(*curves[tag], strict=True)
                kind = "train (epoch mean)" if tag.startswith("train") else "validation"
                ax.plot(steps, values, style, color=color, label=f"{name}: {kind}")
        for i, step in enumerate((joins or {}).get(name, [])):
            label = None if i else f"{name}: next part (fresh optimiser)"
            ax.axvline(step, color=color, linestyle=":", linewidth=1, label=label)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("noise loss (mean squared ε error)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _pair(item: str, option: str) -> tuple[str, str]:
    """``LABEL=DIR`` -> ``(LABEL, DIR)``."""
    label, sep, value = item.rpartition("=")
    if not sep or not label or not value:
        raise UserInputError(f"{option} takes LABEL=DIR, got {item!r}")
    return label, value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--curves", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    for option, path in (("--curves", args.curves), ("--json", args.json)):
        if path is not None:
            ensure_writable_file(path, what=option)
    rows, reference = [], None
    for item in args.eval:
        label, folder = _pair(item, "--eval")
        metrics = json.loads((Path(folder) / "metrics.json").read_text())
        if reference is None:
            reference = _row(
                f"reference ({Path(metrics['reference']['source']).name})", metrics["reference"]
            )
        rows.append(_row(label, metrics["overall"]))
    if rows:
        print(table([reference, *rows]))
    if args.run and args.curves:
        runs, joins = {}, {}
        for item in args.run:
            name, folders = _pair(item, "--run")
            parts = [read_curves(Path(folder)) for folder in folders.split(",")]
            runs[name], joins[name] = chain_curves(parts)
            last = {tag: points[-1] for tag, points in runs[name].items() if points}
            print(f"{name}: last points {last}, parts joined at steps {joins[name]}")
        plot_curves(runs, args.curves, joins)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"reference": reference, "rows": rows}, indent=1))


if __name__ == "__main__":
    sys.exit(run_command(main))
