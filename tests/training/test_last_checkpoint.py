"""Training always ends with ``last.ckpt`` (all epochs done, whatever ``checkpointEveryEpochs``;
a first Ctrl-C, after the current batch), and a checkpoint written in the middle of an epoch
resumes exactly: the resumed run ends with the weights of the uninterrupted one."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import RESUME_EXTRA, TINY_STEPS_PER_EPOCH, assert_same_weights, tiny_train_config

from genie.config import save_config
from genie.training import run as training_run
from genie.training.run import main, train

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)
STEPS = TINY_STEPS_PER_EPOCH


def tiny(root: Path, *extra: str):
    return tiny_train_config(root, *RESUME_EXTRA, *extra)


def last_of(trainer) -> Path:
    return Path(trainer.logger.log_dir) / "checkpoints" / "last.ckpt"


def stored(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_the_last_epoch_is_saved_whatever_checkpoint_every_epochs(tmp_path, uninterrupted):
    trainer, _ = train(tiny(tmp_path, "numEpochs=3", "checkpointEveryEpochs=2"), **QUIET)
    last = stored(last_of(trainer))
    # the end of the third epoch (epoch index 2), all its batches trained
    assert (last["global_step"], last["epoch"]) == (3 * STEPS, 2)
    assert last["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"] == 3
    # the best checkpoint is still written every 2 epochs only
    assert sorted(p.name for p in last_of(trainer).parent.glob("best-*")) == ["best-epoch0001.ckpt"]
    resumed, _ = train(tiny(tmp_path, "numEpochs=4", "checkpointEveryEpochs=2"),
                       resume=last_of(trainer), **QUIET)  # fmt: skip
    assert resumed.global_step == 4 * STEPS
    assert_same_weights(last_of(resumed), uninterrupted[4])


class CtrlC(pl.Callback):
    """Presses Ctrl-C (SIGINT to this process) ``times`` times during training batch ``batch``
    of epoch ``epoch``."""

    def __init__(self, *, epoch: int, batch: int, times: int = 1) -> None:
        self.epoch, self.batch, self.times = epoch, batch, times

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            for _ in range(self.times):
                signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize("workers", [0, 2])
def test_ctrl_c_saves_after_the_batch_and_resumes_exactly(tmp_path, uninterrupted, workers,
                                                          capsys, caplog):  # fmt: skip
    cfg = tiny(tmp_path, "numEpochs=2", "checkpointEveryEpochs=5", f"numWorkers={workers}")
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), caplog.at_level(logging.INFO, logger="genie.train"):
        train(cfg, callbacks=[CtrlC(epoch=1, batch=0)], **QUIET)
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    last = cfg_last(tmp_path)
    assert stored(last)["global_step"] == STEPS + 1  # epoch 1 and the batch that was running
    assert "Ctrl-C: training stops after this batch" in capsys.readouterr().err
    assert "stopped in epoch 2, batch 1 of 2: --resume goes on with the next" in caplog.text
    resumed, _ = train(cfg, resume=last, **QUIET)
    assert resumed.global_step == 2 * STEPS
    assert_same_weights(last, uninterrupted[2])


def cfg_last(root: Path) -> Path:
    return root / "runs" / "test" / "version_0" / "checkpoints" / "last.ckpt"


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path):
    cfg = tiny(tmp_path, "numEpochs=3")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[CtrlC(epoch=1, batch=1, times=2)], **QUIET)
    assert stored(cfg_last(tmp_path))["global_step"] == STEPS  # epoch 1's checkpoint stays


def test_the_command_saves_on_ctrl_c_and_exits_130(tmp_path, monkeypatch, capsys):
    build = training_run.build_callbacks
    monkeypatch.setattr(training_run, "build_callbacks",
                        lambda cfg: [*build(cfg), CtrlC(epoch=0, batch=0)])  # fmt: skip
    config = tmp_path / "tiny.config"
    save_config(tiny(tmp_path, "numEpochs=3", "checkpointEveryEpochs=2"), config)
    assert main(["--config", str(config)]) == 130
    assert stored(cfg_last(tmp_path))["global_step"] == 1
    assert capsys.readouterr().err.strip().endswith(": interrupted")
