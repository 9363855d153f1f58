"""Structure stack: structure layers over frames built from the noisy trace.

Frames start from the noisy trace's Frenet–Serret frames. Inside the stack translations are in
nm (Å / 10, as AF2's structure module) to keep point distances of order one; the returned
frames are in Å again. The layers are Genie's post-LN layers, or, with mHC, pre-LN layers whose
residual branches run through manifold-constrained hyper-connections. Layers (and the factor
transitions between them) may share weights (:mod:`genie.model.sharing`) and run under layer
checkpointing (:mod:`genie.utils.checkpointing`, kind ``"structure"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from genie.geometry.rigid import Rigid
from genie.model.hyper_connections import expand_streams
from genie.model.hyper_structure import HyperStructureLayer
from genie.model.pair_representation import PairFactors, PairRepresentation
from genie.model.sharing import NO_SHARING, LayerSharing
from genie.model.structure import NM_PER_ANGSTROM, StructureLayer
from genie.model.transition import Transition
from genie.utils.checkpointing import LayerCheckpointing


class StructureNet(nn.Module):
    """A stack of structure layers acting on frames built from the noisy trace, applied
    ``n_blocks`` times with the same weights (Genie's ``numStructureBlocks``).

    ``make_ipa()`` builds each layer's attention module. With ``factor_transition_n`` (pair
    factors only) a transition updates U and V between consecutive layers. With ``mhc`` (keyword
    arguments of :class:`~genie.model.hyper_structure.HyperStructureLayer`: expansion_rate,
    sinkhorn_iters,
    alpha_init) the layers are pre-LN and their residual branches run through mHC
    hyper-connections on ``expansion_rate`` streams (expanded before the first layer).

    ``sharing`` shares weights among the layers, and with the same grouping among the factor
    transitions. ``checkpointing`` sees the layer applications in execution order: pass p
    (of ``n_blocks``) applies layer i as index ``p · n_layers + i``.
    """

    def __init__(
        self,
        *,
        c_p: int,
        n_layers: int,
        n_blocks: int = 1,
        make_ipa: Callable[[], nn.Module],
        mhc: dict | None = None,
        factor_transition_n: int | None = None,
        checkpointing: LayerCheckpointing | None = None,
        sharing: LayerSharing = NO_SHARING,
        **layer_kwargs,
    ):
        super().__init__()
        self.n_blocks = n_blocks
        self.checkpointing = checkpointing or LayerCheckpointing()
        # FlashIPA configs: a transition updates the pair factors between structure layers.
        self.factor_transitions = None
        if factor_transition_n:
            self.factor_transitions = sharing.layers(
                lambda i: Transition(c=c_p, expansion=factor_transition_n), n_layers - 1
            )
        self.pair_norm = nn.LayerNorm(c_p)
        self.expansion_rate = mhc["expansion_rate"] if mhc else None
        if mhc:
            self.layers = sharing.layers(
                lambda i: HyperStructureLayer(ipa=make_ipa(), layer_index=i, **mhc, **layer_kwargs),
                n_layers,
            )
        else:
            self.layers = sharing.layers(
                lambda i: StructureLayer(ipa=make_ipa(), **layer_kwargs), n_layers
            )

    def forward(
        self,
        s: torch.Tensor,
        pair: PairRepresentation,
        frames: Rigid,
        mask: torch.Tensor,
        *,
        chunk_size: int | None = None,
    ) -> Rigid:
        """
        Args:
            s: ``[b, n, c_s]``; pair: dense ``[b, n, n, c_p]`` or factors ``[b, n, r, c_p]``;
            frames: ``[b, n]`` in Å; mask: ``[b, n]``.

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
                    "structure", block * depth + i, n, layer, s, pair, frames, mask,
                    chunk_size=chunk_size,
                )  # fmt: skip
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
