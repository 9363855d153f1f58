"""Mixed precision: the config's choice as a Lightning precision or an autocast dtype, and a watch
on skipped steps.

``useMixedPrecision`` + ``precision`` map to Lightning's ``16-mixed`` (fp16 autocast with a
GradScaler), ``bf16-mixed`` (bf16 autocast, no scaler) or ``32-true``; code that runs its own
steps without Lightning (the benchmarks) gets the matching ``torch.autocast`` dtype. Numerically
fragile reductions stay in fp32 under autocast: the losses (ε̂ is upcast, distances are computed
with autocast off), LayerNorm and softmax (autocast runs them in fp32), the IPA logits (upcast in
``genie.model.structure.ipa``).

Under ``16-mixed`` the GradScaler multiplies the loss by a scale before backward and skips the
optimiser step whenever the unscaled gradients hold an inf or NaN; it then halves the scale. The
weights are never updated with non-finite gradients. :class:`SkippedStepMonitor` makes those
skips visible. On the CPU, Lightning runs ``16-mixed`` as ``bf16-mixed`` (and says so); its fp16
plugin can still be passed explicitly, ``plugins=[MixedPrecision("16-mixed", "cpu")]``, as the
tests do.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

PRECISIONS = {"16": "16-mixed", "bf16": "bf16-mixed", "32": "32-true"}
AUTOCAST_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16, "32-true": None}


def lightning_precision(*, use_mixed_precision: bool, precision: str) -> str:
    """``(useMixedPrecision, precision)`` -> Lightning's ``precision`` argument.

    Args:
        use_mixed_precision: train under autocast (False: ``32-true`` whatever ``precision``).
        precision: ``16``, ``bf16`` or ``32``.

    Returns:
        ``16-mixed``, ``bf16-mixed`` or ``32-true``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}' (allowed: {', '.join(PRECISIONS)})")
    return PRECISIONS[precision] if use_mixed_precision else "32-true"


def autocast_dtype(*, use_mixed_precision: bool, precision: str) -> torch.dtype | None:
    """``(useMixedPrecision, precision)`` -> the dtype of ``torch.autocast``, as Lightning's
    plugin for :func:`lightning_precision` of the same keys uses it.

    Args:
        use_mixed_precision: train under autocast (False: None whatever ``precision``).
        precision: ``16``, ``bf16`` or ``32``.

    Returns:
        ``torch.float16`` (``16``; the step then needs a GradScaler), ``torch.bfloat16``
        (``bf16``) or None (``32`` or mixed precision off: no autocast, full fp32).
    """
    return AUTOCAST_DTYPES[
        lightning_precision(use_mixed_precision=use_mixed_precision, precision=precision)
    ]


def grad_scaler(trainer: pl.Trainer) -> torch.amp.GradScaler | None:
    """The trainer's active GradScaler (``16-mixed``), or None."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


class SkippedStepMonitor(pl.Callback):
    """Count optimiser steps that the fp16 GradScaler skipped for non-finite gradients.

    The scaler lowers its scale after, and only after, a skipped step, so the scale is read
    right before each optimiser step and compared after the batch. Each skip prints a warning
    line; ``train/skipped_steps`` (the running total of this run) is logged every step. Without
    a scaler (``bf16-mixed``, ``32-true``) the callback does nothing. Reading the scale costs
    one host sync per step, next to the loss check the training step makes anyway.
    """

    def __init__(self) -> None:
        self.skipped_steps = 0  # total over the run (restored on resume)
        self._scale_before: float | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        scaler = grad_scaler(trainer)
        self._scale_before = scaler.get_scale() if scaler is not None else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        scaler = grad_scaler(trainer)
        if scaler is None or self._scale_before is None:
            return  # no scaler, or no optimiser step in this batch (gradient accumulation)
        scale = scaler.get_scale()
        if scale < self._scale_before:
            self.skipped_steps += 1
            message = (
                f"fp16: optimiser step skipped at global step {trainer.global_step - 1} "
                f"(epoch {trainer.current_epoch}, batch {batch_idx}): non-finite gradients; "
                f"loss scale {self._scale_before:g} -> "
                f"{scale:g} ({self.skipped_steps} skipped so far)"
            )
            print(f"[genie] warning: {message}", flush=True)
        self._scale_before = None
        pl_module.log(
            "train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False
        )

    def state_dict(self) -> dict[str, int]:
        return {"skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
