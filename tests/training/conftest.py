"""Fixtures of the training tests: the weights of uninterrupted runs that resumed runs must
equal bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import RESUME_EXTRA, checkpoint_weights, tiny_train_config

from genie.training.run import train


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory):
    """``{epochs: state_dict}`` of uninterrupted tiny runs of 2 and 4 epochs (with
    :data:`~helpers.RESUME_EXTRA`)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    weights = {}
    for epochs in (2, 4):
        cfg = tiny_train_config(root / str(epochs), *RESUME_EXTRA, f"numEpochs={epochs}")
        trainer, _ = train(cfg, enable_progress_bar=False, enable_model_summary=False)
        weights[epochs] = checkpoint_weights(Path(trainer.logger.log_dir) / "checkpoints" /
                                             "last.ckpt")  # fmt: skip
    return weights
