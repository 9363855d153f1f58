"""Lightning strategies of a run of several processes: DDP (optionally PowerSGD-compressed and
bucketed) or FSDP; the PowerSGD rank of a compression ratio; the layout of a torchrun launch.

No launcher or transport of our own: processes come from ``torchrun`` or from Lightning's
launcher (a plain ``python`` launch with ``devices`` > 1), communication from
``torch.distributed`` through Lightning's ``DDPStrategy`` / ``FSDPStrategy``. The trainer builder
(:func:`genie.training.run.build_trainer`) reads the config and calls these with plain values.

PowerSGD (Vogels et al. 2019, PyTorch's ``powerSGD_hook``) all-reduces, for every gradient that
it views as a matrix ``M [n, m]`` (a parameter's first axis × the rest), two factors
``P [n, r]`` and ``Q [m, r]``, i.e. ``r·(n + m)`` numbers instead of ``n·m``; a matrix for which
that does not save at least ``min_compression_rate`` (2) is all-reduced whole, as are vectors
(biases, norms). So for a rank r the all-reduce carries

    sent(r) = Σ_compressed r·(n_i + m_i) + Σ_rest numel_i,    ratio(r) = Σ numel_i / sent(r),

and :func:`powersgd_rank` takes the largest r with ``ratio(r) ≥ gradientCompressionRatio``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence

import torch
from pytorch_lightning.strategies import DDPStrategy, FSDPStrategy, Strategy
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powersgd

from genie.config import ConfigError

log = logging.getLogger("genie.train")

MIN_COMPRESSION_RATE = 2  # PowerSGD's default: compress a matrix only if it saves 2× or more
POWERSGD_WARMUP_STEPS = 1_000  # PowerSGD's default start_powerSGD_iter: plain all-reduce first
MAX_POWERSGD_RANK = 1_024


def _matrix_shape(shape: torch.Size) -> tuple[int, int] | None:
    """``(n, m)`` of the matrix PowerSGD makes of a gradient of ``shape``; None for a vector."""
    if len(shape) <= 1:
        return None
    n = shape[0]
    return n, max(1, shape.numel() // max(1, n))


def sent_elements(shapes: Iterable[torch.Size], *, rank: int) -> tuple[int, int]:
    """``(gradient elements, elements PowerSGD all-reduces at rank r)`` (module docstring)."""
    total = sent = 0
    for shape in shapes:
        numel = shape.numel()
        total += numel
        matrix = _matrix_shape(shape)
        if matrix is None:
            sent += numel
            continue
        n, m = matrix
        r = min(n, m, rank)  # PowerSGD's rank per matrix
        compressed = r * (n + m)
        sent += compressed if compressed * MIN_COMPRESSION_RATE < n * m else n * m
    return total, sent


def powersgd_rank(shapes: Sequence[torch.Size], *, ratio: float) -> int:
    """The largest PowerSGD rank whose all-reduce carries at most ``1/ratio`` of the gradient
    elements of parameters of ``shapes``.

    Raises:
        ConfigError: not even rank 1 reaches ``ratio`` (vectors and small matrices are sent
            whole); the message gives the ratio that rank 1 reaches.
    """
    total, sent = sent_elements(shapes, rank=1)
    if total == 0 or total / sent < ratio:
        best = total / sent if sent else 0.0
        raise ConfigError(
            f"gradientCompressionRatio {ratio:g} cannot be reached by this model: PowerSGD at "
            f"rank 1 sends {sent:,} of {total:,} gradient elements (ratio {best:.2f}; vectors "
            "and small matrices go uncompressed); give at most that ratio"
        )
    rank = 1
    while rank < MAX_POWERSGD_RANK:
        total, sent = sent_elements(shapes, rank=rank + 1)
        if total / sent < ratio:
            break
        rank += 1
    return rank


def ddp_strategy(
    *, backend: str, compression_rank: int | None = None, bucket_size_mb: float | None = None
) -> DDPStrategy:
    """Lightning's DDP.

    Args:
        backend: ``nccl`` or ``gloo``.
        compression_rank: register PowerSGD of this rank as the communication hook (Lightning
            registers hooks on CUDA devices only); None = plain all-reduce.
        bucket_size_mb: DDP's ``bucket_cap_mb`` with gradients as views into the buckets
            (``gradient_as_bucket_view``); None = DDP's defaults.
    """
    kwargs: dict = {"process_group_backend": backend, "broadcast_buffers": False}
    # broadcast_buffers=False: the denoiser's buffers are constant tables, equal on every rank;
    # without the broadcast a no-grad forward (validation) communicates nothing, so ranks may
    # run different numbers of validation batches (genie.data.sampler, even=False)
    if bucket_size_mb is not None:
        kwargs.update(bucket_cap_mb=bucket_size_mb, gradient_as_bucket_view=True)
    if compression_rank is not None:
        kwargs["ddp_comm_state"] = powersgd.PowerSGDState(
            process_group=None,  # the default group, resolved when the hook runs
            matrix_approximation_rank=compression_rank,
            start_powerSGD_iter=POWERSGD_WARMUP_STEPS,
            min_compression_rate=MIN_COMPRESSION_RATE,
        )
        kwargs["ddp_comm_hook"] = powersgd.powerSGD_hook
    return DDPStrategy(**kwargs)


def fsdp_strategy(*, backend: str, wrap: set[type[nn.Module]]) -> FSDPStrategy:
    """Lightning's FSDP (CUDA only): one FSDP unit per module of a class in ``wrap`` (whole
    stacks, so that weights shared between a stack's layers stay in one unit), full state dicts
    in checkpoints (rank 0 writes a checkpoint that one process reads)."""
    return FSDPStrategy(
        process_group_backend=backend,
        auto_wrap_policy=wrap,
        state_dict_type="full",
        sharding_strategy="FULL_SHARD",
    )


def torchrun_layout() -> tuple[int, int] | None:
    """``(devices per node, nodes)`` of a ``torchrun`` launch (from ``LOCAL_WORLD_SIZE`` and
    ``WORLD_SIZE``), or None when this process was not started by torchrun."""
    if not torch.distributed.is_available() or not torch.distributed.is_torchelastic_launched():
        return None
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if local < 1 or world % local:
        raise ConfigError(
            f"torchrun: WORLD_SIZE ({world}) is not a multiple of LOCAL_WORLD_SIZE ({local})"
        )
    return local, world // local


def distributed_strategy(
    *,
    strategy: str,
    backend: str,
    cuda: bool,
    compression_ratio: float | None,
    parameter_shapes: Sequence[torch.Size] | None,
    bucket_size_mb: float | None,
    fsdp_units: set[type[nn.Module]],
) -> Strategy:
    """The strategy of a run of several processes.

    Args:
        strategy: ``ddp`` or ``fsdp``.
        backend: ``nccl`` or ``gloo``.
        cuda: whether the trainer runs on CUDA devices.
        compression_ratio: PowerSGD's target (:func:`powersgd_rank`); None = uncompressed.
        parameter_shapes: the trained parameters' shapes (needed with ``compression_ratio``).
        bucket_size_mb: DDP bucket size with gradients as bucket views; None = DDP's defaults.
        fsdp_units: module classes that become FSDP units.

    Raises:
        ConfigError: nccl, FSDP or PowerSGD without CUDA devices; an unreachable ratio.
    """
    where = f"CUDA {'in use' if cuda else 'not in use: accelerator cpu, or no CUDA device'}"
    if backend == "nccl" and not cuda:
        raise ConfigError(f"distributedBackend nccl needs CUDA devices ({where}); use gloo")
    if strategy == "fsdp":
        if not cuda:
            raise ConfigError(f"distributedStrategy fsdp: FSDP runs on CUDA GPUs only ({where})")
        return fsdp_strategy(backend=backend, wrap=fsdp_units)
    rank = None
    if compression_ratio is not None:
        if not cuda:  # Lightning registers DDP communication hooks on CUDA devices only
            raise ConfigError(
                f"gradientCompressionRatio: PowerSGD hooks run on CUDA devices only ({where})"
            )
        if parameter_shapes is None:
            raise ValueError("compression_ratio needs parameter_shapes")
        rank = powersgd_rank(parameter_shapes, ratio=compression_ratio)
        log.info("PowerSGD rank %d for gradientCompressionRatio %g", rank, compression_ratio)
    return ddp_strategy(backend=backend, compression_rank=rank, bucket_size_mb=bucket_size_mb)


def is_fsdp(strategy: Strategy) -> bool:
    """Whether a trainer's strategy shards parameters (FSDP)."""
    return isinstance(strategy, FSDPStrategy)
