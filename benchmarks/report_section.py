"""The markdown section of a benchmark run in docs/BENCHMARKS.md, and its replacement in place.

The section sits between HTML comment markers named after the title, so re-running with the same
title replaces it instead of appending a copy. The file is created with a header that explains
the method when it is absent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.report_tables import error_notes, merge_results, metadata_block, results_table

DOC_HEADER = """\
# Benchmarks

Every figure on this page was measured by `benchmarks/bench_step.py` and written here by
`benchmarks/report.py` (see `benchmarks/README.md` for how to run them). Method:

- **Memory** is `torch.cuda.max_memory_allocated` over one full training step (forward, backward,
  gradient clipping, optimiser step) at batch size 1 with the config named in the section, reset
  after the warm-up steps; GiB = 2^30 bytes. It counts tensors only: the CUDA context and the
  caching allocator's unused reserve come on top.
- **Time** is the median wall-clock time of the timed steps after the warm-up steps, with a device
  synchronisation around each step; samples/s = batch size / median step time.
- **Sample step** is one denoiser forward pass under `torch.no_grad()` (and the config's autocast)
  at a random timestep: a 1,000-step sample takes about 1,000 times as long.
- Each length and mode runs in a fresh process, so an out-of-memory error at one length cannot
  affect the next; it is recorded as **OOM**.
- Inputs are synthetic, seeded, protein-like Cα traces with 3.8 Å steps unless the section's
  metadata names a dataset.
"""


def slug(title: str) -> str:
    """The marker name of a section: the title in lower case, runs of other characters as '-'."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def begin_marker(title: str) -> str:
    """The HTML comment that opens a section."""
    return f"<!-- bench-section: {slug(title)} -->"


def end_marker(title: str) -> str:
    """The HTML comment that closes a section."""
    return f"<!-- /bench-section: {slug(title)} -->"


def build_section(
    title: str,
    runs: Sequence[dict[str, Any]],
    sources: Sequence[str],
    reference: dict[str, Any] | None = None,
    train_series: str | None = None,
    plot_link: str | None = None,
    notes: str = "",
) -> str:
    """The whole markdown section, markers included; ``notes`` (markdown) follow the table."""
    rows = merge_results(runs)
    parts = [
        begin_marker(title),
        f"## {title}",
        metadata_block(runs, reference, train_series, sources),
        results_table(rows, reference, train_series),
    ]
    if notes:
        parts.append(notes)
    errors = error_notes(rows)
    if errors:
        parts.append(errors)
    if plot_link is not None:
        parts.append(f"![{title}: memory and step time against length]({plot_link})")
    parts.append(end_marker(title))
    return "\n\n".join(parts) + "\n"


def upsert_section(doc: Path, title: str, section: str) -> None:
    """Replace the section with this title in ``doc``, or append it; create ``doc`` if absent."""
    text = doc.read_text() if doc.exists() else DOC_HEADER
    pattern = re.compile(
        re.escape(begin_marker(title)) + r".*?" + re.escape(end_marker(title)) + r"\n?", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
