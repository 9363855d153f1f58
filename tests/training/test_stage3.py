"""Stage-3 training machinery end to end: the length curriculum (also across a resume), fp16 with
a gradient scaler, bf16, the multi-scale distance loss and the chunked-loss switch."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import tiny_train_config
from pytorch_lightning.plugins import MixedPrecision
from torch.testing import assert_close

from genie.config import GenieConfig
from genie.diffusion import distance_error_sums, per_chain_distance_loss
from genie.training.curriculum import ProgressiveLengthCallback, stage_lengths, stage_of_epoch
from genie.training.module import GenieModule, use_fused_adamw
from genie.training.precision import SkippedStepMonitor, lightning_precision
from genie.training.run import build_datamodule, build_trainer, train

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)
CURRICULUM = [
    "useProgressiveTraining=True",
    "progressiveStartLength=8",
    "progressiveEndLength=32",
    "progressiveNumStages=4",
]  # fmt: skip  (stage lengths 8, 16, 24, 32)


tiny_config = tiny_train_config


class BatchLengths(pl.Callback):
    """Record the residue dimension n of every training batch, by epoch."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.by_epoch.setdefault(trainer.current_epoch, []).append(batch["coords"].shape[1])


def one(callbacks, kind):
    (found,) = [c for c in callbacks if isinstance(c, kind)]
    return found


# --- curriculum ---------------------------------------------------------------------------------
def test_stage_lengths_and_epochs():
    assert stage_lengths(start_length=8, end_length=32, num_stages=4) == [8, 16, 24, 32]
    # 64 · 4^(k/3) = 64, 101.6, 161.3, 256 -> multiples of 8, the end exact.
    assert stage_lengths(start_length=64, end_length=256, num_stages=4) == [64, 104, 160, 256]
    assert stage_lengths(start_length=20, end_length=100, num_stages=3) == [20, 48, 100]
    assert stage_lengths(start_length=64, end_length=72, num_stages=4) == [64, 64, 72, 72]
    assert stage_lengths(start_length=64, end_length=256, num_stages=1) == [256]
    stages = [stage_of_epoch(e, num_stages=4, num_epochs=8) for e in range(10)]
    assert stages == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    assert [stage_of_epoch(e, num_stages=4, num_epochs=6) for e in range(6)] == [0, 0, 1, 2, 2, 3]
    assert [stage_of_epoch(e, num_stages=3, num_epochs=2) for e in range(2)] == [0, 1]
    with pytest.warns(UserWarning, match=r"stages \[2\] are never reached"):
        ProgressiveLengthCallback(start_length=8, end_length=32, num_stages=3, num_epochs=2)


def test_curriculum_switches_at_the_stage_epochs(tmp_path):
    seen = BatchLengths()
    trainer, _ = train(tiny_config(tmp_path, "numEpochs=8", *CURRICULUM), callbacks=[seen], **QUIET)
    # 4 stages over 8 epochs: the crop length changes at epochs 2, 4 and 6 (chains are longer
    # than 32 residues, so every batch is as long as the crop).
    expected = [8, 8, 16, 16, 24, 24, 32, 32]
    assert {e: set(n) for e, n in seen.by_epoch.items()} == {e: {n} for e, n in enumerate(expected)}
    assert trainer.callback_metrics["train/max_length"].item() == 32
    assert trainer.callback_metrics["train/curriculum_stage"].item() == 3


