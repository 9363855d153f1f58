"""TensorBoard pictures of sampled backbones: contact maps, the callback's guards, and a short
training run whose event file holds every image and scalar."""

from __future__ import annotations

import logging
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import tiny_train_config
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.testing import assert_close

from genie.config import GenieConfig
from genie.eval import MissingDependencyError
from genie.training import pictures
from genie.training.backbone_figures import contact_map, distance_map
from genie.training.module import GenieModule
from genie.training.pictures import SamplePictures, preserved_state
from genie.training.run import build_callbacks, train

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)
IMAGES = ["contact_map", "distance_map", "ca_trace", "distributions", "secondary_structure",
          "rg_vs_length"]  # fmt: skip
SCALARS = ["ca_ca_mean", "clashes_per_residue", "helix_fraction", "strand_fraction", "jsd_angle",
           "jsd_dihedral", "seconds"]  # fmt: skip


def straight_line(n: int) -> np.ndarray:
    """``[n, 3]`` Cα 3.8 Å apart on the x axis (Å)."""
    return np.stack([3.8 * np.arange(n), np.zeros(n), np.zeros(n)], axis=-1)


def test_contact_map_of_a_straight_line():
    n = 12
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    assert_close(distance_map(straight_line(n)), 3.8 * np.abs(i - j).astype(np.float64))
    # 2 apart: 7.6 Å < 8 Å; 3 apart: 11.4 Å
    np.testing.assert_array_equal(contact_map(straight_line(n)), np.abs(i - j) <= 2)
    np.testing.assert_array_equal(contact_map(straight_line(n), threshold=12.0), np.abs(i - j) <= 3)


def pictures_of(cfg: GenieConfig) -> list[SamplePictures]:
    return [c for c in build_callbacks(cfg) if isinstance(c, SamplePictures)]


def test_callbacks_follow_the_config():
    assert not pictures_of(GenieConfig(logSamplesEveryEpochs=0))
    (default,) = pictures_of(GenieConfig())
    assert (default.every_n_epochs, default.count, default.length) == (10, 4, 128)
    assert default.skip_steps == 20
    (short,) = pictures_of(GenieConfig(maximumNumResidues=32, logSamplesEveryEpochs=3))
    assert (short.every_n_epochs, short.length) == (3, 32)  # min(128, maximumNumResidues)
    (given,) = pictures_of(GenieConfig(maximumNumResidues=32, logSamplesLength=200))
    assert given.length == 200


def fake_trainer(tmp_path, *, epoch: int, loggers=None) -> SimpleNamespace:
    loggers = [TensorBoardLogger(tmp_path, name="fake")] if loggers is None else loggers
    return SimpleNamespace(
        current_epoch=epoch, is_global_zero=True, loggers=loggers, global_step=7, datamodule=None
    )


@pytest.fixture
def tiny_module(tmp_path) -> GenieModule:
    return GenieModule(tiny_train_config(tmp_path)).train()


def test_fires_every_n_epochs_only(tmp_path, tiny_module, monkeypatch):
    calls = []
    monkeypatch.setattr(SamplePictures, "log_round", lambda self, *args: calls.append(args))
    callback = SamplePictures(every_n_epochs=2, count=1, length=8, skip_steps=20, seed=0)
    for epoch in range(5):
        callback.on_train_epoch_end(fake_trainer(tmp_path, epoch=epoch), tiny_module)
    assert len(calls) == 2  # after epochs 2 and 4 (current_epoch 1 and 3)
    not_tensorboard = fake_trainer(tmp_path, epoch=1, loggers=[CSVLogger(tmp_path)])
    callback.on_train_epoch_end(not_tensorboard, tiny_module)
    assert len(calls) == 2


def test_a_failure_only_warns_and_state_is_restored(tmp_path, tiny_module, monkeypatch, caplog):
    def broken(*args, **kwargs):
        torch.rand(5), np.random.rand(5), random.random()  # consumes every random stream
        assert not tiny_module.training and not torch.is_grad_enabled()
        raise RuntimeError("no pictures today")

    monkeypatch.setattr(pictures, "sample_traces", broken)
    tiny_module.model.eval()  # a submodule's own mode must survive too
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    callback = SamplePictures(every_n_epochs=1, count=1, length=8, skip_steps=20, seed=0)
    with caplog.at_level(logging.WARNING, logger="genie.training.pictures"):
        callback.on_train_epoch_end(fake_trainer(tmp_path, epoch=0), tiny_module)
    assert "RuntimeError: no pictures today" in caplog.text
    assert tiny_module.training and not tiny_module.model.training
    assert torch.equal(torch.get_rng_state(), states[0])
    np.testing.assert_array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]


def test_without_biotite_the_maps_are_logged_with_one_warning(
    tmp_path, tiny_module, monkeypatch, caplog
):
    def missing(*args, **kwargs):
        raise MissingDependencyError("secondary structure (P-SEA) needs the package 'biotite'")

    monkeypatch.setattr(pictures, "summarize_reference", missing)
    monkeypatch.setattr(pictures, "reference_traces", lambda *args, **kwargs: [np.ones((40, 3))])
    callback = SamplePictures(every_n_epochs=1, count=1, length=8, skip_steps=20, seed=0)
    trainer = fake_trainer(tmp_path, epoch=0)
    with caplog.at_level(logging.WARNING, logger="genie.training.pictures"):
        for _ in range(2):
            callback.on_train_epoch_end(trainer, tiny_module)
    assert caplog.text.count("genie-long[eval]") == 1, caplog.text
    events = EventAccumulator(trainer.loggers[0].log_dir, size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {f"samples/{name}" for name in IMAGES[:3]}


def test_preserved_state_restores_modes(tiny_module):
    with preserved_state(tiny_module):
        assert not any(m.training for m in tiny_module.modules())
    assert all(m.training for m in tiny_module.modules())


def test_training_logs_pictures_and_scalars_and_trains_as_without(tmp_path):
    on = ("numEpochs=2", "logSamplesEveryEpochs=1", "logSamplesCount=2", "triangularDropout=0.25")
    trainer, module = train(tiny_train_config(tmp_path / "on", *on), **QUIET)
    off = tiny_train_config(tmp_path / "off", *on[:1], "logSamplesEveryEpochs=0", *on[-1:])
    _, plain = train(off, **QUIET)
    for (name, a), (_, b) in zip(
        module.state_dict().items(), plain.state_dict().items(), strict=True
    ):
        assert_close(a, b, msg=f"the pictures changed the training of {name}")

    events = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    steps = [trainer.global_step // 2, trainer.global_step]  # the end of epochs 1 and 2
    for name in IMAGES:
        images = events.Images(f"samples/{name}")
        assert [image.step for image in images] == steps, name
        assert images[-1].width > 100 and images[-1].height > 100
    for name in SCALARS:
        values = events.Scalars(f"samples/{name}")
        assert [v.step for v in values] == steps, name
        assert all(np.isfinite(v.value) for v in values)
    assert "samples/jsd_bond_length" in tags["scalars"]
