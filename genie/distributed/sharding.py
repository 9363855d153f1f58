"""Sharding rules of sequence parallelism: how a chain's residues are split over the processes.

Notation: b batch, n residues of the padded chain, P shards (``num_shards``), m = n / P residues
per shard.

A batch of chains padded to its longest, ``n0`` residues, is padded further with masked residues
to n = ⌈n0 / P⌉ · P, and shard p (the rank in the sequence group) holds the contiguous residues
``p·m … (p+1)·m − 1`` of every chain. Padding is masked, and the denoiser ignores masked residues
(they are never neighbours, never keys of an attention), so the padded chain gives the unpadded
one's prediction; a shard may hold padding only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def padded_length(n: int, num_shards: int) -> int:
    """The residues ``n`` padded up to a multiple of ``num_shards``."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, got {num_shards}")
    if n < 0:
        raise ValueError(f"a chain cannot have {n} residues")
    return -(-n // num_shards) * num_shards


def shard_bounds(n: int, num_shards: int, rank: int) -> slice:
    """The residues ``[start, stop)`` of shard ``rank`` of an ``n``-residue padded chain."""
    if n % num_shards:
        raise ValueError(
            f"{n} residues do not split into {num_shards} equal shards: pad the chain to "
            f"{padded_length(n, num_shards)} (genie.distributed.sharding.padded_length)"
        )
    if not 0 <= rank < num_shards:
        raise ValueError(f"shard {rank} of {num_shards} does not exist")
    m = n // num_shards
    return slice(rank * m, (rank + 1) * m)


def pad_residues(x: torch.Tensor, n: int, *, dim: int = 1) -> torch.Tensor:
    """``x`` with zeros appended along its residue axis ``dim`` up to ``n`` residues (padding is
    masked: zero coordinates, mask 0, residue index 0)."""
    extra = n - x.shape[dim]
    if extra < 0:
        raise ValueError(f"cannot pad {x.shape[dim]} residues to {n}")
    if extra == 0:
        return x
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [0, extra]
    return F.pad(x, pad)
