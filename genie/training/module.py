"""LightningModule: the denoising objective, optimiser, schedule and logging.

The denoiser (an ``nn.Module``, tensors in and out) lives in ``self.model``; this module owns the
loss, the AdamW optimiser with linear warm-up, and what gets logged. The full config is stored in
every checkpoint (``hyper_parameters["config"]``, plain types only), so a checkpoint rebuilds its
model with no other file and loads with ``torch.load(..., weights_only=True)``; it also carries
a checksum of the weights (``genie_checksum``, :func:`genie.checkpoint.checksum_entry`), verified
by the one checkpoint reader, :func:`genie.checkpoint.load_checkpoint_file`.

Losses (:mod:`genie.training.objective`) are computed in fp32 whatever the autocast state: the
model's output is upcast before any loss arithmetic (the pairwise distance loss also disables
autocast for its distances).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from genie.checkpoint import CHECKSUM_KEY, checksum_entry, read_checkpoint
from genie.config import GenieConfig, config_from_dict
from genie.diffusion import DEFAULT_CUTOFFS
from genie.model.build import build_denoiser, build_parametrisation, build_schedule
from genie.model.compiled import CompiledDenoiser
from genie.model.denoiser import GenieDenoiser
from genie.model.layout import SequenceParallel
from genie.training.distributed import is_fsdp
from genie.training.draws import TRAIN_STREAM, VALIDATION_STREAM, draw_chain_noise
from genie.training.objective import DistanceLoss, LossTerms, denoising_losses
from genie.utils.runtime import resolve_compile_mode

log = logging.getLogger(__name__)
T_BUCKETS = 4  # validation loss is also logged per quarter of the timestep range


class GenieModule(SequenceParallel, pl.LightningModule):
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
        self._compiled: CompiledDenoiser | None = None  # the compiled forward (compileModel)
        self._compile_resolved = False

    def denoise(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``self.model(*args, **kwargs)``, through ``torch.compile`` in training steps when
        ``compileModel`` asks for it on this device (decided at the first call, when the device
        is known; the weights stay those of ``self.model``).

        Validation (``self.training`` False) runs eagerly: its few chains of varied lengths,
        without gradients, would compile a second set of graphs (on an H200, stage 3 V2, the
        first validation pass of each process took 50-150 s compiled, later ones seconds)."""
        if not self._compile_resolved:
            # on sequence shards (collectives inside the graph) compiled only when asked for
            auto = "default" if self.sequence_layout.num_shards == 1 else "off"
            mode = resolve_compile_mode(self.config.compileModel, self.device, auto=auto)
            if mode != "off":
                self._compiled = CompiledDenoiser(self.model, mode=mode)
                log.info("training steps run the model through torch.compile (mode %s)", mode)
            self._compile_resolved = True
        if self._compiled is not None and self.training:
            return self._compiled(*args, **kwargs)
        return self.model(*args, **kwargs)

    def configure_model(self) -> None:
        """Sequence parallelism: Lightning's ``ModelParallelStrategy`` gives the module its data ×
        sequence device mesh; the denoiser is sharded over the sequence dimension and replicated
        over every process (:func:`genie.training.sequence_parallel.parallelize`). Other
        strategies give no mesh: nothing to do."""
        if self.device_mesh is not None:
            from genie.training.sequence_parallel import parallelize  # imports Lightning's

            cfg = self.config
            bucket = cfg.gradientBucketSizeMB if cfg.useGradientBucketing else None
            parallelize(self, self.device_mesh, bucket_size_mb=bucket)

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
        """Noise the batch at random timesteps and score the prediction (scalar, fp32; on
        sequence shards this process's share of it, whose gradients sum to the loss's)."""
        return self._losses(batch, generator=generator).objective

    def _draw(
        self, batch: dict[str, Any], *, generator: torch.Generator | None, stream: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``t [b]`` and ``ε [b, n, 3]`` (0 at padding) of a batch.

        Batches of the data module name their chains (``items``, ``epochs``): each chain draws
        from its own stream (:mod:`genie.training.draws`), whatever its batch, rank or
        accumulation step. Other batches (and any call with a ``generator``) draw from
        ``generator``, or from the global stream when it is None.
        """
        x0, mask = batch["coords"], batch["mask"]  # [b, n, 3] Å, [b, n]
        if generator is None and "items" in batch:
            epochs = (
                batch["epochs"] if stream == TRAIN_STREAM else torch.zeros_like(batch["epochs"])
            )
            return draw_chain_noise(
                lengths=batch["lengths"],
                items=batch["items"],
                epochs=epochs,
                seed=self.config.seed,
                stream=stream,
                num_timesteps=self.schedule.num_timesteps,
                n=x0.shape[1],
                dtype=x0.dtype,
                device=x0.device,
            )
        t = self.schedule.sample_timesteps(x0.shape[0], device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        return t, noise * mask[..., None]  # [b], [b, n, 3]

    def _losses(
        self,
        batch: dict[str, Any],
        *,
        generator: torch.Generator | None = None,
        stream: int = TRAIN_STREAM,
    ) -> LossTerms:
        """Draw t and ε (:meth:`_draw`), predict ε̂ from x_t and score it
        (:mod:`genie.training.objective`: ``lossType``; the ᾱ_t-weighted multi-scale distance
        loss with ``useMHCLoss``), on the model's sequence layout."""
        cfg = self.config
        distance = None
        if cfg.useMHCLoss:
            scales = cfg.mhcNumScales
            distance = DistanceLoss(weights=cfg.mhcWeights[:scales],
                                    cutoffs=DEFAULT_CUTOFFS[:scales],
                                    chunk_size=self.loss_chunk_size)  # fmt: skip
        draws = self._draw(batch, generator=generator, stream=stream)  # t [b], ε [b, n, 3]
        return denoising_losses(self.denoise, self.schedule, batch,
                                layout=self.sequence_layout, loss_type=cfg.lossType,
                                distance=distance, parametrisation=self.parametrisation,
                                self_condition=self.model.self_conditioning
                                and _coin(batch["coords"].device, generator),
                                draws=draws)  # fmt: skip

    def _log_terms(self, stage: str, terms: LossTerms, *, size: int, **kwargs: Any) -> None:
        """Log ``{stage}/loss``, ``{stage}/noise_loss`` and ``{stage}/distance_loss``."""
        self.log(f"{stage}/loss", terms.total, prog_bar=True, batch_size=size, **kwargs)
        self.log(f"{stage}/noise_loss", terms.noise, batch_size=size, **kwargs)
        if terms.distance is not None:
            self.log(f"{stage}/distance_loss", terms.distance, batch_size=size, **kwargs)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self._losses(batch)
        loss = terms.total  # the whole batch's, on every process of a sequence group
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step}, "
                f"batch {batch_idx} (chains: {', '.join(batch.get('names', []))}); "
                "nothing of this step was written to a checkpoint"
            )
        size = batch["coords"].shape[0]
        # sync_dist: the step and epoch values are means over all ranks (a scalar all-reduce
        # per term and step; the epoch mean weighs every batch by its chains)
        self._log_terms("train", terms, size=size, on_step=True, on_epoch=True, sync_dist=True)
        # DDP averages gradients over all processes; × the shards, that is the sum over a
        # chain's shards (genie.training.sequence_parallel). One process: the loss itself.
        return terms.objective * self.sequence_layout.num_shards

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        # The same timesteps and noise at every validation pass, so epochs are comparable: each
        # chain's own stream (whatever the rank), or one per batch for a batch without names.
        generator = None
        if "items" not in batch:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(self.config.seed * 100_003 + batch_idx)
        terms = self._losses(batch, generator=generator, stream=VALIDATION_STREAM)
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
        """Log the gradient norm before clipping (``train/grad_norm``): of the whole model on
        every strategy (under FSDP each rank holds a shard of the gradients: the squared norms
        of the shards are summed over the ranks)."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        fsdp = self._trainer is not None and is_fsdp(self.trainer.strategy)
        if grads or fsdp:
            squares = sum(g.float().pow(2).sum() for g in grads) if grads else None
            if squares is None:
                squares = torch.zeros((), device=self.device)
            if fsdp:
                squares = self.trainer.strategy.reduce(squares, reduce_op="sum")
            self.log("train/grad_norm", squares.sqrt(), on_step=True, on_epoch=False)

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """Clip the gradient norm (``gradientClipVal``). Under FSDP the norm must be taken over
        every rank's shard, which only the root FSDP module's ``clip_grad_norm_`` does
        (Lightning's FSDP precision plugin refuses to clip by norm)."""
        if gradient_clip_val and is_fsdp(self.trainer.strategy):
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)


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
