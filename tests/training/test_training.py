"""Training end to end on real chains: the loss falls, resume is exact, checkpoints stand alone,
carry a checksum and load through every path; ``--resume`` and ``--init-weights`` refuse broken
checkpoints (and ``--resume`` another model) before anything is written."""

from __future__ import annotations

import logging
import math
import re
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from checkpoint_cases import CASES, flip_a_weight_byte, make, sentinel, snapshot
from helpers import REPO, tiny_train_config
from torch.testing import assert_close

from genie.checkpoint import CHECKSUM_KEY, CheckpointError, read_checkpoint, state_dict_digest
from genie.config import (
    ConfigError,
    GenieConfig,
    config_from_dict,
    config_to_text,
    load_config,
    save_config,
)
from genie.model import memory
from genie.sampling.run import main as sample_main
from genie.training.from_checkpoint import check_resume, load_initial_weights
from genie.training.module import GenieModule, load_module
from genie.training.run import build_datamodule, main, train

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)


tiny_config = tiny_train_config


def val_loss(module: GenieModule, cfg: GenieConfig) -> float:
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    module.eval()
    losses = []
    with torch.no_grad():
        for i, batch in enumerate(dm.val_dataloader()):
            gen = torch.Generator().manual_seed(1000 + i)
            for _ in range(4):  # several noise draws per batch, the same for every model
                losses.append(module.compute_loss(batch, generator=gen).item())
    return sum(losses) / len(losses)


