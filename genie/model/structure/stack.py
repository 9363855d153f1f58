"""Structure stack: structure layers over frames built from the noisy trace.

Frames start from the noisy trace's Frenet–Serret frames. Inside the stack translations are in
nm (Å / 10, as AF2's structure module) to keep point distances of order one; the returned
frames are in Å again. The layers are Genie's post-LN layers, or, with mHC, pre-LN layers whose
residual branches run through manifold-constrained hyper-connections. Layers (and the factor
transitions between them) may share weights (:mod:`genie.model.sharing`) and run under layer
checkpointing (:mod:`genie.utils.checkpointing`, kind ``"structure"``); the model builder
(:mod:`genie.model.build`) makes them.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.rigid import Rigid
from genie.model.layers.transition import Transition
from genie.model.representations import PairFactors, PairRepresentation
from genie.model.sharing import SharedLayers
from genie.model.structure.hyper_connections import expand_streams
from genie.model.structure.layer import NM_PER_ANGSTROM
from genie.utils.checkpointing import LayerCheckpointing


class StructureNet(nn.Module):
    """A stack of structure layers acting on frames built from the noisy trace, applied
    ``n_blocks`` times with the same weights (Genie's ``numStructureBlocks``).

    Args:
        layers: the structure layers (:class:`~genie.model.structure.layer.StructureLayer`, or
            :class:`~genie.model.structure.hyper_layer.HyperStructureLayer` with mHC), possibly
            sharing weights.
        c_p: channels of the pair representation (its layer norm).
        n_blocks: passes over the layers.
        expansion_rate: mHC residual streams (the single representation is expanded to them
            before the first layer); None without mHC.
        factor_transitions: one transition per gap between consecutive layers that updates the
            pair factors U and V (FlashIPA models), or None.
        checkpointing: sees the layer applications in execution order: pass p (of
            ``n_blocks``) applies layer i as index ``p · n_layers + i``.
    """

    def __init__(
        self,
        *,
        layers: nn.ModuleList | SharedLayers,
        c_p: int,
        n_blocks: int = 1,
        expansion_rate: int | None = None,
        factor_transitions: nn.ModuleList | SharedLayers | None = None,
        checkpointing: LayerCheckpointing | None = None,
    ):
        super().__init__()
        if factor_transitions is not None and len(factor_transitions) != len(layers) - 1:
            raise ValueError(
                f"{len(factor_transitions)} factor transitions for {len(layers)} layers: need one "
                "per gap between consecutive layers"
            )
        self.n_blocks = n_blocks
        self.checkpointing = checkpointing or LayerCheckpointing()
        self.factor_transitions = factor_transitions
        self.pair_norm = nn.LayerNorm(c_p)
        self.expansion_rate = expansion_rate
        self.layers = layers

    def forward(
        self,
        s: torch.Tensor,
        pair: PairRepresentation,
        frames: Rigid,
        mask: torch.Tensor,
    ) -> Rigid:
        """
        Args:
            s: ``[b, n, c_s]``; pair: dense ``[b, n, n, c_p]``, factors ``[b, n, r, c_p]`` or
            sparse edges with pooled factors; frames: ``[b, n]`` in Å; mask: ``[b, n]``.

        Returns:
            predicted frames ``[b, n]`` with translations in Å.
        """
        pair = pair.normalized(self.pair_norm)
        frames = frames.scale_translation(NM_PER_ANGSTROM)
        if self.expansion_rate is not None:
            s = expand_streams(s, self.expansion_rate)  # [b, n, streams, c_s]
        n, depth = mask.shape[1], len(self.layers)
        for block in range(self.n_blocks):
            for i, layer in enumerate(self.layers):
                s, frames = self.checkpointing.run(
                    "structure", block * depth + i, n, layer, s, pair, frames, mask
                )
                if self.factor_transitions is not None and i < len(self.factor_transitions):
                    pair = self._update_factors(self.factor_transitions[i], pair, mask)
        return frames.scale_translation(1.0 / NM_PER_ANGSTROM)

    @staticmethod
    def _update_factors(transition: Transition, pair: PairRepresentation, mask):
        """``U ← U + T(U)``, ``V ← V + T(V)`` per factor (``[b, n, r, c_f]``) of a factorised or
        sparse pair representation (whose pooled factors are updated)."""
        f = pair.factors
        factor_mask = mask[:, :, None].expand(-1, -1, f.rank)
        return pair.with_factors(PairFactors(f.u + transition(f.u, factor_mask),
                                             f.v + transition(f.v, factor_mask)))  # fmt: skip
