"""Callbacks: per-epoch seeding (exact resume), and throughput/memory logging."""

from __future__ import annotations

import random
import time

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import ParallelStrategy


class EpochSeedCallback(pl.Callback):
    """Reseed every RNG (Python, NumPy, torch CPU and CUDA) right before the first batch of each
    training epoch, from (seed, epoch, data-parallel rank).

    Lightning does not checkpoint RNG states, and storing them is not enough: between a
    checkpoint write and the next batch, Lightning consumes random numbers in different amounts
    in a continued and in a resumed run (data-loader set-up, sanity checks). Making each epoch's
    random stream a function of (seed, epoch, rank) makes resuming from an epoch-end checkpoint
    exact (same timesteps, noise and dropout masks as the uninterrupted run) with nothing extra
    to store, and gives every rank its own stream. The processes of a sequence group (sequence
    parallelism: one data-parallel rank) share one stream: they must draw the same timesteps,
    noise and dropout masks of their chains.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx != 0:
            return
        rank = trainer.global_rank
        if isinstance(trainer.strategy, ParallelStrategy):
            rank = trainer.strategy.distributed_sampler_kwargs["rank"]  # the data's rank
        state = np.random.SeedSequence([self.seed, trainer.current_epoch, rank])
        seed = int(state.generate_state(1)[0])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # seeds CUDA generators too


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
