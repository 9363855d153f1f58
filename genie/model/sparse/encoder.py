"""Sparse k-NN pair encoder (stages 3 V2, 4): noisy trace -> neighbour graph -> edges -> factors.

    graph    = knn_graph(x_t, strategy, k)                 index, valid [b, n, k]
    e        = EdgeFeatureNet(s, x_t, graph)               [b, n, k, c_p]
    e        = PairStack(e, graph)                         [b, n, k, c_p]
    s, U, V  = EdgePooling(s, e)                           [b, n, c_s], [b, n, r, c_f]

With ``selfConditioning`` the previous x̂_0's distances along the edges are added to e (and,
with ``selfConditionGraph``, the graph is searched on x̂_0). The graph is rebuilt from x_t for
every training batch; a sampler may build it once with
:meth:`SparsePairEncoder.build_graph` and pass it to several steps (``knnUpdateFrequency``). The
same graph feeds the edges, the local edge attention and (through the pooled factors) FlashIPA:
``kNeighbors`` is one key for all of them.
"""

from __future__ import annotations

from torch import Tensor

from genie.geometry.graph import KnnGraph
from genie.model.encoder import GraphOptions, PairEncoder
from genie.model.representations import SparsePair
from genie.model.self_condition import EdgeSelfCondition
from genie.model.sparse.features import EdgeFeatureNet, EdgePooling
from genie.model.stack import PairStack


class SparsePairEncoder(PairEncoder):
    """A :class:`~genie.model.encoder.PairEncoder` on the ``graph`` (``knnStrategy``) k-NN
    graph."""

    def __init__(
        self, *, features: EdgeFeatureNet, stack: PairStack, pooling: EdgePooling,
        graph: GraphOptions, self_condition: EdgeSelfCondition | None = None,
    ):  # fmt: skip
        super().__init__(graph=graph, self_condition=self_condition)
        self.features, self.stack, self.pooling = features, stack, pooling

    def encode(self, s: Tensor, x: Tensor, residue_index: Tensor, mask: Tensor, graph: KnnGraph,
               self_condition: Tensor | None) -> tuple[Tensor, SparsePair]:  # fmt: skip
        edges = self.features(s, x, graph)  # [b, n, k, c_p]
        if self.self_conditioning:  # the previous x̂0's distances along the edges
            edges = edges + self.sc_features(self_condition, graph).to(edges.dtype)
        edges = self.stack(edges, graph, n=graph.n)
        s, factors = self.pooling(s, edges, graph, residue_index, mask)
        return s, SparsePair(edges, graph, factors)
