"""The pair encoder interface: single features + noisy trace -> the pair representation of the
trunk (dense pairs, factors or sparse edges), and the k-NN graph it works on, if any.

Every encoder (:mod:`genie.model.dense.encoder`, :mod:`genie.model.factor.encoder`,
:mod:`genie.model.sparse.encoder`) is a :class:`PairEncoder` with the same two calls, so the
denoiser and the samplers never ask which kind they hold:

    graph = encoder.build_graph(coords, mask, residue_index)   # KnnGraph, or None
    s, pair = encoder(s, x, residue_index, mask, graph=graph)    # graph=None: built here

With ``selfConditioning`` an encoder also takes the previous prediction x̂_0
(``self_condition=``, :mod:`genie.model.self_condition`), and with ``selfConditionGraph`` its
graph's coordinate and random neighbours are searched on x̂_0 instead of x_t.

Notation: b batch, n residues, k neighbours, c_s single channels. Coordinates in Å.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genie.geometry.graph import KnnGraph
from genie.model.layout import SequenceParallel
from genie.model.representations import PairRepresentation

MAX_GRAPH_SEED = 2**62  # seeds of random neighbours drawn in training: 0 ≤ seed < this


@dataclass(frozen=True)
class GraphOptions:
    """The k-NN graph an encoder builds: ``k`` neighbours by ``strategy`` (``kNeighbors``,
    ``knnStrategy``), searched in blocks of ``chunk_size`` queries (``knnChunkSize``), plus
    ``random`` random long-range neighbours (``randomNeighbors``), searched on the previous x̂_0
    where there is one with ``from_self_condition`` (``selfConditionGraph``)."""

    k: int
    strategy: str
    chunk_size: int | None
    random: int = 0
    from_self_condition: bool = False


class PairEncoder(SequenceParallel, nn.Module, abc.ABC):
    """Base of the pair encoders; subclasses implement :meth:`encode`.

    Args:
        graph: the graph the encoder works on, or None for an encoder without one.
        self_condition: the self-conditioning features of the subclass's representation
            (:mod:`genie.model.self_condition`), or None without ``selfConditioning``.
    """

    def __init__(self, *, graph: GraphOptions | None, self_condition: nn.Module | None = None):
        super().__init__()
        self.graph_options = graph
        if self_condition is not None:  # no attribute without it: the same state_dict as before
            self.sc_features = self_condition

    @property
    def uses_graph(self) -> bool:
        """Whether :meth:`build_graph` returns a graph (which a sampler may reuse for several
        steps), rather than None."""
        return self.graph_options is not None

    @property
    def self_conditioning(self) -> bool:
        """Whether the encoder reads a previous x̂_0 (``self_condition=``)."""
        return "sc_features" in self._modules

    def build_graph(
        self, coords: Tensor, mask: Tensor, residue_index: Tensor, *,
        self_condition: Tensor | None = None, seeds: Tensor | None = None,
    ) -> KnnGraph | None:  # fmt: skip
        """The k-NN graph of ``coords [b, n, 3]`` Å (``mask [b, n]``, ``residue_index [b, n]``)
        that :meth:`forward` uses; None for an encoder without one.

        Args:
            self_condition: ``[b, n, 3]`` the previous x̂_0 (Å), searched instead of ``coords``
                with ``from_self_condition``; None: ``coords``.
            seeds: ``[b]`` int64 seeds of the random neighbours (``random`` > 0); None draws
                them from torch's global random stream (training).
        """
        opt = self.graph_options
        if opt is None:
            return None
        if opt.from_self_condition and self_condition is not None:
            coords = self_condition
        if opt.random and seeds is None:
            seeds = torch.randint(0, MAX_GRAPH_SEED, (coords.shape[0],), dtype=torch.int64)
        return self.sequence_layout.knn_graph(coords, mask, residue_index, k=opt.k,
                                              strategy=opt.strategy, chunk_size=opt.chunk_size,
                                              random=opt.random, seeds=seeds)  # fmt: skip

    def forward(
        self, s: Tensor, x: Tensor, residue_index: Tensor, mask: Tensor, *,
        graph: KnnGraph | None = None, self_condition: Tensor | None = None,
    ) -> tuple[Tensor, PairRepresentation]:  # fmt: skip
        """
        Args:
            s: ``[b, n, c_s]`` single features.
            x: ``[b, n, 3]`` centred noisy Cα trace, Å.
            residue_index: ``[b, n]``; mask: ``[b, n]`` 0/1.
            graph: a graph from :meth:`build_graph` for this trace's residues (default: built
                here from x, or from ``self_condition`` with ``from_self_condition``).
            self_condition: ``[b, n, 3]`` the previous x̂_0, Å (encoders with
                ``selfConditioning`` only); None: there is none (its "absent" features).

        Returns:
            updated s ``[b, n, c_s]`` and the pair representation.
        """
        if self_condition is not None and not self.self_conditioning:
            raise ValueError(f"{type(self).__name__} has no self-conditioning (selfConditioning "
                             "False): it takes no previous x̂0")  # fmt: skip
        if graph is None:
            graph = self.build_graph(x, mask, residue_index, self_condition=self_condition)
        elif not self.uses_graph:
            raise ValueError(f"{type(self).__name__} takes no k-NN graph (its build_graph "
                             "returns None)")  # fmt: skip
        elif (graph.b, graph.n) != (x.shape[0], self.sequence_layout.full_length(x.shape[1])):
            raise ValueError(f"graph of {tuple(graph.index.shape[:2])} residues for a trace of "
                             f"{tuple(x.shape[:2])}")  # fmt: skip
        return self.encode(s, x, residue_index, mask, graph, self_condition)

    @abc.abstractmethod
    def encode(self, s: Tensor, x: Tensor, residue_index: Tensor, mask: Tensor,
               graph: KnnGraph | None,
               self_condition: Tensor | None) -> tuple[Tensor, PairRepresentation]:  # fmt: skip
        """:meth:`forward` with the graph resolved (None exactly when the encoder has none);
        ``self_condition`` is None without self-conditioning or without a previous x̂_0."""
