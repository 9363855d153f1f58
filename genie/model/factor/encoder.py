"""Factorised pair encoder (stages 1-2): pair factors ``U, V [b, n, r, c_f]`` built per residue
(optionally with k-NN environment features of the noisy trace), then the pair stack."""

from __future__ import annotations

from torch import Tensor

from genie.geometry.graph import KnnGraph
from genie.model.encoder import GraphOptions, PairEncoder
from genie.model.factor.features import PairFactorNet
from genie.model.representations import PairFactors
from genie.model.self_condition import LocalSelfCondition
from genie.model.stack import PairStack


class FactorPairEncoder(PairEncoder):
    """A :class:`~genie.model.encoder.PairEncoder` whose graph feeds the k-NN environment
    features: ``graph`` is given exactly when ``features`` has them. With ``self_condition``
    (``selfConditioning``) the previous x̂_0's local distances are added to the single features
    the factors are projected from."""

    def __init__(
        self, *, features: PairFactorNet, stack: PairStack, graph: GraphOptions | None,
        self_condition: LocalSelfCondition | None = None,
    ):  # fmt: skip
        if (graph is None) != (features.knn is None):
            raise ValueError("FactorPairEncoder: give graph options exactly when the features "
                             "have k-NN environment features")  # fmt: skip
        super().__init__(graph=graph, self_condition=self_condition)
        self.features, self.stack = features, stack

    def encode(self, s: Tensor, x: Tensor, residue_index: Tensor, mask: Tensor,
               graph: KnnGraph | None,
               self_condition: Tensor | None) -> tuple[Tensor, PairFactors]:  # fmt: skip
        if self.self_conditioning:
            s = s + self.sc_features(self_condition, mask).to(s.dtype)
        s, factors = self.features(s, x, residue_index, mask, graph=graph)  # [b, n, r, c_f] each
        return s, self.stack(factors, mask, n=x.shape[1]).masked(mask)
