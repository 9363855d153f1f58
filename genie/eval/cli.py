"""The ``genie-eval`` command (also ``python -m genie.eval``).

::

    genie-eval SAMPLES_DIR [--reference PATH_OR_NPZ] --out OUT_DIR [--buckets 64,128,...]
        [--max-tm-length N] [--max-tm-pairs N] [--tm-time-budget S] [--seed N]

Writes ``OUT_DIR/report.md`` (one page), ``OUT_DIR/metrics.json`` (every figure) and
``OUT_DIR/*.png`` (plots); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from genie.data.atomic import atomic_open
from genie.eval.figures import make_figures
from genie.eval.inputs import read_reference, read_samples
from genie.eval.metrics import evaluate_backbones, summarize_reference
from genie.eval.optional import import_optional
from genie.eval.report import render_report
from genie.eval.settings import DEFAULT_BUCKETS, EvalSettings, parse_buckets
from genie.utils.cli import run_command
from genie.utils.errors import UserInputError
from genie.utils.paths import ensure_writable_dir


class ProgressPrinter:
    """Prints ``[genie-eval 12s] stage done/total`` lines, at most one per ``interval_s`` per
    stage plus the last one of each stage."""

    def __init__(self, *, stream: TextIO | None = None, interval_s: float = 2.0) -> None:
        self._stream = stream  # None: sys.stderr at the time of printing
        self._interval_s = interval_s
        self._start = time.monotonic()
        self._last: dict[str, float] = {}

    def message(self, text: str) -> None:
        print(
            f"[genie-eval {time.monotonic() - self._start:5.0f}s] {text}",
            file=self._stream or sys.stderr,
            flush=True,
        )

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last.get(stage, -1e9) < self._interval_s:
            return
        self._last[stage] = now
        self.message(f"{stage} {done}/{total}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genie-eval",
        description="Score generated Cα backbones against real structures: Cα geometry, "
        "clashes, P-SEA secondary structure, Rg scaling and TM-score diversity.",
    )
    parser.add_argument("samples", help="folder of generated PDB/mmCIF files (.gz too)")
    parser.add_argument(
        "--reference",
        default=None,
        help="a processed dataset .npz or a folder of real PDB/mmCIF files "
        "(default: the bundled TS50 chains)",
    )
    parser.add_argument("--out", required=True, help="output folder (created)")
    defaults = EvalSettings()
    parser.add_argument(
        "--buckets",
        default=",".join(map(str, DEFAULT_BUCKETS)),
        help="increasing upper edges of the length buckets (default %(default)s)",
    )
    parser.add_argument(
        "--max-tm-length",
        type=int,
        default=defaults.max_tm_length,
        help="longest chain aligned for diversity (default %(default)s)",
    )
    parser.add_argument(
        "--max-tm-pairs",
        type=int,
        default=defaults.max_tm_pairs,
        help="most TM-align pairs per bucket, 0 skips (default %(default)s)",
    )
    parser.add_argument(
        "--tm-time-budget",
        type=float,
        default=defaults.tm_time_budget_s,
        help="seconds of TM-align per bucket (default %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of the TM pair subset (default %(default)s)",
    )
    return parser


def run(args: argparse.Namespace, progress: ProgressPrinter) -> Path:
    """Evaluate and write the report, JSON and plots; returns the report path.

    Raises:
        UserInputError: a bad option value, or a missing optional package.
        NotADirectoryError, PermissionError: ``--out`` cannot be written (checked first).
    """
    try:
        settings = EvalSettings(
            buckets=parse_buckets(args.buckets),
            max_tm_length=args.max_tm_length,
            max_tm_pairs=args.max_tm_pairs,
            tm_time_budget_s=args.tm_time_budget,
            seed=args.seed,
        )
    except ValueError as error:  # the option values, checked by EvalSettings
        raise UserInputError(f"bad option: {error}") from None
    out = ensure_writable_dir(args.out, what="--out")
    for module, package, purpose in (
        ("biotite.structure", "biotite", "P-SEA"),
        ("tmtools", "tmtools", "TM-score diversity"),
        ("matplotlib", "matplotlib", "plots"),
    ):
        import_optional(module, package=package, purpose=purpose)  # fail before slow work

    samples = read_samples(args.samples, progress=progress)
    progress.message(f"{len(samples.traces)} sample chains, skipped files: {len(samples.skipped)}")
    reference_set = read_reference(
        args.reference, min_length=settings.reference_min_length, progress=progress
    )
    progress.message(f"{len(reference_set.traces)} reference chains from {reference_set.source}")
    reference = summarize_reference(
        reference_set.traces,
        names=reference_set.names,
        source=reference_set.source,
        settings=settings,
        progress=progress,
    )
    metrics = evaluate_backbones(
        samples.traces, reference, names=samples.names, settings=settings, progress=progress
    )
    metrics["inputs"] = {
        "samples": str(args.samples),
        "skipped_sample_files": samples.skipped,
        "skipped_reference": reference_set.skipped,
    }

    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    for name, figure in make_figures(metrics).items():
        figure.savefig(out / f"{name}.png", dpi=110)
        plots[name] = f"{name}.png"
    with atomic_open(out / "metrics.json") as handle:
        json.dump(metrics, handle, indent=1)
    report = out / "report.md"
    text = render_report(
        metrics, samples_source=str(args.samples), plots=plots, skipped=samples.skipped
    )
    with atomic_open(report) as handle:
        handle.write(text)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``genie-eval``; returns the exit status: 0, 2 on a user mistake (one line
    on stderr), 1 on a bug (:mod:`genie.utils.cli`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(_evaluate, args, prog=parser.prog)


def _evaluate(args: argparse.Namespace) -> None:
    progress = ProgressPrinter()
    report = run(args, progress)
    progress.message(f"wrote {report} (+ metrics.json and plots)")
    print(report)
