"""Progressive training: a curriculum of crop lengths that grows over the epochs (DESIGN §6).

The run's epochs are cut into ``num_stages`` equal stages; stage k crops chains to
``stage_lengths(...)[k]`` residues. Short crops make the early epochs cheap (the pair stack is
O(n²) in memory and O(n³) in time) while the model learns local geometry; the last stage trains
on the full ``progressiveEndLength``.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytorch_lightning as pl

LENGTH_MULTIPLE = 8  # stage lengths are rounded to this (tensor-core friendly shapes)


def stage_lengths(*, start_length: int, end_length: int, num_stages: int) -> list[int]:
    """Crop length (residues) of each stage: geometric spacing from start to end.

    Stage k's length is start · (end/start)^(k/(K−1)), rounded to the nearest multiple of
    :data:`LENGTH_MULTIPLE` (ties to the even multiple) and clipped to [start, end]; the last
    stage is exactly ``end_length`` (even when it is no multiple of 8). Geometric spacing gives
    every step the same ratio, so the n² pair cost grows by the same factor from stage to stage.
    The lengths never decrease; two neighbouring stages can share a length when start and end are
    close. One stage: ``[end]``.
    """
    if not 1 <= start_length <= end_length:
        raise ValueError(f"need 1 <= start_length <= end_length, got {start_length}, {end_length}")
    if num_stages < 1:
        raise ValueError(f"num_stages must be >= 1, got {num_stages}")
    lengths = []
    for k in range(num_stages - 1):
        value = start_length * (end_length / start_length) ** (k / (num_stages - 1))
        rounded = LENGTH_MULTIPLE * round(value / LENGTH_MULTIPLE)
        lengths.append(min(end_length, max(start_length, rounded)))
    return lengths + [end_length]


def stage_of_epoch(epoch: int, *, num_stages: int, num_epochs: int) -> int:
    """Stage of 0-based ``epoch``: ``min(num_stages − 1, epoch · num_stages // num_epochs)``
    (equal stages; epochs past ``num_epochs`` stay in the last one)."""
    if num_epochs < 1 or num_stages < 1 or epoch < 0:
        raise ValueError(f"bad epoch {epoch}, num_stages {num_stages} or num_epochs {num_epochs}")
    return min(num_stages - 1, epoch * num_stages // num_epochs)


def resume_epoch(checkpoint: dict[str, Any]) -> int:
    """The epoch (0-based) that a run resumed from ``checkpoint`` trains first.

    ``checkpoint["epoch"]`` is the epoch being trained when it was written. If that epoch's last
    training batch was done (a checkpoint of ``ModelCheckpoint`` at the end of an epoch, after or
    without validation), Lightning resumes into the next epoch; otherwise (mid-epoch) into the
    same one.
    """
    epoch = int(checkpoint.get("epoch", 0))
    try:
        done = bool(checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["is_last_batch"])
    except (KeyError, TypeError):
        done = True  # no loop state: not written by the trainer; take it as an epoch end
    return epoch + 1 if done else epoch


class ProgressiveLengthCallback(pl.Callback):
    """Set the data module's crop length (``trainer.datamodule.set_max_length``) from the epoch's
    curriculum stage, and log ``train/curriculum_stage`` and ``train/max_length``.

    When a length takes effect: the batch sampler and the dataset read the crop length when an
    epoch's DataLoader iterator starts. Lightning creates that iterator after
    ``on_train_epoch_start`` for every epoch but the first one of a ``fit`` call, whose iterator
    is created before any epoch hook (when ``configure_optimizers`` asks for
    ``estimated_stepping_batches``); with ``numWorkers`` > 0 its workers copy the dataset and its
    first batches are drawn at that moment. So the first epoch's length is set earlier: in
    ``setup`` (right after the data module's, epoch 0) and, for a resumed run, again in
    ``on_load_checkpoint`` (the epoch it resumes into, :func:`resume_epoch`); both come before
    ``configure_optimizers`` on a single device and with DDP. ``on_train_epoch_start`` sets the
    length of every epoch, and warns if the first epoch's length was not known in time
    (strategies that restore checkpoints after their set-up, with ``numWorkers`` > 0).

    State: ``state_dict`` stores the stage, the epoch it was applied for and the stage lengths.
    On resume the stage is re-derived from the epoch; a stored stage that disagrees with the
    derivation (the curriculum or the number of epochs changed) is reported with a warning, and
    the curriculum of the config given now wins.
    """

    def __init__(self, *, start_length: int, end_length: int, num_stages: int, num_epochs: int):
        """
        Args:
            start_length: crop length of the first stage (residues).
            end_length: crop length of the last stage (residues).
            num_stages: number of stages.
            num_epochs: epochs of the whole run (the stages share them out equally).
        """
        self.lengths = stage_lengths(
            start_length=start_length, end_length=end_length, num_stages=num_stages
        )
        self.num_stages = num_stages
        self.num_epochs = num_epochs
        if num_stages > num_epochs:
            warnings.warn(
                f"progressive training: {num_stages} stages over {num_epochs} epochs; stages "
                f"{sorted(set(range(num_stages)) - {self.stage_of(e) for e in range(num_epochs)})} "
                "are never reached (the last length is never trained): use fewer stages",
                stacklevel=2,
            )
        self.stage: int | None = None  # stage last applied
        self.epoch: int | None = None  # epoch it was applied for
        self.restored_stage: int | None = None  # stage found in the checkpoint resumed from
        self._first_epoch_of_fit = False

    def stage_of(self, epoch: int) -> int:
        """Curriculum stage of 0-based ``epoch``."""
        return stage_of_epoch(epoch, num_stages=self.num_stages, num_epochs=self.num_epochs)

    @property
    def max_length(self) -> int:
        """Crop length of the stage last applied (residues)."""
        return self.lengths[self.stage if self.stage is not None else 0]

    def _apply(self, trainer: pl.Trainer, epoch: int) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "set_max_length"):
            raise RuntimeError(
                "ProgressiveLengthCallback needs a data module with set_max_length "
                "(train with datamodule=CaDataModule(...))"
            )
        self.stage, self.epoch = self.stage_of(epoch), epoch
        datamodule.set_max_length(self.lengths[self.stage])

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._apply(trainer, resume_epoch(checkpoint))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # epoch 0; a resumed run is set again in on_load_checkpoint
            self._first_epoch_of_fit = True
            self._apply(trainer, trainer.current_epoch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self._first_epoch_of_fit and self.epoch != epoch:
            warnings.warn(
                f"progressive training: the crop length of epoch {epoch} "
                f"({self.lengths[self.stage_of(epoch)]}) was set after its data loader started; "
                f"with numWorkers > 0 this epoch's batches use {self.max_length}",
                stacklevel=2,
            )
        self._first_epoch_of_fit = False
        self._apply(trainer, epoch)
        pl_module.log("train/curriculum_stage", float(self.stage), on_step=False, on_epoch=True)
        pl_module.log("train/max_length", float(self.max_length), on_step=False, on_epoch=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # an epoch resumed in its middle has no epoch-start hook; the next epoch's is not first
        self._first_epoch_of_fit = False

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "epoch": self.epoch, "lengths": list(self.lengths)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        stage, epoch = state_dict.get("stage"), state_dict.get("epoch")
        self.restored_stage = stage
        if stage is None or epoch is None:
            return
        derived = self.stage_of(epoch)
        lengths = list(state_dict.get("lengths", self.lengths))
        if derived != stage or lengths != self.lengths:
            warnings.warn(
                f"progressive training: the checkpoint was in stage {stage} of lengths {lengths} "
                f"at epoch {epoch}, but the config given now puts that epoch in stage {derived} "
                f"of lengths {self.lengths}; continuing with the config's curriculum",
                stacklevel=2,
            )
