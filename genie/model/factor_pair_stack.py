"""Pair transform stack on factorised pairs (stages 1-2).

Each layer updates the factors U, V ``[b, n, r, c_f]``: optionally the factor-algebra triangle
multiplicative updates (outgoing, incoming) and factorised triangle attention (starting, ending
node), then a transition applied to every factor (the pair transition "per factor"). Nothing
in the stack has more than O(n · r · c_f) elements except one attention row chunk.

Layers may share weights (:mod:`genie.model.sharing`; layers with and without triangle
operations never share) and run under layer checkpointing (:mod:`genie.utils.checkpointing`,
kind ``"pair"``).
"""

from __future__ import annotations

import torch
from torch import nn

from genie.model.factor_triangle import FactorTriangleAttention, FactorTriangleMultiplication
from genie.model.pair_representation import PairFactors
from genie.model.sharing import NO_SHARING, LayerSharing
from genie.model.transition import Transition
from genie.utils.checkpointing import LayerCheckpointing


class FactorPairLayer(nn.Module):
    def __init__(
        self,
        *,
        c_f: int,
        rank: int,
        triangle_mul: bool,
        triangle_att: bool,
        update_rank: int,
        c_hidden_att: int,
        n_heads_att: int,
        transition_n: int,
    ):
        super().__init__()
        self.updates = nn.ModuleList()
        if triangle_mul:
            for mix in ("outgoing", "incoming"):
                self.updates.append(
                    FactorTriangleMultiplication(
                        c_f=c_f, rank=rank, update_rank=update_rank, mix=mix
                    )
                )
        if triangle_att:
            for node in ("starting", "ending"):
                self.updates.append(
                    FactorTriangleAttention(
                        c_f=c_f, rank=rank, c_hidden=c_hidden_att, n_heads=n_heads_att, node=node
                    )
                )
        self.transition = Transition(c=c_f, expansion=transition_n)

    def forward(
        self, pair: PairFactors, mask: torch.Tensor, *, chunk_size: int | None = None
    ) -> PairFactors:
        """Factors ``[b, n, r, c_f]``, ``mask [b, n]`` -> updated factors."""
        for update in self.updates:
            if isinstance(update, FactorTriangleAttention):
                pair = update(pair, mask, chunk_size=chunk_size)
            else:
                pair = update(pair, mask)
        factor_mask = mask[:, :, None].expand(-1, -1, pair.rank)  # [b, n, r]
        u = pair.u + self.transition(pair.u, factor_mask)
        v = pair.v + self.transition(pair.v, factor_mask)
        return PairFactors(u, v)


class FactorPairStack(nn.Module):
    """``n_layers`` factor layers; the first ``n_triangle_layers`` carry the triangle ops."""

    def __init__(
        self,
        *,
        n_layers: int,
        n_triangle_layers: int,
        triangle_mul: bool,
        triangle_att: bool,
        checkpointing: LayerCheckpointing | None = None,
        sharing: LayerSharing = NO_SHARING,
        **layer_kwargs,
    ):
        super().__init__()
        self.checkpointing = checkpointing or LayerCheckpointing()
        self.layers = sharing.triangle_layers(
            FactorPairLayer, n_layers=n_layers, n_triangle_layers=n_triangle_layers,
            triangle_mul=triangle_mul, triangle_att=triangle_att, **layer_kwargs,
        )  # fmt: skip

    def forward(
        self, pair: PairFactors, mask: torch.Tensor, *, chunk_size: int | None = None
    ) -> PairFactors:
        """Factors ``[b, n, r, c_f]``, ``mask [b, n]`` -> updated factors."""
        n = mask.shape[1]
        for i, layer in enumerate(self.layers):
            pair = self.checkpointing.run("pair", i, n, layer, pair, mask, chunk_size=chunk_size)
        return pair