def test_curriculum_survives_resume(tmp_path):
    # A 6-epoch curriculum (lengths 8, 8, 16, 24, 24, 32), stopped after 3 epochs and resumed.
    # numWorkers=2: the workers copy the dataset when an epoch's loader starts, which for the
    # first epoch of a fit (fresh or resumed) is before any epoch hook.
    cfg = tiny_config(tmp_path, "numEpochs=6", "numWorkers=2", *CURRICULUM)
    first = BatchLengths()
    trainer, _ = train(cfg, callbacks=[first], max_epochs=3, **QUIET)
    assert {e: set(n) for e, n in first.by_epoch.items()} == {0: {8}, 1: {8}, 2: {16}}
    last = Path(trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 2  # the last epoch, not the best

    resumed = BatchLengths()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = train(cfg, resume=last, callbacks=[resumed], **QUIET)
    assert not [w for w in caught if "progressive training" in str(w.message)]
    assert {e: set(n) for e, n in resumed.by_epoch.items()} == {3: {24}, 4: {24}, 5: {32}}
    assert torch.load(last, weights_only=True)["epoch"] == 5
    assert sorted(p.name for p in last.parent.glob("last*")) == ["last.ckpt"]
    curriculum = one(trainer.callbacks, ProgressiveLengthCallback)
    assert curriculum.restored_stage == 1  # epoch 2's stage, from the checkpoint
    assert (curriculum.stage, curriculum.epoch) == (3, 5)


def test_curriculum_warns_when_the_schedule_changed():
    callback = ProgressiveLengthCallback(start_length=8, end_length=32, num_stages=4, num_epochs=6)
    callback.load_state_dict({"stage": 1, "epoch": 2, "lengths": [8, 16, 24, 32]})  # agrees
    with pytest.warns(UserWarning, match="stage 1 .* at epoch 2.* stage 2"):
        other = ProgressiveLengthCallback(start_length=8, end_length=32, num_stages=4, num_epochs=4)
        other.load_state_dict({"stage": 1, "epoch": 2, "lengths": [8, 16, 24, 32]})


# --- mixed precision ----------------------------------------------------------------------------
def test_precision_mapping(tmp_path):
    assert lightning_precision(use_mixed_precision=True, precision="16") == "16-mixed"
    assert lightning_precision(use_mixed_precision=True, precision="bf16") == "bf16-mixed"
    assert lightning_precision(use_mixed_precision=True, precision="32") == "32-true"
    assert lightning_precision(use_mixed_precision=False, precision="bf16") == "32-true"
    for extra, expected in (("useMixedPrecision=True", "bf16-mixed"), ("precision=16", "32-true")):
        trainer = build_trainer(tiny_config(tmp_path, extra), **QUIET)
        assert trainer.precision == expected


def test_fused_adamw_only_where_lightning_can_clip():
    # Lightning refuses to clip the gradients of the fused AdamW under either mixed precision
    # (seen on an H100: bf16-mixed with gradientClipVal 1 failed at the first step).
    assert use_fused_adamw(device_type="cuda", precision="32-true", gradient_clip_val=1.0)
    assert use_fused_adamw(device_type="cuda", precision="bf16-mixed", gradient_clip_val=None)
    for precision in ("16-mixed", "bf16-mixed"):
        assert not use_fused_adamw(device_type="cuda", precision=precision, gradient_clip_val=1.0)
    assert not use_fused_adamw(device_type="cpu", precision="32-true", gradient_clip_val=None)


class InjectInfGradient(pl.Callback):
    """Put an inf into one gradient after the backward pass of global step ``step``, and record
    the weights before and after every training batch."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.changed: dict[int, bool] = {}
        self.losses: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._before = [p.detach().clone() for p in pl_module.parameters()]

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step == self.step:
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            grads[0].view(-1)[0] = float("inf")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        pairs = zip(self._before, pl_module.parameters(), strict=True)
        self.changed[trainer.global_step - 1] = any(not torch.equal(a, b) for a, b in pairs)
        self.losses.append(float(outputs["loss"]))


def test_fp16_gradient_scaler_skips_non_finite_steps(tmp_path, capsys):
    # Lightning turns precision="16-mixed" into bf16 on the CPU; its fp16 plugin with a CPU
    # GradScaler runs the same code path as on a GPU. A small initial scale avoids overflows of
    # the first steps, so that the only skipped step is the injected one.
    cfg = tiny_config(tmp_path, "numEpochs=2", "useMixedPrecision=True", "precision=16")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    spy = InjectInfGradient(step=1)
    trainer, _ = train(
        cfg,
        precision=None,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
        callbacks=[spy],
        **QUIET,
    )
    assert trainer.precision == "16-mixed" and trainer.precision_plugin.scaler.is_enabled()
    assert all(math.isfinite(v) for v in spy.losses)
    assert spy.changed == {0: True, 1: False, 2: True, 3: True}  # step 1 left the weights alone
    assert scaler.get_scale() == 2.0**7  # halved once
    assert one(trainer.callbacks, SkippedStepMonitor).skipped_steps == 1
    assert trainer.callback_metrics["train/skipped_steps"].item() == 1
    assert "optimiser step skipped at global step 1" in capsys.readouterr().out


def test_bf16_mixed_trains(tmp_path):
    cfg = tiny_config(tmp_path, "numEpochs=1", "useMixedPrecision=True", "precision=bf16")
    trainer, module = train(cfg, **QUIET)
    assert trainer.precision == "bf16-mixed"
    assert trainer.global_step == 2
    for key in ("train/loss", "val/loss"):
        assert math.isfinite(trainer.callback_metrics[key].item())
    assert all(torch.isfinite(p).all() for p in module.parameters())


# --- multi-scale distance loss and chunking -----------------------------------------------------
def test_distance_loss_trains_and_is_logged(tmp_path):
    cfg = tiny_config(
        tmp_path, "numEpochs=2", "useMHCLoss=True", "useChunkedLoss=True", "lossChunkSize=7"
    )
    trainer, _ = train(cfg, **QUIET)
    metrics = {k: v.item() for k, v in trainer.callback_metrics.items()}
    for stage in ("train", "val"):
        for term in ("loss", "noise_loss", "distance_loss"):
            assert math.isfinite(metrics[f"{stage}/{term}"]), (stage, term)
        assert metrics[f"{stage}/distance_loss"] > 0
    total = metrics["train/noise_loss_step"] + metrics["train/distance_loss_step"]
    assert metrics["train/loss_step"] == pytest.approx(total, rel=1e-5)


class Oracle(torch.nn.Module):
    """Predicts the noise of x_t exactly from the true x0, plus ``offset`` [b, n, 3]."""

    self_conditioning = False  # the denoiser protocol of GenieModule (no previous x̂0)

    def __init__(self, x0, alpha_bar, offset):
        super().__init__()
        self.x0, self.alpha_bar, self.offset = x0, alpha_bar, offset

    def forward(self, x_t, t, mask, residue_index=None):
        ab = self.alpha_bar[t][:, None, None]
        return (x_t - ab.sqrt() * self.x0) / (1 - ab).sqrt() + self.offset


def real_batch(cfg: GenieConfig) -> dict:
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


def test_distance_term_scores_the_predicted_clean_structure(tmp_path):
    cfg = tiny_config(tmp_path, "useMHCLoss=True", "mhcNumScales=2", "mhcWeights=0.5,2.0,9.0")
    module = GenieModule(cfg)
    batch = real_batch(cfg)
    x0, mask = batch["coords"], batch["mask"]
    alpha_bar = module.schedule.alpha_bar
    # A perfect ε̂ gives x̂0 = x0: both terms vanish.
    module.model = Oracle(x0, alpha_bar, torch.zeros_like(x0))
    terms = module._losses(batch, generator=torch.Generator().manual_seed(0))
    assert terms.noise.item() < 1e-3 and terms.distance.item() < 1e-3
    # An error δ in ε̂ moves x̂0 by −√(1−ᾱ)/√ᾱ · δ; the term is ᾱ_t times its distance loss.
    offset = 0.3 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    module.model = Oracle(x0, alpha_bar, offset)
    terms = module._losses(batch, generator=torch.Generator().manual_seed(0))
    ab = alpha_bar[terms.t][:, None, None]
    x0_hat = x0 - (1 - ab).sqrt() / ab.sqrt() * offset
    expected = alpha_bar[terms.t] * per_chain_distance_loss(
        x0_hat, x0, mask, weights=(0.5, 2.0), cutoffs=(8.0, 16.0)
    )
    assert_close(terms.distance, expected.mean(), rtol=1e-4, atol=1e-5)
    assert_close(terms.total, terms.noise + terms.distance)


def test_chunked_loss_switch_reaches_the_distance_loss(tmp_path, monkeypatch):
    import genie.training.objective as objective

    seen = []

    def spy(*args, chunk_size, **kwargs):
        seen.append(chunk_size)
        return distance_error_sums(*args, chunk_size=chunk_size, **kwargs)

    monkeypatch.setattr(objective, "distance_error_sums", spy)
    values = []
    for extra in ([], ["useChunkedLoss=True", "lossChunkSize=5"]):
        cfg = tiny_config(tmp_path, "useMHCLoss=True", *extra)
        module = GenieModule(cfg).eval()
        batch = real_batch(cfg)
        values.append(module.compute_loss(batch, generator=torch.Generator().manual_seed(0)))
    assert seen == [None, 5]
    assert_close(values[1], values[0])
