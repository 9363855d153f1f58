"""The original Genie's rows, measured in the same run as ours, as the reference of a section.

``bench_original_genie.py`` writes results JSONs in ``bench_step.py``'s format. ``report.py
--original FILE ...`` turns them into a reference document (``original_reference``), so the
section's table sets the original's training memory, step time and sample-step time beside ours
for every length, with the ratio ours/original (columns ``orig ...``, ``... ours/orig``). The
comparison is refused (:class:`~genie.utils.errors.DataError`, exit 2) unless both sides ran on
the same device, at the same batch size, with the same fp32 matrix-product precision and the same
autocast: a ratio between runs that differ in these says nothing about the code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.report_tables import merge_results, run_precision
from genie.utils.errors import DataError

TRAIN_SERIES = "train"
SAMPLE_SERIES = "sample"
LABEL = "orig"
_AUTOCAST_OF_PRECISION = {"32": None, "bf16": "bf16", "16": "fp16"}


def _ours(run: dict[str, Any]) -> dict[str, Any]:
    """The settings of one of our runs that must match the original's."""
    cfg = run.get("resolved_config") or {}
    return {
        "device": run.get("device"),
        "batch size": run.get("batch_size"),
        "matmul precision": cfg.get("matmulPrecision"),
        "autocast": _AUTOCAST_OF_PRECISION[run_precision(run)],
    }


def _theirs(run: dict[str, Any]) -> dict[str, Any]:
    """The same settings of one run of the original Genie."""
    return {
        "device": run.get("device"),
        "batch size": run.get("batch_size"),
        "matmul precision": run.get("matmul_precision"),
        "autocast": run.get("autocast"),
    }


def check_same_run(
    ours: Sequence[dict[str, Any]],
    originals: Sequence[dict[str, Any]],
    sources: Sequence[str],
) -> None:
    """Refuse a comparison of runs whose device, batch size or precision differ.

    Args:
        ours: our results documents (``bench_step.py``).
        originals: the original Genie's results documents (``bench_original_genie.py``).
        sources: the file names of ``originals``, for the messages.

    Raises:
        DataError: a file that ``bench_original_genie.py`` did not write, or a setting that is not
            the same in every run (the message names the setting and both sides' values).
    """
    for doc, source in zip(originals, sources, strict=True):
        if "original" not in doc:
            raise DataError(f"{source} was not written by benchmarks/bench_original_genie.py")
    mine = [_ours(run) for run in ours]
    theirs = [_theirs(run) for run in originals]
    for key in mine[0]:
        our_values = sorted({str(s[key]) for s in mine})
        their_values = sorted({str(s[key]) for s in theirs})
        if len(our_values) != 1 or our_values != their_values:
            raise DataError(
                f"--original: the {key} differs between the runs (ours: {', '.join(our_values)}; "
                f"original Genie: {', '.join(their_values)}); measure both in the same run"
            )


def original_reference(
    originals: Sequence[dict[str, Any]], sources: Sequence[str]
) -> dict[str, Any]:
    """A reference document (see ``report_tables``) of the original Genie's train and sample rows.

    Args:
        originals: results documents of ``bench_original_genie.py`` (merged; later files win).
        sources: their file names, named in the section's metadata.
    """
    rows = merge_results(originals)
    commits = sorted({doc["original"]["commit"][:12] for doc in originals})
    dates = sorted({str(doc.get("date")) for doc in originals})
    commands = "; ".join(f"`{doc.get('command', '')}`" for doc in originals)
    parameters = sorted({doc.get("parameters") for doc in originals} - {None})
    return {
        "name": (
            f"original Genie (aqlaboratory/genie {', '.join(commits)}; "
            f"{', '.join(f'{p:,}' for p in parameters) or 'unknown'} parameters), measured in the "
            f"same run ({', '.join(dates)})"
        ),
        "source": f"{', '.join(f'`{s}`' for s in sources)}, by {commands}",
        "label": LABEL,
        "plot_name": "original Genie",
        "sample_series": SAMPLE_SERIES,
        "series": {
            mode: {"mode": mode, "results": [r for (_, m), r in sorted(rows.items()) if m == mode]}
            for mode in (TRAIN_SERIES, SAMPLE_SERIES)
        },
    }


def original_notes(originals: Sequence[dict[str, Any]]) -> str:
    """Lines under the table: the original's reverse-loop rows and the reasons of its errors."""
    rows = merge_results(originals)
    lines = []
    for (length, mode), row in sorted(rows.items()):
        status = row["status"]
        if mode == "reverse" and status == "ok":
            loop = f"; one whole loop took {row['loop_s']:.1f} s" if "loop_s" in row else ""
            lines.append(
                f"- Original Genie's own sampling loop at L={length}: {row['median_s']:.4f} s per "
                f"step (median), about {row['estimated_loop_s']:.1f} s for all steps{loop}"
            )
        elif mode == "reverse" and status == "OOM":
            lines.append(f"- Original Genie's own sampling loop at L={length}: OOM")
        elif status not in ("ok", "OOM"):
            lines.append(f"- Original Genie L={length} {mode}: {status}")
    return "\n".join(lines)
