"""Write benchmark results into docs/BENCHMARKS.md as one section (table, metadata, plot).

Usage::

    python benchmarks/report.py RESULTS.json [RESULTS2.json ...] \
        --title "Baseline (train_baseline.config)" \
        [--reference benchmarks/reference_genie_h100.json | --original ORIGINAL.json ...] \
        [--plot docs/benchmarks/baseline.png] [--doc docs/BENCHMARKS.md]

Several result files (e.g. one run split over several commands) are merged into one table; where
two files hold the same (length, mode), the later file wins. The section sits between HTML comment
markers named after the title, so re-running with the same title replaces it in place instead of
appending a copy. The file is created with a header that explains the method when it is absent.

``--original`` takes results of ``bench_original_genie.py`` from the same run instead of the
published reference: the table then sets the original Genie's figures beside ours with the ratio
ours/original per length (``report_original.py``; refused when device, batch size or precision
differ).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report_original import (  # noqa: E402
    TRAIN_SERIES,
    check_same_run,
    original_notes,
    original_reference,
)
from benchmarks.report_plot import plot  # noqa: E402
from benchmarks.report_section import build_section, upsert_section  # noqa: E402
from benchmarks.report_tables import merge_results, pick_train_series  # noqa: E402
from genie.utils.cli import run_command  # noqa: E402
from genie.utils.errors import DataError  # noqa: E402
from genie.utils.paths import ensure_writable_file  # noqa: E402


def load_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON document.

    Raises:
        FileNotFoundError: no such file.
        DataError: not JSON.
    """
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not a JSON results file: {error}") from error


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results JSON written by bench_step.py")
    parser.add_argument("--title", required=True, help="section title (also its identity)")
    parser.add_argument("--reference", help="reference JSON, e.g. reference_genie_h100.json")
    parser.add_argument(
        "--reference-series",
        help="reference training series to compare with (default: the one matching the "
        "run's precision, train_fp32 or train_bf16)",
    )
    parser.add_argument(
        "--original",
        action="append",
        default=[],
        metavar="ORIGINAL.json",
        help="results of bench_original_genie.py from the same run (repeatable), compared with "
        "instead of --reference",
    )
    parser.add_argument("--plot", type=Path, help="PNG to write and link from the section")
    parser.add_argument("--doc", type=Path, default=Path("docs/BENCHMARKS.md"))
    args = parser.parse_args(argv)
    if args.original and (args.reference or args.reference_series):
        parser.error("--original replaces --reference and --reference-series: give one of them")
    ensure_writable_file(args.doc, what="--doc")
    if args.plot is not None:
        ensure_writable_file(args.plot, what="--plot")

    runs = [load_json(p) for p in args.results]
    reference = load_json(args.reference) if args.reference else None
    train_series = pick_train_series(runs, reference, args.reference_series) if reference else None
    notes = ""
    if args.original:
        originals = [load_json(p) for p in args.original]
        check_same_run(runs, originals, args.original)
        reference, train_series = original_reference(originals, args.original), TRAIN_SERIES
        notes = original_notes(originals)
    plot_link = None
    if args.plot is not None:
        plot(args.plot, args.title, merge_results(runs), reference, train_series)
        plot_link = Path(os.path.relpath(args.plot, args.doc.parent)).as_posix()
    section = build_section(
        args.title, runs, args.results, reference, train_series, plot_link, notes
    )
    upsert_section(args.doc, args.title, section)
    print(section)
    print(
        f"wrote section {args.title!r} to {args.doc}" + (f" and {args.plot}" if args.plot else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
