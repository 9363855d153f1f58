"""The training time budget (``maxTrainingMinutes``): stop once that much training time has passed.

Time counts from the start of training (after data and model set-up, sanity check included) to
its end, summed over resumes: checkpoints store the time spent so far. The budget is checked
after every training batch, so a run overshoots it by at most one batch (and the validation or
pictures of an epoch that ends with that batch), never by the rest of an epoch. The stop is a
handled one: :class:`~genie.training.last_checkpoint.LastCheckpoint` then writes ``last.ckpt``
(in the middle of an epoch when the budget runs out there; a resume continues with the next
batch, exactly). A new run trains at least one batch, however small the budget; a resumed run
whose budget is already spent trains nothing.

DISCREPANCY: Lightning's ``Timer`` stops at epoch ends (``interval="epoch"``: a budget smaller
than an epoch trains a whole one anyway) or after batches (whose checkpoints Lightning's
``ModelCheckpoint`` writes after the epoch-end hooks, counting the cut epoch as done), and it holds
the budget as a ``timedelta``, so a budget under 1 µs becomes 0 and stops before any batch.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytorch_lightning as pl

from genie.training.last_checkpoint import epoch_cut_short

log = logging.getLogger("genie.train")


class TimeBudget(pl.Callback):
    """Set ``trainer.should_stop`` once ``minutes`` of training time (over resumes) have passed,
    and report, when training ends, where the budget stopped it: a warning when it stopped the
    run before one whole epoch was trained."""

    def __init__(self, *, minutes: float) -> None:
        """
        Args:
            minutes: the budget (> 0), in minutes of training time summed over resumes.
        """
        if not minutes > 0:
            raise ValueError(f"minutes must be > 0, got {minutes}")
        self.minutes = float(minutes)
        self.offset = 0.0  # seconds spent by the runs this one resumes
        self._start: float | None = None
        self._end: float | None = None
        self.stopped_at: tuple[int, int, int] | None = None  # (epoch, batches done, of batches)
        self.full_epochs = 0  # epochs this run trained from their first batch to their last
        self._epoch_from_start = False

    def elapsed(self) -> float:
        """Seconds of training time spent, this run and the runs it resumes."""
        if self._start is None:
            return self.offset
        return self.offset + ((self._end or time.monotonic()) - self._start)

    def _spent(self, trainer: pl.Trainer) -> bool:
        spent = self.elapsed() >= 60.0 * self.minutes
        return bool(trainer.strategy.broadcast(spent))  # every rank stops at the same batch

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._end = time.monotonic(), None
        if self.offset > 0 and self._spent(trainer):  # spent by the runs this one resumes
            self.stopped_at = (trainer.current_epoch, 0, trainer.num_training_batches)
            trainer.should_stop = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            self._epoch_from_start = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.stopped_at is None and self._spent(trainer):
            self.stopped_at = (trainer.current_epoch, batch_idx + 1, trainer.num_training_batches)
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch_from_start and not epoch_cut_short(trainer):
            self.full_epochs += 1
        self._epoch_from_start = False

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._end = time.monotonic()
        if self.stopped_at is None or not trainer.is_global_zero:
            return
        epoch, done, total = self.stopped_at
        budget = f"maxTrainingMinutes {self.minutes:g} ({60 * self.minutes:.3g} s)"
        where = f"after {done} of {total} training batches of epoch {epoch + 1}"
        if done == 0:
            log.warning(
                "%s was already spent when training started (%.3g s, counted over resumes): no "
                "batch was trained; raise maxTrainingMinutes to go on",
                budget,
                self.elapsed(),
            )
        elif self.full_epochs == 0:
            log.warning(
                "%s ran out before one whole epoch was trained: 0 epochs completed in this run, "
                "training stopped %s; last.ckpt holds that state and --resume continues with "
                "the next batch; raise maxTrainingMinutes to train whole epochs",
                budget,
                where,
            )
        else:
            log.info(
                "%s reached: training stopped %s (%d whole epoch(s) trained in this run)",
                budget,
                where,
                self.full_epochs,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed_seconds": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.offset = float(state_dict.get("elapsed_seconds", 0.0))
