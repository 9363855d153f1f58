"""The curves of a training run made of parts (benchmarks/quality_report.py)."""

from __future__ import annotations

from benchmarks.quality_report import chain_curves


def test_parts_continue_from_the_previous_parts_last_step():
    first = {"train": [(100, 1.0), (200, 0.9)], "val": [(200, 0.95)]}
    second = {"train": [(50, 0.8), (150, 0.7)], "val": [(40, 0.85), (150, 0.75)]}
    chained, joins = chain_curves([first, second])
    assert chained == {
        "train": [(100, 1.0), (200, 0.9), (250, 0.8), (350, 0.7)],
        "val": [(200, 0.95), (240, 0.85), (350, 0.75)],
    }
    assert joins == [200]
    assert chain_curves([first]) == (first, [])
