"""Process-wide numerical settings a config asks for, applied by every entry point."""

from __future__ import annotations

import torch


def apply_runtime_settings(*, matmul_precision: str) -> None:
    """Apply ``matmulPrecision`` (``torch.set_float32_matmul_precision``): ``high`` lets fp32
    matrix products use TF32 tensor cores on Ampere/Hopper GPUs (storage and every other
    operation stay fp32); ``highest`` keeps true fp32 products. No effect on the CPU."""
    torch.set_float32_matmul_precision(matmul_precision)
