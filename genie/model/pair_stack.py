"""Pair transform stack (Genie's PairTransformNet; AF2 Alg. 6 lines 11-15 without MSA).

Each layer applies, with residual connections: triangle multiplicative update (outgoing, then
incoming), optionally triangle attention (starting, then ending node), and a pair transition.
Dropout masks are shared along rows (outgoing/starting) or columns (incoming/ending).
Layers may share weights (:mod:`genie.model.sharing`) and run under layer checkpointing
(:mod:`genie.utils.checkpointing`, kind ``"pair"``).
"""

from __future__ import annotations

import torch
from torch import nn

from genie.model.primitives import SharedDropout
from genie.model.sharing import NO_SHARING, LayerSharing
from genie.model.transition import Transition
from genie.model.triangle_attention import TriangleAttention
from genie.model.triangle_multiplication import TriangleMultiplication
from genie.utils.checkpointing import LayerCheckpointing


class PairTransformLayer(nn.Module):
    def __init__(
        self,
        *,
        c_p: int,
        include_mul_update: bool,
        include_tri_att: bool,
        c_hidden_mul: int,
        c_hidden_att: int,
        n_heads_att: int,
        dropout: float,
        transition_n: int,
    ):
        super().__init__()
        self.updates = nn.ModuleList()
        self.dropouts = nn.ModuleList()
        if include_mul_update:
            for mix, shared in (("outgoing", 1), ("incoming", 2)):
                self.updates.append(TriangleMultiplication(c_p=c_p, c_hidden=c_hidden_mul, mix=mix))
                self.dropouts.append(SharedDropout(dropout, shared_dim=shared))
        if include_tri_att:
            for node, shared in (("starting", 1), ("ending", 2)):
                self.updates.append(
                    TriangleAttention(
                        c_p=c_p, c_hidden=c_hidden_att, n_heads=n_heads_att, node=node
                    )
                )
                self.dropouts.append(SharedDropout(dropout, shared_dim=shared))
        self.transition = Transition(c=c_p, expansion=transition_n)

    def forward(
        self, z: torch.Tensor, pair_mask: torch.Tensor, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """``z [b, n, n, c_p]``, ``pair_mask [b, n, n]`` -> updated ``z [b, n, n, c_p]``."""
        for update, dropout in zip(self.updates, self.dropouts, strict=True):
            z = z + dropout(update(z, pair_mask, chunk_size=chunk_size))
        return z + self.transition(z, pair_mask)


class PairTransformNet(nn.Module):
    """A stack of :class:`PairTransformLayer` (``n_layers`` may be 0: identity), its layers
    shared per ``sharing`` and checkpointed per ``checkpointing`` (default: neither)."""

    def __init__(
        self,
        *,
        n_layers: int,
        checkpointing: LayerCheckpointing | None = None,
        sharing: LayerSharing = NO_SHARING,
        **layer_kwargs,
    ):
        super().__init__()
        self.checkpointing = checkpointing or LayerCheckpointing()
        self.layers = sharing.layers(lambda i: PairTransformLayer(**layer_kwargs), n_layers)

    def forward(
        self, z: torch.Tensor, pair_mask: torch.Tensor, *, chunk_size: int | None = None
    ) -> torch.Tensor:
        """``z [b, n, n, c_p]``, ``pair_mask [b, n, n]`` -> ``[b, n, n, c_p]``."""
        n = z.shape[1]
        for i, layer in enumerate(self.layers):
            z = self.checkpointing.run("pair", i, n, layer, z, pair_mask, chunk_size=chunk_size)
        return z
