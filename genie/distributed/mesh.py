"""The ``(data, sequence)`` device mesh of sequence parallelism, and the process group of a
``torchrun`` launch that has none yet (sampling: no Lightning strategy makes one).

Rank ``g`` of a world of W processes in groups of P shards is data rank ``g // P`` and sequence
rank ``g % P``: the P consecutive ranks of a sequence group share each of their chains by
residue, and the W / P data ranks take different chains (batches).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from genie.config import ConfigError

MESH_DIMS = ("data", "sequence")


def build_device_mesh(*, world_size: int, sequence_shards: int, device_type: str) -> DeviceMesh:
    """The ``(data, sequence)`` mesh of ``world_size`` processes in groups of
    ``sequence_shards`` (module docstring). Call it once the default process group exists.

    Raises:
        ConfigError: the shards do not divide the world.
    """
    if world_size % sequence_shards:
        raise ConfigError(
            f"numSequenceShards ({sequence_shards}) does not divide the world ({world_size})"
        )
    return init_device_mesh(device_type, (world_size // sequence_shards, sequence_shards),
                            mesh_dim_names=MESH_DIMS)  # fmt: skip


def launched_mesh(*, sequence_shards: int, device: torch.device) -> DeviceMesh:
    """The ``(data, sequence)`` mesh of this ``torchrun`` launch (one process when started
    without it), on ``device``'s kind: the default process group is created from torchrun's
    environment where none exists (NCCL on CUDA, on ``device`` — each process its own GPU; gloo
    on CPU)."""
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if dist.is_torchelastic_launched():
            dist.init_process_group(backend)  # torchrun's rendezvous (env://)
        else:  # one process: a group of its own, no port to find
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return build_device_mesh(world_size=dist.get_world_size(), sequence_shards=sequence_shards,
                             device_type=device.type)  # fmt: skip


def end_process_group() -> None:
    """Destroy the default process group once every process has reached this point (call it
    on the way out of a run that ended normally: a process that failed may never get there).

    Without the barrier a process that finishes first closes its gloo connections while a peer
    still tears its own down, and the peer can abort (SIGABRT, "connection closed by peer")."""
    if not dist.is_initialized():
        return
    if dist.get_world_size() > 1:
        dist.barrier()
    dist.destroy_process_group()
