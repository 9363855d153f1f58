"""LightningModule: the denoising objective, optimiser, schedule and logging.

The denoiser (an ``nn.Module``, tensors in and out) lives in ``self.model``; this module owns the
loss, the AdamW optimiser with linear warm-up, and what gets logged. The full config is stored in
every checkpoint (``hyper_parameters["config"]``, plain types only), so a checkpoint rebuilds its
model with no other file and loads with ``torch.load(..., weights_only=True)``; it also carries
a checksum of the weights (``genie_checksum``, :func:`genie.checkpoint.checksum_entry`), verified
by the one checkpoint reader, :func:`genie.checkpoint.load_checkpoint_file`.

Losses are computed in fp32 whatever the autocast state: the model's output is upcast before
any loss arithmetic (the pairwise distance loss also disables autocast for its distances).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from genie.checkpoint import CHECKSUM_KEY, checksum_entry, read_checkpoint
from genie.config import GenieConfig, config_from_dict
from genie.diffusion import (
    DEFAULT_CUTOFFS,
    noise_loss,
    per_chain_distance_loss,
    per_chain_loss,
)
from genie.diffusion.parametrisation import centred
from genie.model.build import build_denoiser, build_parametrisation, build_schedule
from genie.model.denoiser import GenieDenoiser

T_BUCKETS = 4  # validation loss is also logged per quarter of the timestep range


@dataclasses.dataclass
class LossTerms:
    """The terms of one loss evaluation (fp32)."""

    total: torch.Tensor  # scalar: noise + distance
    noise: torch.Tensor  # scalar: the denoising loss (mean over the real residues of the batch)
    distance: torch.Tensor | None  # scalar: ᾱ_t-weighted multi-scale distance loss (useMHCLoss)
    per_chain: torch.Tensor  # [b] total per chain (for the per-t validation buckets)
    t: torch.Tensor  # [b] timesteps drawn


class GenieModule(pl.LightningModule):
    def __init__(self, config: GenieConfig | dict[str, Any], *, model: GenieDenoiser | None = None):
        """
        Args:
            config: the training config (or its plain-dict form, as stored in checkpoints).
            model: the denoiser of that config, already built (e.g. read from a checkpoint);
                default: built from the config.
        """
        super().__init__()
        if isinstance(config, dict):
            config = config_from_dict(GenieConfig, config)
        self.config = config
        self.save_hyperparameters({"config": dataclasses.asdict(config)})
        self.model = build_denoiser(config) if model is None else model
        self.schedule = build_schedule(config)
        self.parametrisation = build_parametrisation(config)

    def on_fit_start(self) -> None:
        """Record the model size (logged once by the builder) in TensorBoard: distinct trainable
        parameters (weights shared between layers by ``useModelCompression`` count once) as the
        scalar ``model/num_parameters`` (step 0)."""
        count = self.model.num_parameters()
        for logger in self.loggers:
            logger.log_metrics({"model/num_parameters": float(count)}, step=0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the checksum of the weights (``state_dict``; not the optimiser state), which
        every reader of the checkpoint verifies."""
        checkpoint[CHECKSUM_KEY] = checksum_entry(checkpoint["state_dict"])

    # --- objective ----------------------------------------------------------------------------
    @property
    def loss_chunk_size(self) -> int | None:
        """Residues per chunk of every pairwise loss term (``lossChunkSize`` when
        ``useChunkedLoss``, else None = unchunked)."""
        return self.config.lossChunkSize if self.config.useChunkedLoss else None

    def compute_loss(
        self, batch: dict[str, Any], *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Noise the batch at random timesteps and score the prediction (scalar, fp32)."""
        return self._losses(batch, generator=generator).total

    def _losses(
        self, batch: dict[str, Any], *, generator: torch.Generator | None = None
    ) -> LossTerms:
        """Draw t and ε, noise x0 with the chain's σ, predict from x_t and score it.

        x_t = √ᾱ_t x0 + √(1−ᾱ_t) σ ε with σ of ``noiseScale`` (1 Å for Genie's unit noise).
        The noise loss compares ε̂ with ε (``lossType``; x̂0/σ with x0/σ for
        ``predictionTarget x0``, :mod:`genie.diffusion.parametrisation`). With
        ``selfConditioning``, on a random half of the steps (Chen et al. 2022) the model
        first predicts x̂0 without it under ``torch.no_grad`` and then again with that
        x̂0 (centred) as ``self_condition``; the loss scores the second prediction. With
        ``useMHCLoss`` the multi-scale distance loss (:mod:`genie.diffusion.distance_loss`)
        scores the predicted clean structure x̂0 (for ε: x̂0 = (x_t − √(1−ᾱ_t) σ ε̂) / √ᾱ_t)
        against x0, weighted per chain by ᾱ_t. DISCREPANCY (deliberate): the weight is ours, not
        part of the loss's definition. x̂0 amplifies the error of ε̂ by √(1−ᾱ_t)/√ᾱ_t, about
        600× at t = T for the cosine schedule, so unweighted high-noise steps would dominate
        the loss and its gradients. With the weight ᾱ_t, the gradient of the distance term with
        respect to ε̂ is scaled by √(ᾱ_t(1−ᾱ_t)) ≤ ½: the term acts mostly at low noise, where
        x̂0 is a meaningful structure. The chain weights are not renormalised (see
        :func:`~genie.diffusion.distance_loss.multiscale_distance_loss`).
        """
        cfg = self.config
        x0, mask = batch["coords"], batch["mask"]  # [b, n, 3] Å, [b, n]
        residue_index = batch.get("residue_index")
        t = self.schedule.sample_timesteps(x0.shape[0], device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        noise = noise * mask[..., None]  # [b, n, 3], ε
        sigma = self.parametrisation.noise.training(x0, mask)  # [b] Å
        x_t = self.schedule.add_noise(x0, t, noise * sigma[:, None, None])  # [b, n, 3]
        alpha_bar = self.schedule.alpha_bar[t]  # [b]
        previous = None
        if self.model.self_conditioning and _coin(x0.device, generator):
            with torch.no_grad():
                first = self.model(x_t, t, mask, residue_index).float()
                first = self.parametrisation.predict(first, x_t.float(), mask, alpha_bar=alpha_bar)
            previous = centred(first.x0, mask)  # [b, n, 3] Å
        sc = {} if previous is None else {"self_condition": previous}
        output = self.model(x_t, t, mask, residue_index, **sc).float()
        prediction = self.parametrisation.predict(output, x_t.float(), mask, alpha_bar=alpha_bar)
        predicted, target = self.parametrisation.loss_pair(prediction, x0=x0, noise=noise,
                                                           sigma=sigma)  # fmt: skip
        noise_term = noise_loss(predicted, target, mask, kind=cfg.lossType)
        per_chain = per_chain_loss(predicted, target, mask, kind=cfg.lossType)  # [b]
        if not cfg.useMHCLoss:
            return LossTerms(noise_term, noise_term, None, per_chain, t)
        x0_hat = prediction.x0  # [b, n, 3] Å
        scales = cfg.mhcNumScales
        distance_per_chain = alpha_bar * per_chain_distance_loss(
            x0_hat,
            x0,
            mask,
            weights=cfg.mhcWeights[:scales],
            cutoffs=DEFAULT_CUTOFFS[:scales],
            chunk_size=self.loss_chunk_size,
        )  # [b]
        distance_term = distance_per_chain.mean()
        return LossTerms(
            noise_term + distance_term,
            noise_term,
            distance_term,
            per_chain + distance_per_chain,
            t,
        )

    def _log_terms(self, stage: str, terms: LossTerms, *, size: int, **kwargs: Any) -> None:
        """Log ``{stage}/loss``, ``{stage}/noise_loss`` and ``{stage}/distance_loss``."""
        self.log(f"{stage}/loss", terms.total, prog_bar=True, batch_size=size, **kwargs)
        self.log(f"{stage}/noise_loss", terms.noise, batch_size=size, **kwargs)
        if terms.distance is not None:
            self.log(f"{stage}/distance_loss", terms.distance, batch_size=size, **kwargs)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self._losses(batch)
        loss = terms.total
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step}, "
                f"batch {batch_idx} (chains: {', '.join(batch.get('names', []))}); "
                "nothing of this step was written to a checkpoint"
            )
        size = batch["coords"].shape[0]
        self._log_terms("train", terms, size=size, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        # The same timesteps and noise at every validation pass, so epochs are comparable.
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.config.seed * 100_003 + batch_idx)
        terms = self._losses(batch, generator=generator)
        size = batch["coords"].shape[0]
        self._log_terms("val", terms, size=size, sync_dist=True)
        bucket = ((terms.t - 1) * T_BUCKETS) // self.schedule.num_timesteps  # [b], 0..T_BUCKETS-1
        for k in range(T_BUCKETS):
            chosen = bucket == k
            if chosen.any():
                lo = k * self.schedule.num_timesteps // T_BUCKETS + 1
                hi = (k + 1) * self.schedule.num_timesteps // T_BUCKETS
                self.log(
                    f"val/loss_t{lo}-{hi}",
                    terms.per_chain[chosen].mean(),
                    batch_size=int(chosen.sum()),
                    sync_dist=True,
                )

    # --- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.config
        optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=cfg.learningRate,
            weight_decay=cfg.weightDecay,
            fused=self._fused_optimizer(),
        )
        warmup_steps = int(cfg.warmupEpochs * self._steps_per_epoch())

        def warmup(step: int) -> float:  # linear warm-up, then constant
            return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _steps_per_epoch(self) -> int:
        """Optimiser steps per epoch, from the data module's batch count.

        Not ``trainer.estimated_stepping_batches``: that builds the first epoch's data-loader
        iterator before the epoch (and, on resume, the epoch number) reaches the batch sampler,
        so with worker processes the resumed epoch would replay epoch 0's batches.
        """
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if datamodule is None:
            return 1
        accumulate = max(1, getattr(self._trainer, "accumulate_grad_batches", 1))
        return max(1, len(datamodule.train_dataloader()) // accumulate)

    def _fused_optimizer(self) -> bool:
        trainer = self._trainer
        if trainer is None:
            return False
        return use_fused_adamw(
            device_type=self.device.type,
            precision=trainer.precision,
            gradient_clip_val=trainer.gradient_clip_val,
        )

    def on_before_optimizer_step(self, optimizer) -> None:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g) for g in grads])
            )
            self.log("train/grad_norm", norm, on_step=True, on_epoch=False)


def _coin(device: torch.device, generator: torch.Generator | None) -> bool:
    """True with probability ½ (from ``generator``, else torch's global random stream)."""
    return bool(torch.rand((), device=device, generator=generator) < 0.5)


def use_fused_adamw(*, device_type: str, precision: str, gradient_clip_val: float | None) -> bool:
    """Fused AdamW (one kernel for the whole update) on GPU, except under mixed precision with
    gradient clipping: Lightning's mixed-precision plugin refuses to clip the gradients of an
    optimiser that unscales them inside its own step, as the fused one does, under
    ``bf16-mixed`` (no scaler) as well as ``16-mixed``; training would fail at the first step."""
    if device_type != "cuda":
        return False
    return not (precision in ("16-mixed", "bf16-mixed") and gradient_clip_val)


def load_module(path: str | Path, *, map_location: str | torch.device = "cpu") -> GenieModule:
    """Rebuild a trained module from a checkpoint alone (:func:`genie.checkpoint.read_checkpoint`,
    ``weights_only=True``)."""
    trained = read_checkpoint(path, map_location=map_location)
    return GenieModule(trained.config, model=trained.model)
