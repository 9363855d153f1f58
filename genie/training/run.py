"""Command-line training: ``--config FILE [--set key=value ...] [--resume CKPT]``.

Shared by ``train/train_long.py`` and ``train/train_ultralong.py``. The run folder is
``logDirectory/name/version_N``; it holds the TensorBoard events, ``config.resolved`` (the full
config after overrides), ``data.json`` (what each start of training trained on:
:class:`~genie.training.callbacks.DataSummary`) and ``checkpoints/`` (``last.ckpt`` and the best
by validation loss).
Resuming a checkpoint continues in its own run folder (a config that names another folder is
refused), with optimiser, schedule and epoch/step restored; random streams are reseeded from
(seed, epoch, batch, rank) at every batch, so a resumed run draws exactly what the uninterrupted
run would have, also from a checkpoint written in the middle of an epoch. Training always ends
with ``last.ckpt`` (:mod:`genie.training.last_checkpoint`). ``--init-weights CKPT`` instead
starts a new run from a checkpoint's model weights alone (fresh optimiser, warm-up and epoch
count): for fine-tuning, or to go on from a checkpoint that holds weights only. Both checkpoints
are read and checked before anything of the run is written
(:mod:`genie.training.from_checkpoint`).

Launchers (``useDistributed``, docs/DISTRIBUTED.md): ``python train/...`` trains on ``devices``
devices of each of ``numNodes`` nodes (Lightning starts the extra processes itself); under
``torchrun`` every process is already started, and the trainer takes its layout from the launcher
(``LOCAL_WORLD_SIZE`` devices per node, ``WORLD_SIZE`` processes in all) instead of ``devices`` and
``numNodes``. Rank 0 alone writes the run folder (config, events, checkpoints, pictures).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import TensorBoardLogger

from genie.config import ConfigError, GenieConfig, save_config
from genie.config.cli import add_config_arguments, load_with_defaults
from genie.config.distributed import data_parallel_layout
from genie.config.schema import LOG_SAMPLES_LENGTH
from genie.data.datamodule import CaDataModule, uses_cache
from genie.model.build import model_sizes
from genie.model.memory import peak_bytes, require_memory
from genie.training.callbacks import BatchSeedCallback, DataSummary, SpeedAndMemoryLogger
from genie.training.compile_cache import CompileCache
from genie.training.curriculum import ProgressiveLengthCallback
from genie.training.distributed import torchrun_layout
from genie.training.from_checkpoint import check_resume, load_initial_weights
from genie.training.last_checkpoint import EpochCheckpoint, LastCheckpoint
from genie.training.module import GenieModule
from genie.training.pictures import SamplePictures
from genie.training.precision import SkippedStepMonitor, lightning_precision
from genie.training.strategy import build_strategy, launch_layout, uses_cuda, with_launch_layout
from genie.training.time_budget import TimeBudget
from genie.utils.cli import exit_status
from genie.utils.paths import ensure_writable_dir
from genie.utils.runtime import apply_runtime_settings

log = logging.getLogger("genie.train")


def data_sources(cfg: GenieConfig) -> list[str] | None:
    """The dataset sources named by the config (None = the bundled default set)."""
    if cfg.dataDirectory.strip().lower() == "bundled":
        return None
    roots = [s.strip() for s in cfg.dataDirectory.split(",") if s.strip()]
    if cfg.datasetNames:
        return [str(Path(root) / name) for root in roots for name in cfg.datasetNames]
    return roots


def build_datamodule(cfg: GenieConfig) -> CaDataModule:
    return CaDataModule(
        sources=data_sources(cfg),
        cache_dir=cfg.cacheDirectory,
        min_length=cfg.minimumNumResidues,
        max_length=cfg.maximumNumResidues,
        batch_size=cfg.batchSize,
        val_fraction=cfg.validationFraction,
        seed=cfg.seed,
        num_workers=cfg.numWorkers,
        split_chain_breaks=cfg.splitChainBreaks,
        chain_break_distance=cfg.chainBreakDistance,
        dataset_size=cfg.datasetSize,
        validation_size=cfg.validationSize,
        concatenate=cfg.concatenateChains,
        join_residue_gap=cfg.joinResidueGap,
        join_clearance=cfg.joinClearance,
        cluster_sampling=cfg.sampleByCluster,
        cluster_similarity=cfg.clusterSimilarity,
        sequence_shards=cfg.numSequenceShards,
        even_validation=cfg.useDistributed and cfg.distributedStrategy == "fsdp",
    )


def _run_version(cfg: GenieConfig, resume: Path | None) -> str | int | None:
    """Resume inside the checkpoint's own run folder (…/version_N/checkpoints/x.ckpt), which
    :func:`~genie.training.from_checkpoint.check_resume` has checked to be in
    ``logDirectory/name``; None (a new ``version_N``) for any other checkpoint."""
    if resume is not None and resume.parent.name == "checkpoints":
        return resume.parent.parent.name
    return None


def build_callbacks(cfg: GenieConfig) -> list[pl.Callback]:
    """The run's callbacks, checkpointing excluded: seeding, the data summary (printed, and
    kept in the run folder's data.json), throughput, learning rate, skipped
    fp16 steps (a no-op without a GradScaler), the time budget (``maxTrainingMinutes``,
    :mod:`genie.training.time_budget`), torch.compile's cache file (``compileCacheFile``,
    :mod:`genie.training.compile_cache`), the
    crop-length curriculum (``useProgressiveTraining``), TensorBoard pictures of sampled backbones
    (``logSamplesEveryEpochs``, :mod:`genie.training.pictures`)."""
    callbacks: list[pl.Callback] = [
        BatchSeedCallback(cfg.seed),
        DataSummary(),
        SpeedAndMemoryLogger(),
        LearningRateMonitor(logging_interval="step"),
        SkippedStepMonitor(),
    ]
    if cfg.maxTrainingMinutes is not None:
        callbacks.append(TimeBudget(minutes=cfg.maxTrainingMinutes))
    if cfg.compileCacheFile is not None:
        callbacks.append(CompileCache(path=cfg.compileCacheFile))
    if cfg.useProgressiveTraining:
        callbacks.append(
            ProgressiveLengthCallback(
                start_length=cfg.progressiveStartLength,
                end_length=cfg.progressiveEndLength,
                num_stages=cfg.progressiveNumStages,
                num_epochs=cfg.numEpochs,
            )
        )
    if cfg.logSamplesEveryEpochs > 0:
        length = cfg.logSamplesLength or min(LOG_SAMPLES_LENGTH, cfg.maximumNumResidues)
        callbacks.append(
            SamplePictures(
                every_n_epochs=cfg.logSamplesEveryEpochs,
                count=cfg.logSamplesCount,
                length=length,
                skip_steps=cfg.logSamplesSkipSteps,
                seed=cfg.seed,
            )
        )
    return callbacks


def build_trainer(
    cfg: GenieConfig,
    *,
    resume: Path | None = None,
    model: torch.nn.Module | None = None,
    **overrides,
) -> pl.Trainer:
    """A Trainer for ``cfg``. ``overrides`` are Trainer arguments that win over the config's,
    except ``callbacks``, which are added to the run's own.

    Args:
        resume: the checkpoint a resumed run continues (its run folder is reused).
        model: the denoiser to train (for the PowerSGD rank, :func:`build_strategy`).

    Raises:
        ConfigError: ``accelerator gpu`` (or ``cuda``) where no CUDA device is available; a
            launch of several processes without ``useDistributed``; a layout that
            ``numSequenceShards`` or ``effectiveBatchSize`` does not divide.
    """
    if cfg.accelerator in ("gpu", "cuda") and "accelerator" not in overrides:
        if not torch.cuda.is_available():
            raise ConfigError(
                f"accelerator {cfg.accelerator}: no CUDA device is available; use auto or cpu"
            )
    devices, num_nodes = launch_layout(cfg)
    world = devices * num_nodes
    gpus = torch.cuda.device_count()
    if torchrun_layout() is None and uses_cuda(cfg) and devices > gpus:
        raise ConfigError(
            f"devices = {devices}: this machine has {gpus} CUDA device(s); lower devices (per "
            "node) or start one process per GPU with torchrun"
        )
    if world > 1 and not cfg.useDistributed:
        raise ConfigError(
            f"torchrun started {world} processes but useDistributed is False: set "
            "useDistributed True (and distributedBackend gloo on CPU), or start one process"
        )
    _, accumulation = data_parallel_layout(
        world_size=world,
        sequence_shards=cfg.numSequenceShards,
        batch_size=cfg.batchSize,
        effective_batch_size=cfg.effectiveBatchSize,
        world=f"this launch ({devices} per node × {num_nodes} node(s))",
    )
    strategy = build_strategy(cfg, model=model) if cfg.useDistributed else "auto"
    logger = TensorBoardLogger(cfg.logDirectory, name=cfg.name, version=_run_version(cfg, resume))
    folder = Path(logger.log_dir) / "checkpoints"  # rank 0's: ModelCheckpoint broadcasts it
    best = EpochCheckpoint(
        dirpath=folder,
        filename="best-epoch{epoch:04d}",
        auto_insert_metric_name=False,
        monitor="val/loss",
        mode="min",
        save_top_k=1,
        every_n_epochs=cfg.checkpointEveryEpochs,
    )
    # last.ckpt has a checkpoint callback of its own: since Lightning 2.6, save_last=True on the
    # monitored one writes last.ckpt only when val/loss improves (a copy of the best, not the last
    # epoch); the validation loss rises at every stage of a length curriculum, for example. It
    # also writes last.ckpt whenever training ends, every N epochs or not.
    last = LastCheckpoint(path=folder / "last.ckpt", every_n_epochs=cfg.checkpointEveryEpochs)
    callbacks = [best, last, *build_callbacks(cfg), *overrides.pop("callbacks", [])]
    kwargs = dict(
        max_epochs=cfg.numEpochs,
        accelerator="gpu" if cfg.accelerator == "cuda" else cfg.accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        accumulate_grad_batches=accumulation,
        precision=lightning_precision(
            use_mixed_precision=cfg.useMixedPrecision, precision=cfg.precision
        ),
        logger=logger,
        callbacks=callbacks,
        gradient_clip_val=cfg.gradientClipVal or None,
        log_every_n_steps=cfg.logEverySteps,
        check_val_every_n_epoch=cfg.validateEveryEpochs,
        use_distributed_sampler=False,  # the length-bucketed batch sampler shards by rank itself
    )
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)


def check_output_folders(cfg: GenieConfig) -> None:
    """Fail before any work when ``logDirectory`` (or ``cacheDirectory``, where the data needs a
    cache) cannot be written: see :func:`~genie.utils.paths.ensure_writable_dir`."""
    ensure_writable_dir(cfg.logDirectory, what="logDirectory")
    if uses_cache(data_sources(cfg)):
        ensure_writable_dir(cfg.cacheDirectory, what="cacheDirectory")


def check_training_memory(cfg: GenieConfig, *, force: bool = False) -> None:
    """Refuse, before anything is allocated, a training step at the longest crop that the
    training device cannot hold (:mod:`genie.model.memory`; ``--force`` skips it)."""
    length = cfg.progressiveEndLength if cfg.useProgressiveTraining else cfg.maximumNumResidues
    # the memory of the GPU that will train; without one (accelerator gpu on a machine that has
    # none is refused by build_trainer), the host's
    gpu = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    needed = peak_bytes(model_sizes(cfg), length=length, batch=cfg.batchSize, training=True)
    # this process's GPU: each rank of a node trains on GPU LOCAL_RANK (torchrun and Lightning's
    # launcher set it), and asking another GPU would open a CUDA context there
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if gpu else torch.device("cpu")
    )
    require_memory(needed, device=device, force=force,
                   what=f"a training step of {cfg.batchSize} chain(s) of {length:,} residues",
                   keys="maximumNumResidues (the crop length) or batchSize, or switch on "
                        "useGradientCheckpointing")  # fmt: skip


def train(
    cfg: GenieConfig,
    *,
    resume: str | Path | None = None,
    init_weights: str | Path | None = None,
    force: bool = False,
    **trainer_overrides,
) -> tuple[pl.Trainer, GenieModule]:
    """Train ``cfg``; returns the trainer and the module.

    Args:
        resume: a checkpoint to continue exactly (weights, optimiser, schedule, epoch, step).
        init_weights: a checkpoint whose model weights start a new run (optimiser, schedule and
            counters start afresh); not together with ``resume``.
        force: train even where the memory estimate of a step exceeds the free memory.

    Training ends with ``last.ckpt`` in the run folder whatever ``checkpointEveryEpochs`` is:
    after the last epoch, the time budget or a first Ctrl-C
    (:mod:`genie.training.last_checkpoint`).

    Raises:
        CheckpointError: ``resume`` or ``init_weights`` cannot be used (missing, unreadable,
            refused, not ours, corrupted, non-finite weights), found before anything is written.
        ConfigError: the checkpoint's model differs from ``cfg``'s, or its run folder is not
            the one ``cfg`` names (:mod:`genie.training.from_checkpoint`).
        KeyboardInterrupt: Ctrl-C stopped training (once: after ``last.ckpt`` was saved).
    """
    cfg = with_launch_layout(cfg)
    check_output_folders(cfg)
    if resume and init_weights:
        raise ConfigError("--resume and --init-weights exclude each other: give one")
    resume = Path(resume) if resume else None
    if resume is not None:
        check_resume(cfg, resume)  # before anything is written
    check_training_memory(cfg, force=force)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    apply_runtime_settings(matmul_precision=cfg.matmulPrecision)
    datamodule = build_datamodule(cfg)
    module = GenieModule(cfg)
    if init_weights:
        load_initial_weights(module, Path(init_weights))
        print(f"[genie] model weights from {init_weights} (new optimiser, schedule and counters)")
    trainer = build_trainer(cfg, resume=resume, model=module.model, **trainer_overrides)
    if trainer.is_global_zero:
        run_dir = Path(trainer.logger.log_dir)
        save_config(cfg, run_dir / "config.resolved", header="Resolved config of this run.")
        print(f"[genie] run folder: {run_dir}")
    fit_options = {"ckpt_path": str(resume) if resume else None}
    if "weights_only" in inspect.signature(trainer.fit).parameters:  # Lightning >= 2.5
        fit_options["weights_only"] = True  # as check_resume read it (no code ever runs)
    with warnings.catch_warnings():
        # a checkpoint written mid-epoch resumes exactly: the batch sampler skips the batches
        # already trained (genie.training.last_checkpoint), which Lightning cannot know
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended")
        try:
            trainer.fit(module, datamodule=datamodule, **fit_options)
        except SystemExit as stop:  # Lightning ends a KeyboardInterrupt with sys.exit(1)
            if isinstance(stop.__context__, KeyboardInterrupt):
                raise KeyboardInterrupt from None
            raise
    if any(isinstance(cb, LastCheckpoint) and cb.interrupted for cb in trainer.callbacks):
        raise KeyboardInterrupt  # stopped by Ctrl-C, last.ckpt saved: the command says so (130)
    return trainer, module


def parse_args(argv: Sequence[str] | None, *, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    add_config_arguments(parser, what="training")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="CKPT",
        help="continue from a checkpoint (model, optimiser, schedule, epoch)",
    )
    parser.add_argument(
        "--init-weights",
        default=None,
        metavar="CKPT",
        help="start a new run from a checkpoint's model weights (fresh optimiser, schedule and "
        "epoch count; fine-tuning, or a checkpoint that holds weights only)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="train even where the memory estimate exceeds the free memory",
    )
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None,
    *,
    description: str = "Train a Genie model.",
    defaults: Mapping[str, str] | None = None,
) -> int:
    """Parse the command line, load the config (``defaults``: an entry point's values for keys
    the config and ``--set`` leave unset, see
    :func:`~genie.config.cli.load_with_defaults`) and train.

    Returns:
        0 on success, 2 on a user mistake (a config error, a missing file, an unwritable folder,
        unusable data, a non-finite loss; one line on stderr), 1 on a bug (with its traceback),
        130 on Ctrl-C: :mod:`genie.utils.cli`.
    """
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    args = parse_args(argv, description=description)
    try:
        overrides = list(args.overrides)
        layout = torchrun_layout()
        if layout is not None:  # the launcher's layout replaces the config's devices, numNodes
            overrides += [f"devices={layout[0]}", f"numNodes={layout[1]}"]
            print(f"[genie] torchrun: devices={layout[0]}, numNodes={layout[1]} (the launcher's "
                  "layout; the config's devices and numNodes apply to plain launches)")  # fmt: skip
        cfg, applied = load_with_defaults(GenieConfig, args.config, overrides, defaults)
        if applied:
            print(f"[genie] defaults of this entry point: {', '.join(applied)}")
        train(cfg, resume=args.resume, init_weights=args.init_weights, force=args.force)
    except BaseException as error:  # the error path of every entry point
        return exit_status(error)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
