"""``last.ckpt``: every N epochs and whenever training ends; no checkpoint counts a cut epoch done.

:class:`LastCheckpoint` is the one writer of a run's ``last.ckpt``. It writes it at the end of
every ``checkpointEveryEpochs``-th epoch, and also, whatever N is, when training ends by itself
(the last epoch) or by a handled stop: the time budget (:mod:`genie.training.time_budget`), a
first Ctrl-C (training stops after the current batch), or any callback that sets
``trainer.should_stop``. A second Ctrl-C stops at once, without saving (the last checkpoint
written stays); so do an error (a non-finite loss, for example) and a kill.

When it writes: at the end of an epoch, in ``on_train_epoch_end`` (after the epoch's validation
and every other callback's epoch-end hook), so a checkpoint of the last epoch is like any
other epoch's (its ``epoch`` entry is that epoch's 0-based index). A stop in the middle of an
epoch is written right after its last trained batch (``on_train_batch_end``), the state from
which Lightning resumes mid-epoch; the epoch-end hooks that Lightning still runs after such a
stop would count the cut epoch as done, so nothing is written there (nor by the best
checkpoint, :class:`EpochCheckpoint`). Resuming that checkpoint goes on with the next batch of
the same epoch, exactly as the uninterrupted run would have: the batch sampler skips the batches
already trained (:meth:`genie.data.datamodule.CaDataModule._batches_done`) and every batch's
random stream is a function of (seed, epoch, batch, rank)
(:class:`~genie.training.callbacks.BatchSeedCallback`).
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint

from genie.data.atomic import atomic_open

log = logging.getLogger("genie.train")


def epoch_cut_short(trainer: pl.Trainer) -> bool:
    """Whether the current training epoch ended before its last batch (a stop in its middle):
    read in the epoch-end hooks."""
    done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    return done < trainer.num_training_batches


class EpochCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (the best by a metric, every N epochs), except after a stop
    in the middle of an epoch: a checkpoint of the epoch-end hooks would count the cut epoch as
    done (a resume would skip its rest)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not epoch_cut_short(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not epoch_cut_short(trainer):
            super().on_validation_end(trainer, pl_module)


class LastCheckpoint(Checkpoint):
    """Write ``path`` (the run's ``last.ckpt``) every ``every_n_epochs`` epochs and when training
    ends, unless it ended by an error or a second Ctrl-C. A
    :class:`~pytorch_lightning.callbacks.Checkpoint`, so Lightning runs its hooks after those of
    every other callback (a stop set by any of them in ``on_train_batch_end`` is seen in the
    same batch, and their epoch-end work is done when it writes).

    Attributes:
        interrupted: a Ctrl-C stopped training (the caller reports it: exit status 130).
        saved_step: the global step of the last write (None before any).
    """

    def __init__(self, *, path: Path, every_n_epochs: int) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.path = Path(path)
        self.every_n_epochs = every_n_epochs
        self.interrupted = False
        self.saved_step: int | None = None
        self._requested = False  # Ctrl-C pressed once: stop after the current batch
        self._previous_handler: Any = None

    def _save(self, trainer: pl.Trainer, *, where: str) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # atomic: a temporary, moved
        self.saved_step = trainer.global_step
        if trainer.is_global_zero:
            log.info("saved %s (%s, step %d)", self.path, where, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            self.interrupted = trainer.should_stop = True
        total = trainer.num_training_batches
        if trainer.should_stop and batch_idx + 1 < total:
            where = f"epoch {trainer.current_epoch + 1}, batch {batch_idx + 1} of {total}"
            self._save(trainer, where=f"stopped in {where}: --resume goes on with the next")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if epoch_cut_short(trainer):  # written after its last batch
            return
        epoch = trainer.current_epoch + 1  # epochs done
        limit = trainer.max_epochs if trainer.max_epochs is not None else -1  # -1: no limit
        last = trainer.should_stop or 0 <= limit <= epoch
        if last or epoch % self.every_n_epochs == 0:
            self._save(trainer, where=f"end of epoch {epoch}" + (", training ends" if last else ""))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handler()
        if self.saved_step is not None or self.path.exists() or not trainer.ckpt_path:
            return
        # a resumed run that trained nothing (its time budget was spent): the resumed checkpoint
        # is its last state; it came from outside this run folder, so copy it in
        if trainer.is_global_zero:
            with (
                open(trainer.ckpt_path, "rb") as source,
                atomic_open(self.path, binary=True) as out,
            ):
                shutil.copyfileobj(source, out)
            log.info("copied %s to %s (nothing was trained)", trainer.ckpt_path, self.path)
        trainer.strategy.barrier("LastCheckpoint.on_train_end")

    # --- Ctrl-C: the first press stops after the current batch ---------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # signals reach it only
            self._previous_handler = signal.signal(signal.SIGINT, self._on_ctrl_c)

    def _on_ctrl_c(self, signum: int, frame: Any) -> None:
        if self._requested:  # the second press: at once, without saving
            self._restore_handler()
            raise KeyboardInterrupt
        self._requested = True
        print(
            f"\n[genie] Ctrl-C: training stops after this batch and saves {self.path.name}; "
            "press Ctrl-C again to stop at once without saving",
            file=sys.stderr,
            flush=True,
        )

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception) -> None:
        self._restore_handler()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._restore_handler()
