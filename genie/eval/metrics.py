"""The evaluation as a function: Cα arrays in, a JSON-ready metrics dict out.

Notation: ``n_i`` residues of chain i; coordinates in Å.

Every group (each length bucket of the generated chains, and all of them, ``overall``) is
compared with the whole reference set: local geometry and secondary-structure composition hardly
depend on chain length, and small reference sets such as TS50 (79-173 residues) cover one or two
buckets only. Rg is compared at equal length through the reference's fitted ``Rg = R0 · L^ν``
(an extrapolation outside the reference's lengths, which the report states).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genie.eval.checks import protein_likeness_checks
from genie.eval.divergence import HISTOGRAM_EDGES
from genie.eval.diversity import DiversityResult, pairwise_tm_diversity
from genie.eval.settings import EvalSettings, bucket_bounds, bucket_index, bucket_label
from genie.eval.summary import ChainSummary, aggregate, compare, rg_fit, summarize_chain

METRICS_VERSION = 1

Progress = Callable[[str, int, int], None]  # (stage, done, total)
_REFERENCE_KEYS = ("clash_distance", "clash_min_separation", "bond_range")  # shape a summary


@dataclass(frozen=True, kw_only=True, eq=False)
class ReferenceSummary:
    """The reference set, summarised once and reusable across evaluations (e.g. every
    validation epoch of a training run).

    Attributes:
        source: where the reference came from (for the report).
        chains: one summary per reference chain.
        group: :func:`genie.eval.summary.aggregate` of the chains.
        fit: :func:`genie.eval.summary.rg_fit` of the chains (Rg scaling), or None.
        settings: the settings it was summarised with (its clash and bond definitions must be
            those of the evaluation that uses it).
    """

    source: str
    chains: tuple[ChainSummary, ...]
    group: dict[str, Any]
    fit: dict[str, Any] | None
    settings: EvalSettings

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            **self.group,
            "rg_fit": self.fit,
            "chains": [{"name": c.name, "length": c.length, "rg": c.rg} for c in self.chains],
        }


def _summaries(
    traces: Sequence[np.ndarray],
    names: Sequence[str],
    settings: EvalSettings,
    stage: str,
    progress: Progress | None,
) -> list[ChainSummary]:
    if len(names) != len(traces):
        raise ValueError(f"names has {len(names)} entries for {len(traces)} {stage} chains")
    summaries = []
    for index, (name, coords) in enumerate(zip(names, traces, strict=True)):
        summaries.append(summarize_chain(coords, name=name, settings=settings))
        if progress is not None:
            progress(stage, index + 1, len(traces))
    return summaries


def summarize_reference(
    traces: Sequence[np.ndarray],
    *,
    names: Sequence[str] | None = None,
    source: str = "reference",
    settings: EvalSettings | None = None,
    progress: Progress | None = None,
) -> ReferenceSummary:
    """Summarise reference chains for :func:`evaluate_backbones`.

    Args:
        traces: real chains ``[n_i, 3]`` (Å); at least one.
        names: one name per chain (default ``ref_<i>``).
        source: a description for the report (a path, "bundled TS50").
        settings: the evaluation settings (default :class:`EvalSettings`).
        progress: called with ("reference", done, total).
    """
    settings = settings or EvalSettings()
    if not traces:
        raise ValueError("the reference set is empty: give at least one real chain")
    names = [f"ref_{i}" for i in range(len(traces))] if names is None else list(names)
    chains = _summaries(traces, names, settings, "reference", progress)
    return ReferenceSummary(
        source=source,
        chains=tuple(chains),
        group=aggregate(chains),
        fit=rg_fit(chains),
        settings=settings,
    )


def _diversity(
    traces: Sequence[np.ndarray], settings: EvalSettings, label: str, progress: Progress | None
) -> DiversityResult:
    report = (
        None if progress is None else (lambda done, total: progress(f"TM {label}", done, total))
    )
    return pairwise_tm_diversity(
        traces,
        max_length=settings.max_tm_length,
        max_pairs=settings.max_tm_pairs,
        time_budget_s=settings.tm_time_budget_s,
        seed=settings.seed,
        progress=report,
    )


def _pooled_diversity(results: Sequence[DiversityResult]) -> dict[str, Any]:
    pooled = DiversityResult(
        scores=tuple(s for r in results for s in r.scores),
        possible_pairs=sum(r.possible_pairs for r in results),
        skipped_long=sum(r.skipped_long for r in results),
        stopped_by_time=any(r.stopped_by_time for r in results),
        seconds=sum(r.seconds for r in results),
    )
    return pooled.to_dict()


def evaluate_backbones(
    samples: Sequence[np.ndarray],
    reference: Sequence[np.ndarray] | ReferenceSummary,
    *,
    names: Sequence[str] | None = None,
    settings: EvalSettings | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Score generated Cα backbones against real ones.

    Args:
        samples: generated chains ``[n_i, 3]`` (Å, numpy arrays); at least one.
        reference: real chains ``[m_j, 3]`` (Å), or a :class:`ReferenceSummary` made with the
            same clash and bond definitions (cheaper when evaluating repeatedly).
        names: one name per sample (default ``sample_<i>``).
        settings: buckets, caps and definitions (default :class:`EvalSettings`).
        progress: called with (stage, done, total) during long steps.

    Returns:
        A JSON-ready dict: ``version``, ``settings`` (with the histogram bin edges),
        ``reference`` (its aggregate, Rg fit and chains), ``overall`` and ``buckets`` (aggregate,
        comparison with the reference, TM diversity; buckets only where samples exist),
        ``generated_rg_fit``, ``checks`` (pass/fail verdicts, :mod:`genie.eval.checks`) and
        ``samples`` (one row per chain). None stands for a figure that cannot be measured.
    """
    settings = settings or EvalSettings()
    if not samples:
        raise ValueError("no generated chains to evaluate")
    if isinstance(reference, ReferenceSummary):
        differ = [
            k for k in _REFERENCE_KEYS if getattr(reference.settings, k) != getattr(settings, k)
        ]
        if differ:
            raise ValueError(
                f"the ReferenceSummary was made with other {', '.join(differ)} than this "
                "evaluation: summarize_reference(..., settings=settings) with the same settings"
            )
    else:
        reference = summarize_reference(reference, settings=settings, progress=progress)
    names = [f"sample_{i}" for i in range(len(samples))] if names is None else list(names)
    chains = _summaries(samples, names, settings, "samples", progress)

    members: dict[int, list[int]] = {}
    for index, chain in enumerate(chains):
        members.setdefault(bucket_index(chain.length, settings.buckets), []).append(index)

    buckets, diversities = [], []
    for bucket in sorted(members):
        group_chains = [chains[i] for i in members[bucket]]
        label = bucket_label(bucket, settings.buckets)
        low, high = bucket_bounds(bucket, settings.buckets)
        diversity = _diversity([samples[i] for i in members[bucket]], settings, label, progress)
        diversities.append(diversity)
        group = aggregate(group_chains)
        buckets.append(
            {
                "label": label,
                "min_length": low,
                "max_length": high,
                **group,
                **compare(group, group_chains, reference.group, reference.fit),
                "diversity": diversity.to_dict(),
            }
        )
    group = aggregate(chains)
    overall = {
        **group,
        **compare(group, chains, reference.group, reference.fit),
        "diversity": _pooled_diversity(diversities),
    }
    generated_fit = rg_fit(chains)

    return {
        "version": METRICS_VERSION,
        "settings": {
            **settings.to_dict(),
            "histogram_edges": {k: v.tolist() for k, v in HISTOGRAM_EDGES.items()},
        },
        "reference": reference.to_dict(),
        "overall": overall,
        "generated_rg_fit": generated_fit,
        "buckets": buckets,
        "checks": [c.to_dict() for c in protein_likeness_checks(overall, generated_fit)],
        "samples": [_sample_row(c, settings, reference.fit) for c in chains],
    }


def _sample_row(
    chain: ChainSummary, settings: EvalSettings, reference_fit: dict[str, Any] | None
) -> dict[str, Any]:
    bonds = chain.num_bonds
    expected = None
    if reference_fit is not None:
        expected = reference_fit["r0"] * chain.length ** reference_fit["nu"]
    return {
        "name": chain.name,
        "length": chain.length,
        "bucket": bucket_label(bucket_index(chain.length, settings.buckets), settings.buckets),
        "bond_mean": chain.bond_sum / bonds if bonds else None,
        "bond_fraction_outside": chain.bond_outside / bonds if bonds else None,
        "clashes_per_residue": chain.clash_pairs / chain.length,
        "helix": float(chain.sse[0] / chain.length),
        "strand": float(chain.sse[1] / chain.length),
        "coil": float(chain.sse[2] / chain.length),
        "rg": chain.rg,
        "rg_ratio_to_reference": None if expected is None else chain.rg / expected,
    }
