"""The interfaces the denoiser's parts meet: pair encoders, pair layers and structure-layer
attention. Every implementation has the same signature, so the denoiser and the samplers never
ask which kind of part they hold.

Notation: b batch, n residues, c_s single channels. Coordinates in Å, frame translations in nm.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from genie.geometry.graph import KnnGraph
from genie.geometry.rigid import Rigid
from genie.model.representations import PairRepresentation


class PairEncoder(Protocol):
    """Single features + noisy trace -> the pair representation of the trunk (dense pairs,
    factors or sparse edges), and the k-NN graph it works on, if any."""

    @property
    def uses_graph(self) -> bool:
        """Whether :meth:`build_graph` returns a graph (which a sampler may reuse for several
        steps), rather than None."""
        ...

    def build_graph(
        self, coords: torch.Tensor, mask: torch.Tensor, residue_index: torch.Tensor
    ) -> KnnGraph | None:
        """The k-NN graph of ``coords [b, n, 3]`` Å (``mask [b, n]``, ``residue_index [b, n]``)
        that :meth:`forward` uses; None for an encoder without one."""
        ...

    def __call__(
        self,
        s: torch.Tensor,
        x: torch.Tensor,
        residue_index: torch.Tensor,
        mask: torch.Tensor,
        *,
        graph: KnnGraph | None = None,
    ) -> tuple[torch.Tensor, PairRepresentation]:
        """``s [b, n, c_s]``, centred trace ``x [b, n, 3]`` Å, ``residue_index [b, n]``,
        ``mask [b, n]`` (0/1) and optionally a graph from :meth:`build_graph` (default: built
        from x where the encoder needs one) -> updated s ``[b, n, c_s]`` and the pairs."""
        ...


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
