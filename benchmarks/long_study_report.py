"""Tables and the Rg plot of the long-chain study (``benchmarks/long_study.py``) for
docs/QUALITY.md.

Usage::

    python benchmarks/long_study_report.py [--work docs/quality/long_study] [--json FILE.json] \
        [--plot FILE.png]

Reads ``WORK/eval/SET/metrics.json`` of every sample set (genie-eval with one bucket per length)
and the arms' ``WORK/training/ARM.json`` (optimiser steps, epochs, training minutes, commit,
device, date: written by ``long_study.py train``, committed by ``long_study.py record``; WORK may
be the committed results or a run's folder). Prints one markdown table of the training runs and
one per length (a row per sample set, then the reference), and writes
the rows as JSON and a log-log plot of Rg against L: every set's mean ± sd per length, the
reference's chains and the real-chain fit Rg = √3 σ(L) (``LENGTH_FIT`` of
:mod:`genie.diffusion.noise_scale`, whole chains up to 2,128 residues). ``Rg / fit`` is the
mean over the set's chains of that length of Rg / (√3 σ(L)); ``Rg / ref.`` is genie-eval's
ratio to its reference's own fit (unbroken segments, extrapolated above their lengths).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.long_study import ARMS, RESULTS, sample_sets  # noqa: E402
from benchmarks.long_study_files import describe  # noqa: E402
from benchmarks.quality_report import sample_figures  # noqa: E402
from genie.diffusion.noise_scale import LENGTH_FIT  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402

HEADER = (
    "| set | chains | Cα–Cα (Å) | outside 3.6-4.0 Å | clashes / residue | helix / strand / coil | "
    "JSD angle | JSD dihedral | Rg / fit | Rg / ref. | mean pairwise TM |"
)


def fit_rg(length: int) -> float:
    """The real chains' Rg at ``length`` (Å): √3 σ(L)."""
    return math.sqrt(3) * LENGTH_FIT(length)


def row(label: str, group: dict[str, Any], chains: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one group of metrics.json (a bucket, or the reference) and its chains
    (``samples`` rows, with ``length`` and ``rg``)."""
    ratios = [c["rg"] / fit_rg(c["length"]) for c in chains if c.get("rg") is not None]
    figures = sample_figures(group)
    mean_tm = figures.pop("mean_tm")
    return {
        "set": label,
        **figures,
        "rg_over_fit": sum(ratios) / len(ratios) if ratios else None,
        "rg_over_reference": group.get("rg_ratio_to_reference"),
        "mean_tm": mean_tm,
    }


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [HEADER, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['chains']} | {r['ca_ca_mean']:.2f} ± {r['ca_ca_std']:.2f} | "
            f"{r['ca_ca_outside']:.2f} | {r['clashes_per_residue']:.3f} | "
            f"{r['helix']:.2f} / {r['strand']:.2f} / {r['coil']:.2f} | "
            f"{_fmt(r['jsd_angle'], '.3f')} | {_fmt(r['jsd_dihedral'], '.3f')} | "
            f"{_fmt(r['rg_over_fit'], '.2f')} | {_fmt(r['rg_over_reference'], '.2f')} | "
            f"{_fmt(r['mean_tm'], '.2f')} |"
        )
    return "\n".join(lines)


def collect(work: Path) -> tuple[dict[int, list[dict[str, Any]]], dict[str, Any], dict]:
    """Rows per length (sets in arm order), the reference row and per-set Rg points."""
    per_length: dict[int, list[dict[str, Any]]] = {}
    reference, points = None, {}
    for arm, spec in ARMS.items():
        for sampler in spec.samplers:
            name = f"{arm}_{sampler}"
            path = work / "eval" / name / "metrics.json"
            if not path.is_file():
                continue
            metrics = json.loads(path.read_text())
            if reference is None:
                ref = metrics["reference"]
                source = ref["source"]  # a path, or e.g. "bundled TS50 (genie/data/…)"
                short = Path(source).name if source.endswith(".npz") else source.split(" (")[0]
                reference = row(f"reference ({short})", ref, ref["chains"])
                points["reference"] = [(c["length"], c["rg"]) for c in ref["chains"]]
            samples = metrics["samples"]
            points[name] = [(s["length"], s["rg"]) for s in samples if s.get("rg") is not None]
            for bucket in metrics["buckets"]:
                length = bucket["max_length"]
                chains = [s for s in samples if s["bucket"] == bucket["label"]]
                per_length.setdefault(length, []).append(row(name, bucket, chains))
    return per_length, reference, points


def plot(points: dict[str, list[tuple[int, float]]], path: Path) -> None:
    """Rg against L (log-log): each set's mean ± sd per length (a colour per arm, a marker and
    line style per set of that arm), the reference chains, the fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 4.8))
    ref = np.array(points.get("reference", []), dtype=float).reshape(-1, 2)
    if len(ref):
        ax.scatter(ref[:, 0], ref[:, 1], s=4, color="0.7", label="real chains (reference)")
    grid = np.geomspace(10, 4096, 100)
    ax.plot(grid, [fit_rg(n) for n in grid], "k--", label="real-chain fit √3·σ(L)")
    sets = [name for name, pts in points.items() if name != "reference" and pts]
    arm_of = {name: arm for arm, name, _ in sample_sets(list(ARMS))}
    arms = list(dict.fromkeys(arm_of.get(name, name) for name in sets))
    colours = plt.get_cmap("tab10")
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-.")]
    seen: dict[str, int] = {}
    for name in sets:
        arm = arm_of.get(name, name)
        marker, line = styles[seen.setdefault(arm, 0) % len(styles)]
        seen[arm] += 1
        arr = np.array(points[name], dtype=float)
        lengths = np.unique(arr[:, 0])
        means = [arr[arr[:, 0] == n, 1].mean() for n in lengths]
        sds = [arr[arr[:, 0] == n, 1].std() for n in lengths]
        ax.errorbar(lengths, means, yerr=sds, marker=marker, ls=line, ms=4, capsize=2,
                    color=colours(arms.index(arm) % 10), label=name)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chain length L (residues)")
    ax.set_ylabel("radius of gyration (Å)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def training_records(work: Path) -> list[dict[str, Any]]:
    """The arms' training records in arm order (``WORK/training/ARM.json``)."""
    paths = [work / "training" / f"{arm}.json" for arm in ARMS]
    return [json.loads(path.read_text()) for path in paths if path.is_file()]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=RESULTS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None:
            ensure_writable_file(path, what=option)
    work = args.work if args.work.is_absolute() else REPO / args.work
    per_length, reference, points = collect(work)
    training = training_records(work)
    print("| arm | what it changes | training | commit, device, date |\n|---|---|---|---|")
    for t in training:
        print(
            f"| {t['arm']} | {t['what']} | {describe(t['progress'])} of "
            f"{t['budget_minutes']:g} | {t['git_commit']}, {t['device']}, {t['date'][:10]} |"
        )
    for length in sorted(per_length):
        print(f"\n### L = {length:,}\n")
        print(table([*per_length[length], reference]))
    if args.json:
        rows = {str(n): r for n, r in sorted(per_length.items())}
        args.json.write_text(json.dumps({"training": training, "reference": reference,
                                         "lengths": rows}, indent=1))  # fmt: skip
    if args.plot:
        plot(points, args.plot)


if __name__ == "__main__":
    sys.exit(run_command(main))
