"""Sampling on sequence shards: every process of a group runs the reverse process on its own
residues of every chain and gets the whole backbones back.

Notation: b chains, n residues (padded to a multiple of the shards), m = n / P own residues.

The reverse loop is the single-process one (:func:`genie.sampling.predictor.sample_chains`: the
model's noise scale and parametrisation, :func:`~genie.sampling.reverse.reverse_process`) on
:class:`ShardedChains`: its x holds the own residues ``[b, m, 3]``, the model (on the same
layout) gathers what it reads of other residues, the sampler's update is per residue and
re-centring sums over the shards. Every
process draws the whole batch's noise from the chains' own generators, the draws a single
process makes, and keeps its rows; so the same seeds give the same backbones as one process
(``tests/distributed``). The k-NN graph is rebuilt from the sharded x every
``knn_update_frequency`` steps as in one process. The final x (and any trajectory frame) is
gathered on every process; the caller lets rank 0 write the files.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh

from genie.distributed.layout import SequenceShards
from genie.distributed.model import SequenceParallelError, sequence_parallel
from genie.distributed.sharding import pad_residues, padded_length
from genie.model.denoiser import GenieDenoiser
from genie.model.layout import SequenceLayout
from genie.sampling.chains import ChainBatch, centred_rows
from genie.sampling.predictor import sample_chains
from genie.sampling.reverse import Samples


class ShardedChains:
    """This process's residues of a :class:`~genie.sampling.chains.ChainBatch` (a
    :class:`~genie.sampling.reverse.Chains`): the mask and every noise draw are the own rows of
    the whole batch's, and :meth:`split` gathers the whole chains."""

    def __init__(self, chains: ChainBatch, layout: SequenceLayout):
        self.chains, self.layout = chains, layout
        self.lengths = chains.lengths
        self.n = padded_length(chains.n_max, layout.num_shards)
        self.mask = layout.local(pad_residues(chains.mask, self.n))  # [b, m]

    def __len__(self) -> int:
        return len(self.chains)

    def normal(self) -> torch.Tensor:
        """The own rows ``[b, m, 3]`` of the whole batch's next draw."""
        return self.layout.local(pad_residues(self.chains.normal(), self.n))

    def centred(self, x: torch.Tensor) -> torch.Tensor:
        """Own rows ``x [b, m, 3]`` minus each chain's centroid over all its residues: float64
        sums of every shard, added in rank order (the same on every process), as
        :meth:`ChainBatch.centred` sums them."""
        return centred_rows(x, self.mask, total=self.layout.sum)

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Own rows ``x [b, m, 3]`` of every process -> the whole chains, ``[n_i, 3]`` each."""
        whole = self.layout.gather(x)[:, : self.chains.n_max]
        # a copy waits for the gather: a CPU chain would otherwise stay an asynchronous
        # collective's view (split's .cpu() is no copy on the CPU), never waited for
        return self.chains.split(whole.clone())


def sample_sharded(
    model: GenieDenoiser,
    *,
    group: dist.ProcessGroup | DeviceMesh,
    **sampling: Any,
) -> Samples:
    """:func:`~genie.sampling.predictor.sample_chains` (its keyword arguments: schedule,
    parametrisation, sampler, lengths, seeds, device and the loop's) with every chain sharded by
    residue over ``group`` (a process group or a one-dimensional ``DeviceMesh``). Call it on every
    process of the group with the same model weights and arguments; each returns the whole
    samples. The model is on the shards inside the call only.

    Raises:
        SequenceParallelError: a model that the shards cannot run (:func:`check_shardable`), or
            one with self-conditioning or x̂0 prediction (they read the whole chain's x̂0).
    """
    parametrisation = sampling["parametrisation"]
    if model.self_conditioning or parametrisation.target != "epsilon":
        raise SequenceParallelError(
            "sequence shards sample models that predict ε without self-conditioning (x̂0 and its "
            "centre are whole-chain quantities); sample this model in one process"
        )
    layout = SequenceShards(group)
    with sequence_parallel(model, layout):
        return sample_chains(model, view=lambda chains: ShardedChains(chains, layout), **sampling)
