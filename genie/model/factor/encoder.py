"""Factorised pair encoder (stages 1-2): pair factors ``U, V [b, n, r, c_f]`` built per residue
(optionally with k-NN environment features of the noisy trace), then the pair stack."""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.graph import KnnGraph, build_knn_graph
from genie.model.factor.features import PairFactorNet
from genie.model.representations import PairFactors
from genie.model.stack import PairStack


class FactorPairEncoder(nn.Module):
    """A :class:`~genie.model.protocols.PairEncoder`; it builds a k-NN graph (``knn``: k,
    strategy and search chunk) when its features use k-NN environment features."""

    def __init__(
        self,
        *,
        features: PairFactorNet,
        stack: PairStack,
        k: int,
        strategy: str,
        knn_chunk_size: int | None,
    ):
        super().__init__()
        self.features, self.stack = features, stack
        self.k, self.strategy, self.knn_chunk_size = k, strategy, knn_chunk_size

    @property
    def uses_graph(self) -> bool:
        return self.features.knn is not None

    def build_graph(
        self, coords: torch.Tensor, mask: torch.Tensor, residue_index: torch.Tensor
    ) -> KnnGraph | None:
        """The ``knnStrategy`` graph of the environment features; None without them."""
        if not self.uses_graph:
            return None
        return build_knn_graph(coords, mask, residue_index, k=self.k, strategy=self.strategy,
                               chunk_size=self.knn_chunk_size)  # fmt: skip

    def forward(
        self,
        s: torch.Tensor,
        x: torch.Tensor,
        residue_index: torch.Tensor,
        mask: torch.Tensor,
        *,
        graph: KnnGraph | None = None,
    ) -> tuple[torch.Tensor, PairFactors]:
        """See :class:`~genie.model.protocols.PairEncoder`."""
        if graph is None:
            graph = self.build_graph(x, mask, residue_index)
        elif not self.uses_graph:
            raise ValueError("this factor encoder uses no k-NN graph (build_graph returns None)")
        s, factors = self.features(s, x, residue_index, mask, graph=graph)  # [b, n, r, c_f] each
        return s, self.stack(factors, mask, n=x.shape[1]).masked(mask)
