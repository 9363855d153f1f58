"""Sequence parallelism: one chain's residues sharded over the processes of a group
(docs/SEQUENCE_PARALLEL.md)."""

from genie.distributed.layout import SequenceShards
from genie.distributed.model import (
    SequenceParallelError,
    check_shardable,
    sequence_parallel,
    shard_model,
)
from genie.distributed.sharding import pad_residues, padded_length, shard_bounds

__all__ = [
    "SequenceParallelError",
    "SequenceShards",
    "check_shardable",
    "pad_residues",
    "padded_length",
    "sequence_parallel",
    "shard_bounds",
    "shard_model",
]
