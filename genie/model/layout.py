"""Where a chain's residues live: the seam through which the denoiser's parts read other residues.

Notation: b batch, n residues of the (padded) chain, m residues held by this process, k
neighbours. Every tensor a module receives is *local*: its residue axis (dim 1) holds this
process's residues. The one exception is the k-NN graph, which is always the graph of the whole
chain (``[b, n, k]``, the same on every process).

A module that reads residues other than its own (a neighbour's features, a mean over the chain,
keys of all residues) or draws per-residue randomness does it through its ``sequence_layout``:

    layout.gather(x)           local [b, m, *] -> whole chain [b, n, *]   (gradients summed back)
    layout.local(x)            whole chain [b, n, *] -> this process's rows [b, m, *]
    layout.reduce_scatter(x)   per-process partial sums [b, n, *] -> rows [b, m, *] of their sum
    layout.own(n)              this process's rows of an n-residue axis (a slice)
    layout.sum(x)              the sum over processes of their shares x

:class:`SequenceLayout` itself holds the whole chain in one process: every method is the
identity, so the denoiser computes exactly what it computes without this seam. Sequence
parallelism (:class:`genie.distributed.SequenceShards`, docs/SEQUENCE_PARALLEL.md) replaces it
with contiguous residue shards over a process group; :func:`set_sequence_layout` installs a
layout on every :class:`SequenceParallel` part of a model (:func:`using_layout` for a block).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from genie.geometry.graph import KnnGraph, build_knn_graph


class SequenceLayout:
    """The whole chain in this process (the default of every model): all methods are the
    identity."""

    num_shards = 1

    def full_length(self, n_local: int) -> int:
        """Residues of the whole (padded) chain whose local part has ``n_local`` residues."""
        return n_local

    def own(self, n: int) -> slice:
        """This process's residues of an ``n``-residue chain (``n`` = :meth:`full_length`)."""
        return slice(0, n)

    def local(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This process's rows (:meth:`own`) of ``x``, whose ``dim`` spans the whole chain."""
        return x

    def gather(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The whole chain's rows from every process's local ``x`` (autograd: the gradient of
        each row is summed over the processes that read it and returned to its owner)."""
        return x

    def reduce_scatter(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This process's rows of the sum over processes of ``x`` (each spans the whole chain
        along ``dim``; autograd: the gradient is gathered back)."""
        return x

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over processes of each process's ``x`` (its share of a total), the same on
        every process (autograd: every share receives the total's gradient)."""
        return x

    def list_values(self, values: torch.Tensor, axis: str) -> torch.Tensor:
        """The per-edge ``values [b, m, k, *]`` that ``axis`` edge lists of own residues index:
        row lists hold own edges (local numbering, :meth:`own_edge_ids`), column lists edges of
        every residue (the whole chain's numbering)."""
        return values if axis == "row" else self.gather(values)

    def own_edge_ids(self, ids: torch.Tensor, *, n: int, k: int) -> torch.Tensor:
        """Ids of own residues' edges on the graph of an ``n``-residue chain with ``k`` slots
        (whole-chain numbering i·k + s, −1 allowed) in the numbering of the local edges."""
        return ids

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
        """The k-NN graph of the whole chain from local ``coords [b, m, 3]`` Å, ``mask`` and
        ``residue_index [b, m]``, with ``random`` random neighbours per residue drawn from
        ``seeds [b]`` (:func:`~genie.geometry.graph.build_knn_graph`)."""
        return build_knn_graph(coords, mask, residue_index, k=k, strategy=strategy,
                               chunk_size=chunk_size, random=random, seeds=seeds)  # fmt: skip


WHOLE_CHAIN = SequenceLayout()


class SequenceParallel:
    """Mixin of the denoiser's parts that read other residues or draw per-residue randomness;
    they do it through ``self.sequence_layout`` (:data:`WHOLE_CHAIN` unless
    :func:`set_sequence_layout` installed another)."""

    sequence_layout: SequenceLayout = WHOLE_CHAIN


def set_sequence_layout(model: nn.Module, layout: SequenceLayout) -> None:
    """Install ``layout`` on every :class:`SequenceParallel` module of ``model``."""
    for module in model.modules():
        if isinstance(module, SequenceParallel):
            module.sequence_layout = layout


@contextlib.contextmanager
def using_layout(model: nn.Module, layout: SequenceLayout) -> Iterator[nn.Module]:
    """``model`` on ``layout`` inside the block; every part's own layout again after it (e.g.
    the whole chain for a sampling round on one process of a sharded training run, whose weights
    every process holds)."""
    previous = [(m, m.sequence_layout) for m in model.modules() if isinstance(m, SequenceParallel)]
    set_sequence_layout(model, layout)
    try:
        yield model
    finally:
        for module, own in previous:
            module.sequence_layout = own
