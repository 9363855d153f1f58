"""Putting a denoiser on sequence shards, and the models that can be.

Sequence parallelism covers the long-chain models: sparse k-NN pairs (stages 3 V2 and 4: edge
features, triangle updates, triangle and axial attention on the edges, pooled factors, FlashIPA
and the local edge attention) and factorised pairs read by FlashIPA (the mHC + FlashIPA stack,
with k-NN environment features and factor transitions), with or without mHC, layer checkpointing
and weight sharing. Refused, with the reason:

- dense pairs ``[b, n, n, c_p]``: every residue's row couples all residues, and a dense chain
  short enough to fit has no need of shards;
- dense IPA (``useFlashMode False``): its pair bias reads the pair tensor of every residue pair;
- triangle operations on factors (``useFactorizedTriangleOps``): they contract and attend over
  all residues' factors, which these shards do not exchange.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from genie.model.denoiser import GenieDenoiser
from genie.model.dense.encoder import DensePairEncoder
from genie.model.factor.triangle import FactorTriangleAttention, FactorTriangleMultiplication
from genie.model.layout import SequenceLayout, set_sequence_layout, using_layout
from genie.model.structure.ipa import InvariantPointAttention
from genie.utils.errors import UserInputError

_REFUSED: tuple[tuple[type[nn.Module], str], ...] = (
    (DensePairEncoder, "dense pairs [b, n, n, c_p] (use useSparseKNN or useFactorizedPairs)"),
    (InvariantPointAttention, "dense IPA (use useFlashMode True)"),
    (FactorTriangleMultiplication, "triangle updates on factors (useFactorizedTriangleOps)"),
    (FactorTriangleAttention, "triangle attention on factors (useFactorizedTriangleOps)"),
)


class SequenceParallelError(UserInputError, ValueError):
    """A model (or input) that sequence parallelism cannot shard."""


def check_shardable(model: nn.Module) -> None:
    """Raise :class:`SequenceParallelError` naming every part of ``model`` that sequence
    parallelism does not support (module docstring)."""
    if not isinstance(model, GenieDenoiser):
        raise SequenceParallelError(
            f"sequence parallelism shards a GenieDenoiser, got {type(model).__name__}"
        )
    found = sorted({reason for module in model.modules() for kind, reason in _REFUSED
                    if isinstance(module, kind)})  # fmt: skip
    if found:
        raise SequenceParallelError(
            "sequence parallelism does not support " + "; ".join(found)
            + ": it shards the sparse k-NN and the factorised FlashIPA models"
        )  # fmt: skip


def shard_model(model: GenieDenoiser, layout: SequenceLayout) -> GenieDenoiser:
    """Put ``model`` on ``layout`` (e.g. :class:`~genie.distributed.SequenceShards`) for good:
    from now on it takes and returns the local residues of every chain (docs/SEQUENCE_PARALLEL.md).
    Returns the model."""
    check_shardable(model)
    set_sequence_layout(model, layout)
    return model


@contextlib.contextmanager
def sequence_parallel(model: GenieDenoiser, layout: SequenceLayout) -> Iterator[GenieDenoiser]:
    """``model`` on ``layout`` inside the block, on its previous layout again after it."""
    check_shardable(model)
    with using_layout(model, layout):
        yield model
