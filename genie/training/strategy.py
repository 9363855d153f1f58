"""The launch layout of a training run and its Lightning strategy: the one place that reads the
distributed keys for the trainer (:func:`genie.training.run.build_trainer`).

Under ``torchrun`` every process is started already and the layout is the launcher's
(``LOCAL_WORLD_SIZE`` devices per node, ``WORLD_SIZE`` processes in all); a plain launch trains on
the config's ``devices`` × ``numNodes`` (docs/DISTRIBUTED.md).
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from pytorch_lightning.strategies import Strategy

from genie.config import GenieConfig
from genie.model.build import build_denoiser
from genie.model.stack import PairStack
from genie.model.structure.stack import StructureNet
from genie.training.distributed import distributed_strategy, torchrun_layout
from genie.training.sequence_parallel import sequence_parallel_strategy

log = logging.getLogger("genie.train")


def uses_cuda(cfg: GenieConfig) -> bool:
    """Whether the trainer runs on CUDA devices: ``accelerator`` gpu/cuda, or auto on a machine
    with one."""
    return cfg.accelerator in ("gpu", "cuda") or (
        cfg.accelerator == "auto" and torch.cuda.is_available()
    )


def build_strategy(cfg: GenieConfig, *, model: torch.nn.Module | None = None) -> Strategy:
    """Lightning's DDP or FSDP for ``useDistributed`` (:func:`genie.training.distributed.
    distributed_strategy`), or its ``ModelParallelStrategy`` over a (data, sequence) mesh for
    ``useSequenceParallelism`` (:func:`genie.training.sequence_parallel.
    sequence_parallel_strategy`); ``model``: the denoiser
    whose gradients PowerSGD compresses (``gradientCompressionRatio``; built from ``cfg`` when
    None)."""
    if cfg.useSequenceParallelism:  # the (data, sequence) mesh: genie.training.sequence_parallel
        devices, nodes = launch_layout(cfg)
        return sequence_parallel_strategy(num_shards=cfg.numSequenceShards,
                                          world_size=devices * nodes,
                                          backend=cfg.distributedBackend)  # fmt: skip
    shapes = None
    if cfg.gradientCompressionRatio is not None:
        model = model if model is not None else build_denoiser(cfg, announce=False)
        shapes = [p.shape for p in model.parameters() if p.requires_grad]
    return distributed_strategy(
        strategy=cfg.distributedStrategy,
        backend=cfg.distributedBackend,
        cuda=uses_cuda(cfg),
        compression_ratio=cfg.gradientCompressionRatio,
        parameter_shapes=shapes,
        bucket_size_mb=cfg.gradientBucketSizeMB if cfg.useGradientBucketing else None,
        fsdp_units={PairStack, StructureNet},
    )


def with_launch_layout(cfg: GenieConfig) -> GenieConfig:
    """``cfg`` with the ``devices`` and ``numNodes`` of this launch (torchrun's, when torchrun
    started it), so that the run folder's config and the checkpoints name the layout that
    trained; checked like a config file (``useDistributed`` for more than one process)."""
    layout = torchrun_layout()
    if layout is None or layout == (cfg.devices, cfg.numNodes):
        return cfg
    return dataclasses.replace(cfg, devices=layout[0], numNodes=layout[1])


def launch_layout(cfg: GenieConfig) -> tuple[int, int]:
    """``(devices per node, nodes)`` of this run: torchrun's, else ``devices`` × ``numNodes``."""
    layout = torchrun_layout()
    if layout is None:
        return cfg.devices, cfg.numNodes
    if layout != (cfg.devices, cfg.numNodes):
        log.info(
            "torchrun starts %d process(es) per node on %d node(s): training on %d device(s) per "
            "node (the config's devices = %d, numNodes = %d apply to plain launches only)",
            *layout, layout[0], cfg.devices, cfg.numNodes,
        )  # fmt: skip
    return layout
