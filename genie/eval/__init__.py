"""Evaluation of generated Cα backbones against real structures.

Python API (numpy in, a JSON-ready dict out; the training loop can log its figures)::

    from genie.eval import EvalSettings, evaluate_backbones, make_figures, summarize_reference

    reference = summarize_reference(real_traces, settings=settings)  # once
    metrics = evaluate_backbones(generated_traces, reference, settings=settings)
    figures = make_figures(metrics)  # {"distributions": Figure, ...}

Command line: ``genie-eval SAMPLES_DIR --out OUT_DIR`` (``python -m genie.eval``), see
:mod:`genie.eval.cli` and ``docs/EVALUATION.md``.

Modules, one concept each: ``settings`` (buckets, caps), ``ca_geometry`` (bonds, angles,
dihedrals, Rg), ``clashes`` (grid search), ``divergence`` (fixed histograms, JSD),
``secondary_structure`` (P-SEA via biotite), ``diversity`` (TM-align via tmtools), ``summary``
(per-chain summaries and groups), ``checks`` (pass/fail thresholds), ``metrics`` (the whole
evaluation), ``inputs`` (files), ``figures``, ``report``, ``cli``.

biotite, tmtools and matplotlib are optional (``pip install 'genie-long[eval]'``): this package
imports without them, and a metric that needs one raises
:class:`~genie.eval.optional.MissingDependencyError` naming the extra.
"""

from genie.eval.figures import make_figures
from genie.eval.metrics import ReferenceSummary, evaluate_backbones, summarize_reference
from genie.eval.optional import MissingDependencyError
from genie.eval.report import render_report
from genie.eval.settings import EvalSettings

__all__ = [
    "EvalSettings",
    "MissingDependencyError",
    "ReferenceSummary",
    "evaluate_backbones",
    "make_figures",
    "render_report",
    "summarize_reference",
]
