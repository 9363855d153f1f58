"""TensorBoard pictures of sampled backbones during training (``logSamplesEveryEpochs``).

Every N-th training epoch, at ``on_train_epoch_end`` (after that epoch's validation loop, before
its checkpoints), rank zero samples ``count`` backbones of ``length`` residues with DDIM
(η = 0, stride ``skip_steps``; with the model's noise scale σ(L), prediction target and
self-conditioning: :func:`genie.sampling.predictor.sample_chains`) and logs to every
TensorBoard logger of the trainer, at ``global_step``: the images ``samples/contact_map`` (8 Å),
``samples/distance_map`` and ``samples/ca_trace`` (3-D, coloured N → C), one panel per backbone;
the evaluation of :mod:`genie.eval` against the validation set (whole segments split at chain
breaks): its figures ``samples/distributions``, ``samples/secondary_structure``,
``samples/rg_vs_length`` and the scalars of :data:`SCALARS`; ``samples/seconds``, the round's
wall time. ``docs/EVALUATION.md`` lists them all.

Backbone i has the seed of the sampling command (:func:`genie.sampling.chains.sample_seed` of
(``seed``, length, i)): successive pictures start from the same noise, and ``samplingStrategy
ddim``, ``skipSteps`` = the stride, ``ddimEta 0`` and the training ``seed`` reproduce them from
the epoch's checkpoint. The model runs in eval mode under ``torch.no_grad``, and every random
stream (Python, NumPy, torch CPU and CUDA) is restored afterwards: training draws exactly what it
would without pictures.

Cost on 2 CPU cores: ≈1.3 s a round for the tests' tiny model (4 backbones of 32 residues, 5
model calls), ≈1 s of it drawing the six figures; ≈4 s for the quickstart model (4 × 64 residues,
50 model calls: sampling 0.7 s, P-SEA ≈2 s on the far-from-protein samples of early training).
The validation set is summarised once. A failure never stops training: it is logged as a warning
with its reason. matplotlib (figures) and biotite (the evaluation: every chain summary of
:mod:`genie.eval` includes P-SEA) are in the ``eval`` extra; without one of them that part is
skipped with a one-time warning.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from genie.eval import EvalSettings, MissingDependencyError, evaluate_backbones, make_figures
from genie.eval.metrics import ReferenceSummary, summarize_reference
from genie.eval.optional import EVAL_EXTRA_HINT
from genie.model.layout import WHOLE_CHAIN, using_layout
from genie.sampling.chains import sample_seed
from genie.sampling.ddim import DDIMSampler
from genie.sampling.predictor import sample_chains
from genie.training.backbone_figures import (
    contact_map_figure,
    distance_map_figure,
    trace_figure,
)

log = logging.getLogger(__name__)

MAX_REFERENCE_CHAINS = 200  # validation segments summarised as the reference (seeded subset)
SCALARS = {  # tag -> path in the metrics' "overall" entry
    "samples/ca_ca_mean": ("bond_length", "mean"),
    "samples/ca_ca_fraction_outside": ("bond_length", "fraction_outside"),
    "samples/clashes_per_residue": ("clashes", "per_residue"),
    "samples/helix_fraction": ("sse", "helix"),
    "samples/strand_fraction": ("sse", "strand"),
    "samples/jsd_bond_length": ("jsd", "bond_length"),
    "samples/jsd_angle": ("jsd", "bond_angle"),
    "samples/jsd_dihedral": ("jsd", "dihedral"),
    "samples/rg_ratio": ("rg_ratio_to_reference",),
}


# --- the reference: validation segments ---------------------------------------------------------
def reference_traces(
    datamodule: Any, *, min_length: int, max_chains: int, seed: int
) -> list[np.ndarray]:
    """The validation set's segments, whole (not cropped) and split at chain breaks.

    Args:
        datamodule: a set-up :class:`~genie.data.datamodule.CaDataModule` (its ``val_dataset``).
        min_length: pieces shorter than this (residues) are dropped.
        max_chains: at most this many segments are used (a subset drawn with ``seed``).
        seed: seed of that subset.

    Returns:
        Unbroken pieces ``[n_i, 3]`` float64 (Å); empty when there is no validation set.
    """
    dataset = getattr(datamodule, "val_dataset", None)
    if dataset is None or len(dataset) == 0:
        return []
    segments = np.asarray(dataset.indices)
    if len(segments) > max_chains:
        segments = np.sort(np.random.default_rng(seed).choice(segments, max_chains, replace=False))
    traces = []
    for segment in segments.tolist():
        coords = dataset.arrays.segment(segment).astype(np.float64)  # [n, 3]
        cuts = np.flatnonzero(dataset.arrays.segment_breaks(segment))  # starts of pieces
        traces += [piece for piece in np.split(coords, cuts) if len(piece) >= min_length]
    return traces


# --- the callback ------------------------------------------------------------------------------
@contextlib.contextmanager
def preserved_state(module: torch.nn.Module) -> Iterator[None]:
    """Run a block in eval mode under ``torch.no_grad`` and restore, afterwards, every module's
    train/eval flag and the Python, NumPy, torch CPU and CUDA random streams."""
    modes = [(m, m.training) for m in module.modules()]
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            module.eval()
            yield
    finally:
        for m, training in modes:
            m.training = training
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def sample_traces(
    module: pl.LightningModule, *, count: int, length: int, stride: int, seed: int
) -> list[np.ndarray]:
    """``count`` DDIM samples (η = 0) of ``length`` residues from ``module.model``, with its
    noise scale, prediction target and self-conditioning (``module.parametrisation``,
    :func:`genie.sampling.predictor.sample_chains`): ``[length, 3]`` float64 arrays (Å). The
    stride is capped at T − 1."""
    schedule = module.schedule
    sampler = DDIMSampler(schedule=schedule, stride=min(stride, schedule.num_timesteps - 1),
                          eta=0.0, temperature=1.0)  # fmt: skip
    # Rank zero samples alone: on the whole chain, also in a sequence-parallel run (every
    # process holds the weights).
    with using_layout(module.model, WHOLE_CHAIN):
        samples = sample_chains(
            module.model,
            schedule=schedule,
            parametrisation=module.parametrisation,
            sampler=sampler,
            lengths=[length] * count,
            seeds=[sample_seed(seed, length, i) for i in range(count)],
            device=module.device,
        )
    return [c.double().numpy() for c in samples.coords]


class SamplePictures(pl.Callback):
    """Every ``every_n_epochs`` epochs, log pictures and evaluation figures of sampled backbones
    to TensorBoard (see the module docstring)."""

    def __init__(
        self,
        *,
        every_n_epochs: int,
        count: int,
        length: int,
        skip_steps: int,
        seed: int,
        max_reference_chains: int = MAX_REFERENCE_CHAINS,
    ) -> None:
        """
        Args:
            every_n_epochs: log after epochs N, 2N, ... (1-based; ≥ 1).
            count: backbones per round.
            length: residues of each backbone (≥ 3).
            skip_steps: DDIM stride (capped at T − 1).
            seed: base seed of the backbones (and of the reference subset).
            max_reference_chains: validation segments summarised as the evaluation's reference.
        """
        if every_n_epochs < 1 or count < 1 or length < 3 or skip_steps < 1:
            raise ValueError(
                "every_n_epochs, count and skip_steps must be ≥ 1 and length ≥ 3, got "
                f"{every_n_epochs}, {count}, {skip_steps}, {length}"
            )
        self.every_n_epochs, self.count, self.length = every_n_epochs, count, length
        self.skip_steps, self.seed = skip_steps, seed
        self.max_reference_chains = max_reference_chains
        self.drawing = importlib.util.find_spec("matplotlib") is not None
        # No TM-score diversity: TM-align takes seconds a pair on the far-from-protein samples
        # of early training, and 4 fixed-seed samples say little about diversity.
        self.settings = EvalSettings(max_tm_pairs=0)
        self._reference: ReferenceSummary | None = None
        self._warned: set[str] = set()

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not writers:
            self._warn_once("logger", "logSamplesEveryEpochs: no TensorBoard logger, no pictures")
            return
        start = time.perf_counter()
        try:
            with preserved_state(pl_module):
                self.log_round(writers, trainer, pl_module)
        except Exception as error:  # pictures must never stop training
            log.warning(
                "sample pictures of epoch %d skipped: %s: %s",
                trainer.current_epoch,
                type(error).__name__,
                error,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            return
        for writer in writers:
            writer.add_scalar("samples/seconds", time.perf_counter() - start, trainer.global_step)

    def log_round(
        self, writers: list[Any], trainer: pl.Trainer, module: pl.LightningModule
    ) -> None:
        """Sample, draw and evaluate once; write to ``writers`` (SummaryWriters). The backbones'
        own pictures are written before the evaluation runs, so they survive its failure."""
        step = trainer.global_step

        def write_figures(figures: dict[str, Any]) -> None:
            for tag, figure in figures.items():
                for writer in writers:
                    writer.add_figure(tag, figure, step, close=False)
            for writer in writers:
                writer.flush()

        traces = sample_traces(
            module, count=self.count, length=self.length, stride=self.skip_steps, seed=self.seed
        )
        if self.drawing:
            write_figures(
                {
                    "samples/contact_map": contact_map_figure(traces),
                    "samples/distance_map": distance_map_figure(traces),
                    "samples/ca_trace": trace_figure(traces),
                }
            )
        else:
            self._warn_once(
                "matplotlib",
                "sample pictures without figures: matplotlib is not installed (%s)",
                EVAL_EXTRA_HINT,
            )
        metrics = self._evaluate(traces, trainer)
        if metrics is None:
            return
        for tag, path in SCALARS.items():
            value = _lookup(metrics["overall"], path)
            if value is not None:
                for writer in writers:
                    writer.add_scalar(tag, value, step)
        if self.drawing:
            write_figures({f"samples/{k}": f for k, f in make_figures(metrics).items()})

    def _evaluate(self, traces: list[np.ndarray], trainer: pl.Trainer) -> dict[str, Any] | None:
        """:func:`genie.eval.evaluate_backbones` of ``traces`` against the validation set, or
        None (one-time warning) without biotite or validation segments."""
        try:
            if self._reference is None:
                reference = reference_traces(
                    getattr(trainer, "datamodule", None),
                    min_length=self.settings.reference_min_length,
                    max_chains=self.max_reference_chains,
                    seed=self.seed,
                )
                if not reference:
                    self._warn_once(
                        "reference",
                        "sample pictures without evaluation: no validation segment of ≥ %d "
                        "residues",
                        self.settings.reference_min_length,
                    )
                    return None
                self._reference = summarize_reference(
                    reference, source="validation set", settings=self.settings
                )
            return evaluate_backbones(traces, self._reference, settings=self.settings)
        except MissingDependencyError as error:
            self._warn_once(
                "eval",
                "sample pictures without evaluation figures and scalars (%s): %s",
                EVAL_EXTRA_HINT,
                error,
            )
            return None


def _lookup(entry: dict[str, Any], path: Sequence[str]) -> float | None:
    for key in path:
        entry = entry.get(key) if isinstance(entry, dict) else None
    return None if entry is None else float(entry)
