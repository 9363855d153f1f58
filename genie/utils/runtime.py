"""Process-wide numerical settings a config asks for, applied by every entry point."""

from __future__ import annotations

import torch

from genie.config.fields import COMPILE_MODES
from genie.utils.errors import UserInputError


def apply_runtime_settings(*, matmul_precision: str) -> None:
    """Apply ``matmulPrecision`` (``torch.set_float32_matmul_precision``): ``high`` lets fp32
    matrix products use TF32 tensor cores on Ampere/Hopper GPUs (storage and every other
    operation stay fp32); ``highest`` keeps true fp32 products. No effect on the CPU."""
    torch.set_float32_matmul_precision(matmul_precision)


def require_cuda(what: str) -> None:
    """Fail early, as a user error, when ``what`` (a GPU-only command) runs without CUDA."""
    if not torch.cuda.is_available():
        raise UserInputError(f"{what} needs a CUDA device, and none is available")


def resolve_compile_mode(choice: str, device: torch.device | str, *, auto: str = "default") -> str:
    """The ``torch.compile`` mode to use for ``choice`` (``compileModel``) on ``device``:
    ``off`` or a mode name. ``auto`` gives ``auto`` (the caller's mode) on CUDA and ``off``
    elsewhere (compiling on the CPU costs minutes of start-up for small gains)."""
    if choice not in COMPILE_MODES:
        raise ValueError(f"compileModel must be one of {', '.join(COMPILE_MODES)}, got {choice!r}")
    if choice == "auto":
        return auto if torch.device(device).type == "cuda" else "off"
    return choice
