"""Callbacks: per-batch seeding (exact resume), and throughput/memory logging."""

from __future__ import annotations

import random
import time

import numpy as np
import pytorch_lightning as pl
import torch


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
    own stream.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        key = [self.seed, trainer.current_epoch, batch_idx, trainer.global_rank]
        seed = int(np.random.SeedSequence(key).generate_state(1)[0])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # seeds CUDA generators too


class SpeedAndMemoryLogger(pl.Callback):
    """Log training samples per second and, on GPU, the peak memory of the epoch (GiB). (Not
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
        )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            pl_module.log("train/peak_mem_gib", torch.cuda.max_memory_allocated() / 2**30)
