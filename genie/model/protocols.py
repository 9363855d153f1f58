"""The interfaces of the denoiser's parts besides the pair encoders
(:class:`~genie.model.encoder.PairEncoder`): pair layers and structure-layer attention. Every
implementation has the same signature, so the stacks never ask which kind they hold.

Notation: b batch, n residues, c_s single channels. Coordinates in Å, frame translations in nm.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from genie.geometry.rigid import Rigid
from genie.model.representations import PairRepresentation


class PairLayer(Protocol):
    """One layer of a :class:`~genie.model.stack.PairStack`: ``(pair, context) -> pair`` of one
    representation (dense ``z`` with its pair mask, factors with the mask, edges with the
    graph)."""

    def __call__(self, pair: Any, context: Any) -> Any: ...


class StructureAttention(Protocol):
    """The attention of a structure layer (dense IPA, FlashIPA, FlashIPA + local edges):
    ``s [b, n, c_s]``, the pair representation, frames ``[b, n]`` (nm), ``mask [b, n]`` ->
    an update of s ``[b, n, c_s]``, invariant to global rotations and translations."""

    def __call__(
        self, s: torch.Tensor, pair: PairRepresentation, frames: Rigid, mask: torch.Tensor
    ) -> torch.Tensor: ...
