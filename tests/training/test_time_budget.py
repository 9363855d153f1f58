"""``maxTrainingMinutes``: a time-budgeted run always leaves ``last.ckpt`` (whatever
``checkpointEveryEpochs``); a budget too small for one epoch says so (0 epochs completed) and
its mid-epoch checkpoint resumes exactly; a budget already spent trains nothing more."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from helpers import RESUME_EXTRA, TINY_STEPS_PER_EPOCH, assert_same_weights, tiny_train_config

from genie.training.run import train

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)


def tiny(root: Path, *extra: str):
    return tiny_train_config(root, *RESUME_EXTRA, "checkpointEveryEpochs=5", *extra)


def stored(trainer) -> dict:
    path = Path(trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)


def test_a_budget_too_small_for_one_epoch_says_so_and_resumes_exactly(
    tmp_path, caplog, uninterrupted
):
    with caplog.at_level(logging.WARNING, logger="genie.train"):
        trainer, _ = train(tiny(tmp_path, "numEpochs=5", "maxTrainingMinutes=1e-9"), **QUIET)
    warning = next(r.message for r in caplog.records if "maxTrainingMinutes" in r.message)
    assert "maxTrainingMinutes 1e-09 (6e-08 s) ran out before one whole epoch" in warning
    assert "0 epochs completed in this run" in warning
    assert f"after 1 of {TINY_STEPS_PER_EPOCH} training batches of epoch 1" in warning
    last = stored(trainer)  # written although checkpointEveryEpochs is 5
    assert (last["global_step"], last["epoch"]) == (1, 0)  # in the middle of epoch 0
    spent = next(v for k, v in last["callbacks"].items() if k.startswith("TimeBudget"))
    assert spent["elapsed_seconds"] > 1e-9 * 60
    resumed, _ = train(tiny(tmp_path, "numEpochs=2"), resume=Path(trainer.logger.log_dir) /
                       "checkpoints" / "last.ckpt", **QUIET)  # fmt: skip
    assert resumed.global_step == 2 * TINY_STEPS_PER_EPOCH
    assert_same_weights(Path(resumed.logger.log_dir) / "checkpoints" / "last.ckpt",
                        uninterrupted[2])  # fmt: skip


@pytest.mark.parametrize("minutes", ["0.0001", "0.003"])
def test_a_time_budgeted_run_always_leaves_its_last_state(tmp_path, minutes):
    """Wherever the budget runs out (timing-dependent), last.ckpt holds the state training
    ended with."""
    cfg = tiny(tmp_path, "numEpochs=50", f"maxTrainingMinutes={minutes}")
    trainer, module = train(cfg, **QUIET)
    assert 0 < trainer.global_step < 50 * TINY_STEPS_PER_EPOCH
    last = stored(trainer)
    assert last["global_step"] == trainer.global_step
    for name, value in module.state_dict().items():
        assert torch.equal(last["state_dict"][name], value), name


def test_a_budget_spent_before_the_resume_trains_nothing(tmp_path, caplog):
    trainer, _ = train(tiny(tmp_path, "numEpochs=5", "maxTrainingMinutes=1e-9"), **QUIET)
    path = Path(trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    with caplog.at_level(logging.WARNING, logger="genie.train"):
        resumed, _ = train(tiny(tmp_path, "numEpochs=5", "maxTrainingMinutes=1e-9"),
                           resume=path, **QUIET)  # fmt: skip
    assert resumed.global_step == 1
    assert "was already spent when training started" in caplog.text
    assert torch.load(path, weights_only=True)["global_step"] == 1
