"""Callbacks: per-batch seeding (exact resume), the data summary of a run, and throughput/memory
logging."""

from __future__ import annotations

import datetime
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import ParallelStrategy

from genie.data.atomic import atomic_open
from genie.data.datamodule import CaDataModule

DATA_SUMMARY = "data.json"  # in the run folder


class BatchSeedCallback(pl.Callback):
    """Reseed every RNG (Python, NumPy, torch CPU and CUDA) right before each training batch,
    from (seed, epoch, batch, rank).

    Lightning does not checkpoint RNG states, and storing them is not enough: between a
    checkpoint write and the next batch, Lightning consumes random numbers in different amounts
    in a continued and in a resumed run (data-loader set-up, sanity checks). Making each batch's
    random stream a function of (seed, epoch, batch, rank) makes resuming exact (same timesteps,
    noise and dropout masks as the uninterrupted run) with nothing extra to store, from a
    checkpoint written at an epoch end and from one written after any batch of an epoch (a
    time-budget or Ctrl-C stop, :mod:`genie.training.last_checkpoint`), and gives every rank its
    own stream. The processes of a sequence group (sequence parallelism: one data-parallel
    rank) share one stream: they must draw the same timesteps, noise and dropout masks.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        rank = trainer.global_rank
        if isinstance(trainer.strategy, ParallelStrategy):
            rank = trainer.strategy.distributed_sampler_kwargs["rank"]  # the data's rank
        key = [self.seed, trainer.current_epoch, batch_idx, rank]
        seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # seeds CUDA generators too


def describe_data(summary: dict[str, Any]) -> str:
    """One line of :meth:`CaDataModule.summary <genie.data.datamodule.CaDataModule.summary>`."""
    sources = summary["sources"]
    where = "bundled" if sources == "bundled" else ", ".join(sources)
    key = summary["cache_key"]
    origin = f"cache {summary['dataset_file']}, key {key}" if key else summary["dataset_file"]

    def side(counts: dict[str, Any]) -> str:
        clusters = f", {counts['clusters']:,} clusters" if counts.get("clusters") else ""
        return (f"{counts['segments']:,} segments ({counts['chains']:,} chains, "
                f"{counts['residues']:,} residues{clusters})")  # fmt: skip

    return (
        f"{where} ({origin}): {summary['segments_in_file']:,} segments, "
        f"{summary['segments_usable']:,} of >= {summary['min_length']} residues; training "
        f"{side(summary['train'])}, validation {side(summary['validation'])}"
    )


class DataSummary(pl.Callback):
    """Print what the run trains on once its data is set up (sources, dataset file and cache
    key, segments and chains of each side: :meth:`CaDataModule.summary
    <genie.data.datamodule.CaDataModule.summary>`) and add it to the run folder's
    :data:`DATA_SUMMARY`: a list with one entry per start of training (a resume appends its own,
    so the data of every part of a run stays on record)."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the data module's set-up and the choice of the checkpoint to resume
        datamodule = trainer.datamodule
        if not trainer.is_global_zero:
            return
        if not isinstance(datamodule, CaDataModule) or trainer.logger is None:
            return
        summary = datamodule.summary()
        print(f"[genie] data: {describe_data(summary)}", flush=True)
        path = Path(trainer.logger.log_dir) / DATA_SUMMARY
        entries = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        resumed = str(trainer.ckpt_path) if trainer.ckpt_path else None
        entries.append({"started": started, "resumed_from": resumed, **summary})
        with atomic_open(path) as handle:
            json.dump(entries, handle, indent=1)
            handle.write("\n")


class SpeedAndMemoryLogger(pl.Callback):
    """Log training samples per second (per rank, the mean over ranks) and, on GPU, the peak
    memory of the epoch (GiB, the largest over ranks). (Not
    Lightning's ``ThroughputMonitor``, which counts FLOPs and needs a fixed batch shape.)"""

    def __init__(self) -> None:
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        elapsed = time.perf_counter() - self._start
        size = batch["coords"].shape[0]
        pl_module.log(
            "train/samples_per_s",
            size / max(elapsed, 1e-9),
            on_step=True,
            on_epoch=True,
            batch_size=size,
            sync_dist=True,  # per rank: the mean over the ranks (× ranks = the whole run's)
        )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            peak = torch.cuda.max_memory_allocated() / 2**30
            pl_module.log("train/peak_mem_gib", peak, sync_dist=True, reduce_fx="max")
