"""Training with sequence parallelism through Lightning: the strategy, and what
``GenieModule.configure_model`` does with its device mesh (docs/SEQUENCE_PARALLEL.md).

The engine is Lightning's ``ModelParallelStrategy``: it starts the processes (``torchrun`` or
``devices N``), builds the two-dimensional device mesh ``data_parallel × tensor_parallel`` (D × P
processes) and hands it to ``configure_model``; its data-loader sharding follows the data
dimension, so the P processes of a sequence group read the same batches (the length-bucketed
batch sampler asks the strategy, :mod:`genie.data.datamodule`). Its ``tensor_parallel``
dimension is our sequence dimension: each of its groups shards one batch's chains by residue.

Gradients: the model is replicated over all D·P processes with PyTorch's composable DDP
(``torch.distributed._composable.replicate``: bucketed all-reduce overlapped with backward).
DDP averages over the D·P processes; a process's objective is its share of its sequence group's
loss (:mod:`genie.training.objective`), multiplied by P (:data:`GenieModule.training_step`), so the
average is the mean over the D data replicas of the sum over each chain's P shards: the gradient
of the unsharded loss of that replica's batch, averaged over replicas as in plain DDP.

Checkpoints are gathered into one file on rank 0 (``save_distributed_checkpoint=False``), which
loads in a single process for sampling or further training. Resuming reads that file on every
process (:class:`SequenceParallelStrategy`): Lightning's ``ModelParallelStrategy`` loads only
checkpoints of DTensor (FSDP2 / tensor-parallel) models, and ours holds plain replicated tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.strategies import ModelParallelStrategy, Strategy
from torch.distributed._composable import replicate
from torch.distributed.device_mesh import DeviceMesh

from genie.distributed import SequenceShards, check_shardable
from genie.model.layout import set_sequence_layout

DATA_DIM, SEQUENCE_DIM = "data_parallel", "tensor_parallel"  # ModelParallelStrategy's names


class SequenceParallelStrategy(ModelParallelStrategy):
    """Lightning's ``ModelParallelStrategy`` whose checkpoints (one file, written by rank 0) are
    restored as any single-file checkpoint: read on every process, the weights and the optimiser
    state loaded into the replicated model and its optimiser (module docstring)."""

    @property
    def lightning_restore_optimizer(self) -> bool:
        return True

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict:
        path = self.broadcast(checkpoint_path)  # rank 0's path on every process
        return Strategy.load_checkpoint(self, path, weights_only=weights_only)

    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> None:
        Strategy.load_model_state_dict(self, checkpoint, strict=strict)

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        Strategy.load_optimizer_state_dict(self, checkpoint)


def sequence_parallel_strategy(
    *, num_shards: int, world_size: int, backend: str | None = None
) -> SequenceParallelStrategy:
    """Lightning's ``ModelParallelStrategy`` for ``world_size`` processes (devices × nodes) in
    groups of ``num_shards`` that shard each chain (``world_size / num_shards`` data-parallel
    replicas); ``backend`` nccl or gloo (None: Lightning's choice for the device)."""
    if num_shards < 1 or world_size % num_shards:
        raise ValueError(
            f"{world_size} processes do not split into sequence groups of {num_shards}: the "
            "number of shards must divide the number of processes"
        )
    return SequenceParallelStrategy(
        data_parallel_size=world_size // num_shards,
        tensor_parallel_size=num_shards,
        save_distributed_checkpoint=False,
        process_group_backend=backend,
    )


def parallelize(
    module: pl.LightningModule, mesh: DeviceMesh, *, bucket_size_mb: float | None = None
) -> None:
    """Put ``module`` (a :class:`~genie.training.module.GenieModule`) on the sequence
    dimension of ``mesh`` and replicate its denoiser over every process (module docstring);
    ``bucket_size_mb``: DDP's gradient buckets of that size, gradients held as views into them
    (``useGradientBucketing``; None = DDP's defaults)."""
    if mesh.mesh_dim_names != (DATA_DIM, SEQUENCE_DIM):
        raise ValueError(f"expected a ({DATA_DIM}, {SEQUENCE_DIM}) device mesh, got "
                         f"{mesh.mesh_dim_names}")  # fmt: skip
    check_shardable(module.model)
    set_sequence_layout(module, SequenceShards(mesh[SEQUENCE_DIM]))
    if mesh.size() > 1:
        buckets = (
            {}
            if bucket_size_mb is None
            else dict(bucket_cap_mb=bucket_size_mb, gradient_as_bucket_view=True)
        )
        replicate(module.model, **buckets)