def test_loss_falls_on_real_chains(tmp_path):
    cfg = tiny_config(tmp_path, "numEpochs=40")
    before = val_loss(GenieModule(cfg), cfg)
    _, module = train(cfg, **QUIET)
    after = val_loss(module, cfg)
    assert math.isfinite(after)
    # An untrained model predicts ε̂ = 0: its loss is E‖ε‖ ≈ 1.6. Learning must cut it clearly.
    assert after < 0.85 * before, (before, after)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly(tmp_path, workers):
    extra = ("triangularDropout=0.25", "warmupEpochs=1", f"numWorkers={workers}")
    straight_cfg = tiny_config(tmp_path / "a", "numEpochs=2", *extra)
    _, straight = train(straight_cfg, **QUIET)

    cut_cfg = tiny_config(tmp_path / "b", "numEpochs=1", *extra)
    trainer, _ = train(cut_cfg, **QUIET)
    last = Path(trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    resumed_cfg = tiny_config(tmp_path / "b", "numEpochs=2", *extra)
    _, resumed = train(resumed_cfg, resume=last, **QUIET)

    for (name, a), (_, b) in zip(
        straight.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert_close(a, b, msg=f"parameter {name} differs after resume")


def test_checkpoint_stands_alone(tmp_path):
    cfg = tiny_config(tmp_path, "numEpochs=1")
    trainer, module = train(cfg, **QUIET)
    run_dir = Path(trainer.logger.log_dir)
    assert load_config(run_dir / "config.resolved") == cfg
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert config_from_dict(GenieConfig, ckpt["hyper_parameters"]["config"]) == cfg
    for key in ("optimizer_states", "lr_schedulers", "epoch", "global_step"):
        assert key in ckpt
    loaded = load_module(ckpt_path).eval()
    module.eval()
    x = torch.randn(1, 10, 3) * 5
    t, mask = torch.tensor([50]), torch.ones(1, 10)
    with torch.no_grad():
        assert_close(loaded.model(x, t, mask), module.model(x, t, mask))


def test_non_finite_loss_is_reported_with_step_and_batch(tmp_path):
    module = GenieModule(tiny_config(tmp_path))
    batch = {
        "coords": torch.full((1, 8, 3), float("nan")), "mask": torch.ones(1, 8),
        "residue_index": torch.arange(8)[None], "names": ["broken_A_0"],
    }  # fmt: skip
    with pytest.raises(FloatingPointError, match=r"global step 0, batch 5 .*broken_A_0"):
        module.training_step(batch, 5)


def test_cli_reports_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.config"
    bad.write_text("batchSize 4\nlearningrate 1e-3\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "did you mean 'learningRate'" in err


class _WeightsAtStart(pl.Callback):
    """Records the weights and global step with which training starts."""

    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_init_weights_starts_a_new_run_from_the_weights(tmp_path):
    trainer, _ = train(tiny_config(tmp_path / "a", "numEpochs=1"), **QUIET)
    full = torch.load(Path(trainer.logger.log_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    stored = full["state_dict"]
    last = tmp_path / "weights_only.ckpt"  # no optimiser, schedule or loop state
    torch.save({"hyper_parameters": full["hyper_parameters"], "state_dict": stored}, last)

    cfg = tiny_config(tmp_path / "b", "numEpochs=1")
    fresh = GenieModule(cfg).state_dict()  # what the run would start from without the option
    assert any(not torch.equal(fresh[k], v) for k, v in stored.items())
    start = _WeightsAtStart()
    trainer, _ = train(cfg, init_weights=last, callbacks=[start], **QUIET)
    assert start.step == 0  # new counters, new run folder
    assert Path(trainer.logger.log_dir).is_relative_to(tmp_path / "b")
    for name, value in stored.items():
        assert_close(start.weights[name], value, msg=f"{name} not taken from the checkpoint")


def test_init_weights_rejects_another_model_and_resume(tmp_path):
    trainer, _ = train(tiny_config(tmp_path / "a", "numEpochs=1"), **QUIET)
    last = Path(trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    wider = tiny_config(tmp_path / "b", "singleFeatureDimension=24")
    with pytest.raises(ConfigError, match=r"does not match the config's model .*shape"):
        train(wider, init_weights=last, **QUIET)
    with pytest.raises(ConfigError, match="exclude each other"):
        train(tiny_config(tmp_path / "c"), init_weights=last, resume=last, **QUIET)


def test_cli_passes_init_weights_on(tmp_path, capsys):
    missing = tmp_path / "nowhere.ckpt"
    config = Path(__file__).resolve().parents[2] / "configs" / "train_quickstart.config"
    argv = ["--config", str(config), "--init-weights", str(missing)]
    assert main([*argv, "--set", f"logDirectory={tmp_path}"]) == 2
    assert f"--init-weights: checkpoint not found: {missing}" in capsys.readouterr().err


# --- checkpoint integrity ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny run of one epoch: (the folder of its data and runs, its run folder)."""
    root = tmp_path_factory.mktemp("trained")
    trainer, _ = train(tiny_config(root, "numEpochs=1"), **QUIET)
    return root, Path(trainer.logger.log_dir)


def copy_of(trained_run, folder: Path) -> tuple[Path, Path]:
    """A copy of the trained run's folder (cache and runs) under ``folder``: (its root, the
    copied last.ckpt)."""
    root, run_dir = trained_run
    shutil.copytree(root, folder)
    return folder, folder / run_dir.relative_to(root) / "checkpoints" / "last.ckpt"


def test_checkpoints_carry_a_checksum_and_load_through_every_path(trained_run, tmp_path, capsys):
    root, run_dir = trained_run
    cfg = tiny_config(root, "numEpochs=1")
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert [p.name for p in checkpoints] == ["best-epoch0000.ckpt", "last.ckpt"]
    for path in checkpoints:
        stored = torch.load(path, weights_only=True)
        digest = state_dict_digest(stored["state_dict"])
        assert stored[CHECKSUM_KEY] == {"algorithm": "sha256", "state_dict": digest}
        assert any(k.startswith("model.") for k in stored["state_dict"])
        trained = read_checkpoint(path)
        assert load_module(path).config == trained.config == cfg
        module = GenieModule(cfg)
        load_initial_weights(module, path)  # --init-weights
        for name, value in stored["state_dict"].items():
            assert torch.equal(module.state_dict()[name], value), name
        check_resume(cfg, path)  # --resume (resuming itself: test_resume_..._warns_and_goes_on)
    out = tmp_path / "samples"
    argv = ["--config", str(REPO / "configs" / "sample_quickstart.config")]
    for item in (f"checkpoint={run_dir}", f"outputDirectory={out}", "sampleLengths=12",
                 "samplesPerLength=1", "device=cpu", "samplingStrategy=ddim",
                 "skipSteps=25"):  # fmt: skip
        argv += ["--set", item]
    assert sample_main(argv) == 0, capsys.readouterr().err
    assert len(list(out.glob("*.pdb"))) == 1
    flip_a_weight_byte(run_dir / "checkpoints" / "last.ckpt", tmp_path / "flipped.ckpt")
    torch.load(tmp_path / "flipped.ckpt", weights_only=True)  # loads: only the checksum tells
    with pytest.raises(CheckpointError, match="do not match its checksum"):
        read_checkpoint(tmp_path / "flipped.ckpt")


@pytest.mark.parametrize("flag", ["--init-weights", "--resume"])
@pytest.mark.parametrize("case", CASES)
def test_training_refuses_broken_checkpoints_before_writing(case, flag, trained_run, tmp_path,
                                                            capsys):  # fmt: skip
    _, run_dir = trained_run
    bad = make(case, run_dir / "checkpoints" / "last.ckpt", tmp_path / "bad")
    config = tmp_path / "tiny.config"
    save_config(tiny_config(tmp_path / "new"), config)
    assert main(["--config", str(config), flag, str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"error: {flag}: checkpoint {bad} " in err and "Traceback" not in err
    assert re.search(CASES[case], err), err
    assert not (tmp_path / "new").exists()  # no run folder, no data cache
    assert not sentinel(tmp_path / "bad").exists()


def test_resume_refuses_another_model_before_writing_anything(trained_run, tmp_path, capsys):
    root, last = copy_of(trained_run, tmp_path / "copy")
    before = snapshot(root)
    wider = tiny_config(root, "numEpochs=2", "pairFeatureDimension=12")
    with pytest.raises(ConfigError, match="differs from --config's model") as caught:
        train(wider, resume=last, **QUIET)
    message = str(caught.value)
    assert "pairFeatureDimension 8 (checkpoint) vs 12 (--config)" in message
    assert "--init-weights" in message and "config.resolved" in message
    assert "numEpochs" not in message and "logDirectory" not in message  # allowed differences
    config = tmp_path / "wider.config"
    save_config(wider, config)
    assert main(["--config", str(config), "--resume", str(last)]) == 2
    err = capsys.readouterr().err
    assert f"error: --resume: the model in {last} differs" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match=r"numTimesteps 100 \(checkpoint\) vs 50"):
        check_resume(tiny_config(root, "numTimesteps=50"), last)  # same weights, other schedule
    with pytest.raises(ConfigError, match="trained with unit noise, epsilon .* length-aware σ, x0"):
        check_resume(tiny_config(root, "noiseScale=length", "predictionTarget=x0"), last)
    check_resume(tiny_config(root, "noiseSigma=3"), last)  # σ of fixed: no meaning for unit
    assert snapshot(root) == before  # not a byte, not a time stamp changed


def test_resume_with_other_training_keys_warns_and_goes_on(trained_run, tmp_path, caplog):
    root, last = copy_of(trained_run, tmp_path / "copy")
    cfg = tiny_config(root, "numEpochs=2", "learningRate=1e-3")
    with caplog.at_level(logging.WARNING, logger="genie.train"):
        trainer, _ = train(cfg, resume=last, **QUIET)
    assert trainer.current_epoch == 2
    warning = next(r.message for r in caplog.records if "--resume: the config differs" in r.message)
    assert "numEpochs (1 -> 2)" in warning and "learningRate (0.003 -> 0.001)" in warning
    stored = torch.load(last, weights_only=True)  # rewritten by the resumed run
    assert (stored["epoch"], stored["global_step"]) == (1, 2 * trainer.num_training_batches)
    assert stored[CHECKSUM_KEY]["state_dict"] == state_dict_digest(stored["state_dict"])
    assert read_checkpoint(last).config == cfg


def test_a_step_that_cannot_fit_is_refused_before_training(tmp_path, capsys, monkeypatch):
    config = tmp_path / "huge.config"
    config.write_text(config_to_text(tiny_config(tmp_path, "maximumNumResidues=100000")))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "a training step of 8 chain(s) of 100,000 residues needs about" in err
    assert "lower maximumNumResidues (the crop length) or batchSize" in err
    assert "Traceback" not in err and not (tmp_path / "runs" / "test").exists()
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1024)
    small = tmp_path / "small.config"
    small.write_text(config_to_text(tiny_config(tmp_path, "numEpochs=1")))
    assert main(["--config", str(small)]) == 2  # a tiny model on a 1 KiB device
    assert main(["--config", str(small), "--force"]) == 0
    assert (tmp_path / "runs" / "test" / "version_0" / "checkpoints" / "last.ckpt").is_file()
