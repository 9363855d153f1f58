"""Sequence shards over a process group: the :class:`~genie.model.layout.SequenceLayout` of
sequence parallelism.

Notation: b batch, n residues of the padded chain, P shards (processes of the group), m = n / P.

Every collective is an autograd-aware functional collective of ``torch.distributed``
(``torch.distributed._functional_collectives``): ``gather`` is an all-gather whose backward is a
reduce-scatter (the gradient of each residue's row, summed over the processes that read it,
returns to its owner), ``reduce_scatter`` the reverse. Collectives are issued in the same order on
every process of the group, because every process runs the same layers on equally shaped shards;
with one shard they are skipped, and the layout is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from torch.distributed.device_mesh import DeviceMesh

from genie.distributed.knn import sharded_knn_graph
from genie.distributed.model import SequenceParallelError
from genie.distributed.sharding import shard_bounds
from genie.geometry.graph import KnnGraph
from genie.model.layout import SequenceLayout

# torch ≥ 2.13 names the autograd-aware collectives *_single_autograd (and deprecates the older
# *_tensor_autograd names, the only ones of torch 2.4 to 2.12).
_all_gather = (
    getattr(funcol, "all_gather_single_autograd", None) or funcol.all_gather_tensor_autograd
)
_reduce_scatter = (
    getattr(funcol, "reduce_scatter_single_autograd", None) or funcol.reduce_scatter_tensor_autograd
)


class SequenceShards(SequenceLayout):
    """This process's contiguous shard of every chain, one shard per process of ``group``
    (a ``torch.distributed`` process group, or a one-dimensional ``DeviceMesh``, e.g. the
    sequence dimension of a data × sequence mesh); shard p = the rank in the group."""

    def __init__(self, group: dist.ProcessGroup | DeviceMesh):
        if isinstance(group, DeviceMesh):
            if group.ndim != 1:
                raise ValueError(
                    f"sequence shards need a one-dimensional mesh, got {group.ndim} dimensions "
                    f"{group.mesh_dim_names}: pass the sequence dimension, mesh['sequence']"
                )
            group = group.get_group()
        self.group = group
        self.num_shards = dist.get_world_size(group)
        self.rank = dist.get_rank(group)

    def __deepcopy__(self, memo: dict) -> SequenceShards:
        return self  # a process group is a process-wide handle: copies of a model share it

    def __repr__(self) -> str:
        return f"SequenceShards(rank {self.rank} of {self.num_shards})"

    def full_length(self, n_local: int) -> int:
        return n_local * self.num_shards

    def own(self, n: int) -> slice:
        return shard_bounds(n, self.num_shards, self.rank)

    def local(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        if self.num_shards == 1:
            return x
        rows = self.own(x.shape[dim])
        return x.narrow(dim, rows.start, rows.stop - rows.start)

    def gather(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        if self.num_shards == 1:
            return x
        return _all_gather(x.contiguous(), dim % x.dim(), self.group)

    def reduce_scatter(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        if self.num_shards == 1:
            return x
        return _reduce_scatter(x.contiguous(), "sum", dim % x.dim(), self.group)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_shards == 1:
            return x
        # Gather then add, in rank order on every process: the same bits everywhere.
        return self.gather(x.unsqueeze(0), dim=0).sum(0)

    def own_edge_ids(self, ids: torch.Tensor, *, n: int, k: int) -> torch.Tensor:
        if self.num_shards == 1:
            return ids
        return torch.where(ids >= 0, ids - self.own(n).start * k, -1)

    def knn_graph(
        self,
        coords: torch.Tensor,
        mask: torch.Tensor,
        residue_index: torch.Tensor,
        *,
        k: int,
        strategy: str,
        chunk_size: int | None,
        random: int = 0,
        seeds: torch.Tensor | None = None,
    ) -> KnnGraph:
        if random:
            raise SequenceParallelError(
                "randomNeighbors > 0 is not supported on sequence shards yet (each shard would "
                "need the whole chain's random draws); set randomNeighbors 0"
            )
        return sharded_knn_graph(coords, mask, residue_index, layout=self, k=k,
                                 strategy=strategy, chunk_size=chunk_size)  # fmt: skip
