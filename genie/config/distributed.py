"""The distributed keys of the training configuration (stage 5) and their checks.

:class:`~genie.config.schema.GenieConfig` inherits :class:`DistributedKeys`; the trainer builder
(``genie/training/run.py``) reads them. Layout words: the *world* is every process of a run;
``numSequenceShards`` consecutive ranks split one chain by residue (sequence parallelism), so
there are ``world / numSequenceShards`` *data-parallel ranks*, each with its own batches; the
chains of one optimiser step are

    effectiveBatchSize = data-parallel ranks × batchSize × gradient-accumulation steps.

A plain launch (``python train/...``) has ``devices × numNodes`` processes; under ``torchrun`` the
training command loads the config with the launcher's layout in ``devices`` and ``numNodes``. So
the checks below see the real world when a config is loaded for training, except ``1 × 1``
(the default, also a config built in code that torchrun may run with any number of processes):
then only ``batchSize`` must divide ``effectiveBatchSize``, and the trainer builder checks the
launch itself (:func:`data_parallel_layout`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from genie.config.fields import MAX_COUNT, MAX_LAYERS, ConfigError, option

if TYPE_CHECKING:
    from genie.config.schema import GenieConfig


@dataclasses.dataclass
class DistributedKeys:
    """Processes, strategy, accumulation and gradient communication (a part of
    :class:`~genie.config.schema.GenieConfig`)."""

    useDistributed: bool = option(
        False,
        "train with several processes through Lightning's DDP or FSDP: started by torchrun, or "
        "by a plain launch with devices × numNodes processes (docs/DISTRIBUTED.md)",
    )
    distributedBackend: str = option(
        "nccl",
        "torch.distributed backend: nccl (CUDA GPUs) or gloo (CPU)",
        choices=("nccl", "gloo"),
    )
    distributedStrategy: str = option(
        "ddp",
        "ddp: every rank holds the model, gradients are all-reduced; fsdp: parameters, gradients "
        "and optimiser state sharded over the ranks (GPUs only)",
        choices=("ddp", "fsdp"),
    )
    devices: int = option(
        1,
        "devices (processes) per node of a plain launch; under torchrun the launcher's "
        "--nproc_per_node counts",
        min=1,
        max=MAX_LAYERS,
    )
    numNodes: int = option(
        1,
        "nodes of a plain launch (each started with NODE_RANK, MASTER_ADDR, MASTER_PORT); under "
        "torchrun the launcher's --nnodes counts",
        min=1,
        max=MAX_LAYERS,
    )
    useSequenceParallelism: bool = option(
        False,
        "split each chain by residue over numSequenceShards processes (sparse k-NN or "
        "factorised FlashIPA models; docs/SEQUENCE_PARALLEL.md)",
    )
    numSequenceShards: int = option(
        1,
        "ranks that share one chain (useSequenceParallelism); must divide the number of processes",
        min=1,
        max=MAX_LAYERS,
    )
    effectiveBatchSize: int | None = option(
        None,
        "chains per optimiser step over all ranks = data-parallel ranks × batchSize × "
        "accumulation steps (must divide); None = no accumulation",
        min=1,
        max=MAX_COUNT,
    )
    gradientCompressionRatio: float | None = option(
        None,
        "DDP on CUDA (nccl): PowerSGD compression of the gradient all-reduce to at most 1/ratio "
        "of the gradient elements; its rank is derived from the model (docs/DISTRIBUTED.md); "
        "None = uncompressed",
        min=1,
        min_exclusive=True,
    )
    useGradientBucketing: bool = option(
        False,
        "DDP: all-reduce gradients in buckets of gradientBucketSizeMB during backward, gradients "
        "held as views into the buckets (no copy); False = DDP's defaults (25 MiB, copies)",
    )
    gradientBucketSizeMB: float = option(
        25.0, "DDP bucket size (MiB) with useGradientBucketing", min=0, min_exclusive=True
    )


def data_parallel_layout(
    *,
    world_size: int,
    sequence_shards: int,
    batch_size: int,
    effective_batch_size: int | None,
    world: str = "this run",
) -> tuple[int, int]:
    """``(data-parallel ranks, accumulation steps)`` of a world of ``world_size`` processes.

    Args:
        world: where the process count comes from, for messages ("this run", "devices ×
            numNodes").

    Raises:
        ConfigError: the shards do not divide the world, or ``effective_batch_size`` is not a
            multiple of data-parallel ranks × ``batch_size`` (the message names the keys).
    """
    if world_size % sequence_shards:
        raise ConfigError(
            f"numSequenceShards ({sequence_shards}) does not divide the {world_size} "
            f"process(es) of {world}: every chain needs a full group of shards"
        )
    ranks = world_size // sequence_shards
    per_pass = ranks * batch_size
    if effective_batch_size is None:
        return ranks, 1
    if effective_batch_size % per_pass:
        raise ConfigError(
            f"effectiveBatchSize ({effective_batch_size}) is not a multiple of data-parallel "
            f"ranks × batchSize = {ranks} × {batch_size} = {per_pass} ({world_size} "
            f"process(es) of {world}, {sequence_shards} sequence shard(s) each chain): give a "
            f"multiple of {per_pass}"
        )
    return ranks, effective_batch_size // per_pass


def check_distributed(cfg: GenieConfig) -> None:
    """Checks of the distributed keys against each other and the rest of the config."""
    if not cfg.useDistributed:
        for key, value, default in (
            ("devices", cfg.devices, 1),
            ("numNodes", cfg.numNodes, 1),
            ("useSequenceParallelism", cfg.useSequenceParallelism, False),
            ("gradientCompressionRatio", cfg.gradientCompressionRatio, None),
            ("useGradientBucketing", cfg.useGradientBucketing, False),
        ):
            if value != default:
                raise ConfigError(
                    f"{key} = {value} needs useDistributed True (a run of several processes; "
                    f"under torchrun devices and numNodes are the launcher's); set "
                    f"useDistributed True or {key} {default}"
                )
    gpu_only = "Lightning's FSDPStrategy runs on CUDA GPUs only"
    if cfg.distributedStrategy == "fsdp":
        if cfg.gradientCompressionRatio is not None:
            raise ConfigError(
                "gradientCompressionRatio with distributedStrategy fsdp: PowerSGD is a DDP "
                "communication hook, FSDP reduce-scatters its own flat shards; use "
                "distributedStrategy ddp or gradientCompressionRatio None"
            )
        if cfg.useGradientBucketing:
            raise ConfigError(
                "useGradientBucketing with distributedStrategy fsdp: FSDP communicates per "
                "wrapped stack, DDP's buckets do not apply; set useGradientBucketing False"
            )
        if cfg.accelerator == "cpu" or cfg.distributedBackend == "gloo":
            raise ConfigError(
                f"distributedStrategy fsdp with accelerator {cfg.accelerator}, distributedBackend "
                f"{cfg.distributedBackend}: {gpu_only} (nccl); use distributedStrategy ddp on CPU"
            )
    if cfg.useDistributed and cfg.distributedBackend == "nccl" and cfg.accelerator == "cpu":
        raise ConfigError(
            "distributedBackend nccl with accelerator cpu: NCCL needs CUDA GPUs; use "
            "distributedBackend gloo on CPU"
        )
    if cfg.gradientCompressionRatio is not None and cfg.distributedBackend != "nccl":
        raise ConfigError(
            "gradientCompressionRatio with distributedBackend gloo: Lightning registers DDP "
            "communication hooks (PowerSGD) on CUDA devices only; use nccl on GPUs or "
            "gradientCompressionRatio None"
        )
    if cfg.numSequenceShards > 1 and not cfg.useSequenceParallelism:
        raise ConfigError(
            f"numSequenceShards = {cfg.numSequenceShards} needs useSequenceParallelism True"
        )
    if cfg.useSequenceParallelism:
        check_shardable_keys(cfg)
        if cfg.gradientCompressionRatio is not None:
            raise ConfigError(
                "gradientCompressionRatio with useSequenceParallelism: PowerSGD is a hook of "
                "Lightning's DDPStrategy, sequence parallelism replicates the model itself; set "
                "gradientCompressionRatio None"
            )
        if cfg.distributedStrategy == "fsdp":
            raise ConfigError(
                "useSequenceParallelism with distributedStrategy fsdp: sequence parallelism "
                "runs on DDP's replicated parameters; use distributedStrategy ddp"
            )
    # devices × numNodes > 1 states the world of a plain launch; 1 × 1 may be a torchrun
    # launch of any size, checked when the trainer is built (only batchSize must divide now)
    stated = cfg.devices * cfg.numNodes
    data_parallel_layout(
        world_size=stated,
        sequence_shards=cfg.numSequenceShards if stated > 1 else 1,
        batch_size=cfg.batchSize,
        effective_batch_size=cfg.effectiveBatchSize,
        world=f"devices × numNodes = {cfg.devices} × {cfg.numNodes}",
    )


def check_shardable_keys(cfg: GenieConfig, *, source: str = "") -> None:
    """The model keys of ``useSequenceParallelism``: the representations that
    :func:`genie.distributed.check_shardable` accepts (sparse k-NN pairs, or factorised pairs
    without triangle operations, read by FlashIPA) and the options that the shards support.
    ``source``: where the keys come from, for messages (e.g. "the checkpoint's model"; empty: the
    config being loaded, whose keys the message says how to change)."""
    where = f" ({source})" if source else ""
    if cfg.useFactorizedTriangleOps or not (cfg.useSparseKNN or cfg.useFactorizedPairs):
        raise ConfigError(
            f"useSequenceParallelism shards the sparse k-NN representation (useSparseKNN True) "
            f"or factorised pairs without triangle operations (useFactorizedPairs True, "
            f"useFactorizedTriangleOps False){where}; dense pairs and triangle operations on "
            "factors couple every residue with every other and cannot be split by residue"
        )
    if not cfg.useFlashMode:
        raise ConfigError(
            f"useSequenceParallelism needs useFlashMode True{where}: dense IPA's pair bias reads "
            "every residue pair, which shards of the chain do not hold"
        )
    for key, value, default, why in (
        ("randomNeighbors", cfg.randomNeighbors, 0, "each shard would need the whole chain's "
         "random draws"),
        ("selfConditioning", cfg.selfConditioning, False, "its features read the previous x̂0 "
         "of other shards' residues"),
        ("predictionTarget", cfg.predictionTarget, "epsilon", "x̂0 prediction reads the whole "
         "chain's centre"),
    ):  # fmt: skip
        if value != default:
            hint = "sample it in one process" if source else f"set {key} {default}"
            raise ConfigError(
                f"{key} = {value}{where} with useSequenceParallelism: not supported on sequence "
                f"shards yet ({why}); {hint}"
            )
