"""``--resume`` continues the checkpoint's lineage: in its own run folder (a config that names
another folder is refused before anything is written, and the other run's files stay
byte-identical), never over a further-on ``last.ckpt``, and only with the checkpoint's model
(model keys that change what the weights compute are refused even when the shapes agree)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest
import torch
from checkpoint_cases import snapshot
from helpers import tiny_train_config

from genie.config import ConfigError, save_config
from genie.config.model_keys import RESUMABLE_MODEL_KEYS, ModelKeys
from genie.training.from_checkpoint import MODEL_IDENTITY_KEYS, check_resume
from genie.training.run import main, train

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)


def config(root: Path, name: str, *extra: str):
    return tiny_train_config(root, f"name={name}", *extra)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Run alpha (1 epoch) and run beta (2 epochs) side by side in one logDirectory."""
    root = tmp_path_factory.mktemp("runs")
    train(config(root, "alpha", "numEpochs=1"), **QUIET)
    train(config(root, "beta", "numEpochs=2"), **QUIET)
    return root


def copy_of(two_runs: Path, folder: Path) -> Path:
    shutil.copytree(two_runs, folder)
    return folder


def last_of(root: Path, name: str) -> Path:
    return root / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"


def test_resume_with_another_name_is_refused_and_the_other_run_is_untouched(
    two_runs, tmp_path, capsys
):
    root = copy_of(two_runs, tmp_path / "copy")
    alpha, beta = last_of(root, "alpha"), last_of(root, "beta")
    assert torch.load(beta, weights_only=True)["epoch"] == 1  # beta's own epoch-2 checkpoint
    before = snapshot(root)
    cfg = config(root, "beta", "numEpochs=2")  # alpha's checkpoint, beta's name
    with pytest.raises(ConfigError) as caught:
        train(cfg, resume=alpha, **QUIET)
    message = str(caught.value)
    assert f"belongs to the run folder {alpha.parent.parent}" in message
    assert f"ask for a run folder in {root / 'runs' / 'beta'}" in message
    assert "name alpha" in message
    path = tmp_path / "alpha.config"  # the command line: alpha's config, --set name=beta
    save_config(config(root, "alpha", "numEpochs=2"), path)
    assert main(["--config", str(path), "--set", "name=beta", "--resume", str(alpha)]) == 2
    err = capsys.readouterr().err
    assert "error: --resume:" in err and "belongs to the run folder" in err
    assert "Traceback" not in err
    assert snapshot(root) == before  # beta (and alpha) byte-identical, not a time stamp changed


def test_resume_with_another_log_directory_is_refused(two_runs, tmp_path):
    root = copy_of(two_runs, tmp_path / "copy")
    cfg = tiny_train_config(tmp_path / "elsewhere", "name=alpha", "numEpochs=2")
    with pytest.raises(ConfigError, match="belongs to the run folder"):
        check_resume(cfg, last_of(root, "alpha"))
    assert not (tmp_path / "elsewhere").exists()


def test_resume_continues_in_the_checkpoints_folder(two_runs, tmp_path):
    root = copy_of(two_runs, tmp_path / "copy")
    beta_before = snapshot(root / "runs" / "beta")
    trainer, _ = train(config(root, "alpha", "numEpochs=2"), resume=last_of(root, "alpha"),
                       **QUIET)  # fmt: skip
    assert Path(trainer.logger.log_dir) == root / "runs" / "alpha" / "version_0"
    assert torch.load(last_of(root, "alpha"), weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in (root / "runs" / "alpha").iterdir()) == ["version_0"]
    assert snapshot(root / "runs" / "beta") == beta_before


def test_a_checkpoint_behind_last_ckpt_is_refused_and_a_copy_branches_off(two_runs, tmp_path):
    root = copy_of(two_runs, tmp_path / "copy")
    beta = last_of(root, "beta")
    earlier = beta.with_name("epoch1.ckpt")  # as a user keeps one, beside last.ckpt: beta
    shutil.copy(last_of(root, "alpha"), earlier)  # after 1 epoch is alpha's (same seed, data)
    before = snapshot(root)
    cfg = config(root, "beta", "numEpochs=3")
    with pytest.raises(ConfigError) as caught:
        check_resume(cfg, earlier)
    message = str(caught.value)
    assert f"{beta} of the same run is further on (step 4, epoch 1)" in message
    assert "(step 2, epoch 0)" in message and "would overwrite it" in message
    assert snapshot(root) == before
    outside = tmp_path / "branch.ckpt"  # copied out of the run folder: a new run folder
    shutil.copy(earlier, outside)
    assert check_resume(cfg, outside) is None
    trainer, _ = train(cfg, resume=outside, **QUIET)
    assert Path(trainer.logger.log_dir) == root / "runs" / "beta" / "version_1"
    assert snapshot(root / "runs" / "beta" / "version_0") == {
        k.removeprefix("runs/beta/version_0/"): v
        for k, v in before.items()
        if k.startswith("runs/beta/version_0/")
    }


def test_model_keys_that_keep_the_shapes_are_refused_and_memory_keys_allowed(
    two_runs, tmp_path, caplog
):
    root = copy_of(two_runs, tmp_path / "copy")
    alpha = last_of(root, "alpha")
    # the same weights, another function: the structure stack applied twice
    with pytest.raises(ConfigError) as caught:
        check_resume(config(root, "alpha", "numStructureBlocks=2"), alpha)
    assert "numStructureBlocks 1 (checkpoint) vs 2 (--config)" in str(caught.value)
    assert "missing" not in str(caught.value)  # no parameter differs: the key alone refuses
    memory_only = ("triangleChunkSize=5", "useGradientCheckpointing=True", "ipaDropout=0.2")
    with caplog.at_level(logging.WARNING, logger="genie.train"):
        run = check_resume(config(root, "alpha", *memory_only), alpha)
    assert run == alpha.parent.parent
    assert "triangleChunkSize (None -> 5)" in caplog.text


def test_the_resumable_model_keys_are_model_keys():
    names = {f.name for f in dataclasses.fields(ModelKeys)}
    assert RESUMABLE_MODEL_KEYS <= names, RESUMABLE_MODEL_KEYS - names
    assert {"numTimesteps", "schedule", "knnStrategy", "kNeighbors"} <= set(MODEL_IDENTITY_KEYS)
