"""A pair layer on factorised pairs (stages 1-2): one layer of a
:class:`~genie.model.stack.PairStack`.

Each layer updates the factors U, V ``[b, n, r, c_f]``: optionally the factor-algebra triangle
multiplicative updates (outgoing, incoming) and factorised triangle attention (starting, ending
node), then a transition applied to every factor (the pair transition "per factor"). Nothing
in the layer has more than O(n · r · c_f) elements except one attention row chunk.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.model.factor.triangle import FactorTriangleAttention, FactorTriangleMultiplication
from genie.model.layers.transition import Transition
from genie.model.representations import PairFactors


class FactorPairLayer(nn.Module):
    """Args:
    c_f: factor channels; rank: factor rank r.
    triangle_mul: factor-algebra triangle multiplicative updates (outgoing, incoming).
    triangle_att: factorised triangle attention (starting, ending node).
    update_rank: rank t of the triangle-update operands.
    c_hidden_att, n_heads_att: channels per head and heads of the triangle attention.
    attention_chunk_size: rows per chunk of the triangle attention (None = all).
    transition_n: expansion of the per-factor transition.
    """

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
        attention_chunk_size: int | None,
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
                        c_f=c_f, rank=rank, c_hidden=c_hidden_att, n_heads=n_heads_att, node=node,
                        chunk_size=attention_chunk_size,
                    )
                )  # fmt: skip
        self.transition = Transition(c=c_f, expansion=transition_n)

    def forward(self, pair: PairFactors, mask: torch.Tensor) -> PairFactors:
        """Factors ``[b, n, r, c_f]``, ``mask [b, n]`` -> updated factors."""
        for update in self.updates:
            pair = update(pair, mask)
        factor_mask = mask[:, :, None].expand(-1, -1, pair.rank)  # [b, n, r]
        u = pair.u + self.transition(pair.u, factor_mask)
        v = pair.v + self.transition(pair.v, factor_mask)
        return PairFactors(u, v)
