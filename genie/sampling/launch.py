"""Where a sampling run's processes stand: one process, or a ``torchrun`` launch whose chains are
sharded by residue (``useSequenceParallelism``; docs/DISTRIBUTED.md).

Under ``torchrun`` with W processes and P = ``numSequenceShards``, the processes form a
``(data, sequence)`` mesh (:func:`genie.distributed.mesh.build_device_mesh`): the W / P data
ranks take every (W / P)-th batch, and the P processes of a sequence group sample each of their
batch's chains together. Global rank 0 plans the run (which samples are left, what is removed)
and prints; the first process of each sequence group writes its own batches' files (the
provenance manifest is written under its lock, :mod:`genie.sampling.provenance`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh

T = TypeVar("T")


@dataclass(frozen=True)
class SamplingLaunch:
    """This process's place in the run (module docstring); one process: no mesh.

    Attributes:
        device: the device this process samples on (``cuda:LOCAL_RANK`` under torchrun).
        mesh: the ``(data, sequence)`` device mesh, or None for a plain one-process run.
    """

    device: torch.device
    mesh: DeviceMesh | None = None

    @property
    def data_rank(self) -> int:
        return 0 if self.mesh is None else self.mesh["data"].get_local_rank()

    @property
    def data_ranks(self) -> int:
        return 1 if self.mesh is None else self.mesh["data"].size()

    @property
    def sequence(self) -> DeviceMesh | None:
        """The sequence group of this process (None: the whole chain in this process)."""
        return None if self.mesh is None else self.mesh["sequence"]

    @property
    def leader(self) -> bool:
        """Global rank 0: plans, prints and reports."""
        return self.mesh is None or dist.get_rank() == 0

    @property
    def writes(self) -> bool:
        """The first process of a sequence group: writes the group's samples."""
        return self.sequence is None or self.sequence.get_local_rank() == 0

    def share(self, batches: Sequence[T]) -> list[T]:
        """This data rank's batches: every ``data_ranks``-th, from its rank."""
        return list(batches[self.data_rank :: self.data_ranks])

    def from_leader(self, value: Any) -> Any:
        """``value`` of global rank 0, on every process (a picklable object)."""
        if self.mesh is None:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def total(self, counts: Sequence[int]) -> list[int]:
        """The sums over the writing processes of their ``counts`` (every process gets them)."""
        if self.mesh is None:
            return list(counts)
        mine = list(counts) if self.writes else [0] * len(counts)
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        return [int(sum(column)) for column in zip(*gathered, strict=True)]


@contextlib.contextmanager
def sampling_launch(
    *, sequence_parallel: bool, shards: int, device: torch.device
) -> Iterator[SamplingLaunch]:
    """The launch of this process: with ``sequence_parallel``, the mesh of the torchrun
    processes (or of this one process) in groups of ``shards``, on ``device``'s kind (each
    CUDA process on its ``LOCAL_RANK``'s GPU); the process group it creates is destroyed when
    the block ends."""
    if not sequence_parallel:
        yield SamplingLaunch(device=device)
        return
    from genie.distributed.mesh import end_process_group, launched_mesh

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    created = not dist.is_initialized()
    try:
        yield SamplingLaunch(device=device,
                             mesh=launched_mesh(sequence_shards=shards, device=device))  # fmt: skip
    except BaseException:  # no barrier: the other processes may never reach one
        if created and dist.is_initialized():
            dist.destroy_process_group()
        raise
    if created:
        end_process_group()
