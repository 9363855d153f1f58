"""The pair encoder interface: single features + noisy trace -> the pair representation of the
trunk (dense pairs, factors or sparse edges), and the k-NN graph it works on, if any.

Every encoder (:mod:`genie.model.dense.encoder`, :mod:`genie.model.factor.encoder`,
:mod:`genie.model.sparse.encoder`) is a :class:`PairEncoder` with the same two calls, so the
denoiser and the samplers never ask which kind they hold:

    graph = encoder.build_graph(coords, mask, residue_index)   # KnnGraph, or None
    s, pair = encoder(s, x, residue_index, mask, graph=graph)    # graph=None: built here

Notation: b batch, n residues, k neighbours, c_s single channels. Coordinates in Å.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from torch import Tensor, nn

from genie.geometry.graph import KnnGraph
from genie.model.layout import SequenceParallel
from genie.model.representations import PairRepresentation


@dataclass(frozen=True)
class GraphOptions:
    """The k-NN graph an encoder builds: ``k`` neighbours by ``strategy`` (``kNeighbors``,
    ``knnStrategy``), searched in blocks of ``chunk_size`` queries (``knnChunkSize``)."""

    k: int
    strategy: str
    chunk_size: int | None


class PairEncoder(SequenceParallel, nn.Module, abc.ABC):
    """Base of the pair encoders; subclasses implement :meth:`encode`.

    Args:
        graph: the graph the encoder works on, or None for an encoder without one.
    """

    def __init__(self, *, graph: GraphOptions | None):
        super().__init__()
        self.graph_options = graph

    @property
    def uses_graph(self) -> bool:
        """Whether :meth:`build_graph` returns a graph (which a sampler may reuse for several
        steps), rather than None."""
        return self.graph_options is not None

    def build_graph(self, coords: Tensor, mask: Tensor, residue_index: Tensor) -> KnnGraph | None:
        """The k-NN graph of ``coords [b, n, 3]`` Å (``mask [b, n]``, ``residue_index [b, n]``)
        that :meth:`forward` uses; None for an encoder without one."""
        opt = self.graph_options
        if opt is None:
            return None
        return self.sequence_layout.knn_graph(
            coords, mask, residue_index, k=opt.k, strategy=opt.strategy, chunk_size=opt.chunk_size
        )

    def forward(
        self, s: Tensor, x: Tensor, residue_index: Tensor, mask: Tensor, *,
        graph: KnnGraph | None = None,
    ) -> tuple[Tensor, PairRepresentation]:  # fmt: skip
        """
        Args:
            s: ``[b, n, c_s]`` single features.
            x: ``[b, n, 3]`` centred noisy Cα trace, Å.
            residue_index: ``[b, n]``; mask: ``[b, n]`` 0/1.
            graph: a graph from :meth:`build_graph` for this trace's residues (default: built
                here from x, where the encoder has one).

        Returns:
            updated s ``[b, n, c_s]`` and the pair representation.
        """
        if graph is None:
            graph = self.build_graph(x, mask, residue_index)
        elif not self.uses_graph:
            raise ValueError(f"{type(self).__name__} takes no k-NN graph (its build_graph "
                             "returns None)")  # fmt: skip
        elif (graph.b, graph.n) != (x.shape[0], self.sequence_layout.full_length(x.shape[1])):
            raise ValueError(f"graph of {tuple(graph.index.shape[:2])} residues for a trace of "
                             f"{tuple(x.shape[:2])}")  # fmt: skip
        return self.encode(s, x, residue_index, mask, graph)

    @abc.abstractmethod
    def encode(self, s: Tensor, x: Tensor, residue_index: Tensor, mask: Tensor,
               graph: KnnGraph | None) -> tuple[Tensor, PairRepresentation]:  # fmt: skip
        """:meth:`forward` with the graph resolved (None exactly when the encoder has none)."""
