"""Structure layer with mHC hyper-connections (DESIGN §5; Xie et al. 2025).

Notation: b batch, n residues, s streams (``mhcExpansionRate``), c_s single channels.

The single representation runs as s streams ``x [b, n, s, c_s]``. The layer's two residual
branches — IPA (dense or FlashIPA) and the transition — are pre-LN and wrapped in
:class:`~genie.model.structure.hyper_connections.HyperConnection`:

    x ← H_res x + H_postᵀ Dropout(IPA(LN(H_pre x), pair, T))
    x ← H_res x + H_postᵀ Dropout(MLP(LN(H_pre x)))
    T ← T ∘ BackboneUpdate(LN(mean_s x))

Frames are not part of the streams. DISCREPANCY: Genie's layer is post-LN; mHC needs pre-LN
branches, so with ``mhcExpansionRate 1`` this layer is the plain pre-LN residual layer (exactly),
not Genie's post-LN one.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.rigid import Rigid
from genie.model.layers.primitives import Dropout
from genie.model.protocols import StructureAttention
from genie.model.representations import PairRepresentation
from genie.model.structure.hyper_connections import (
    HyperConnection,
    HyperConnectionOptions,
    contract_streams,
)
from genie.model.structure.layer import BackboneUpdate, transition_block


class HyperStructureLayer(nn.Module):
    def __init__(
        self,
        *,
        ipa: StructureAttention,
        c_s: int,
        ipa_dropout: float,
        n_transition_layers: int,
        transition_dropout: float,
        hyper: HyperConnectionOptions,
        layer_index: int,
    ):
        super().__init__()
        hc = dict(c=c_s, expansion_rate=hyper.expansion_rate, sinkhorn_iters=hyper.sinkhorn_iters,
                  alpha_init=hyper.alpha_init)  # fmt: skip
        self.ipa = ipa
        self.ipa_norm = nn.LayerNorm(c_s)
        self.ipa_dropout = Dropout(ipa_dropout)
        self.hc_ipa = HyperConnection(**hc, branch_index=2 * layer_index)
        self.transition_norm = nn.LayerNorm(c_s)
        self.transition_blocks = nn.ModuleList(
            transition_block(c_s) for _ in range(n_transition_layers)
        )
        self.transition_dropout = Dropout(transition_dropout)
        self.hc_transition = HyperConnection(**hc, branch_index=2 * layer_index + 1)
        self.readout_norm = nn.LayerNorm(c_s)
        self.backbone_update = BackboneUpdate(c_s=c_s)

    def _transition(self, h: torch.Tensor) -> torch.Tensor:
        """Pre-LN transition branch ``[b, n, c_s] -> [b, n, c_s]`` (its blocks chained with
        inner residuals, as in Genie's transition)."""
        t = self.transition_norm(h)
        update = torch.zeros_like(t)
        for block in self.transition_blocks:
            delta = block(t)
            t, update = t + delta, update + delta
        return self.transition_dropout(update)

    def forward(
        self,
        x: torch.Tensor,
        pair: PairRepresentation,
        frames: Rigid,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, Rigid]:
        """
        Args:
            x: ``[b, n, s, c_s]`` streams; pair: dense or factorised pairs; frames: ``[b, n]``
            (nm); mask: ``[b, n]``.

        Returns:
            updated streams ``[b, n, s, c_s]`` and frames ``[b, n]`` (nm).
        """

        def ipa_branch(h: torch.Tensor) -> torch.Tensor:
            out = self.ipa(self.ipa_norm(h), pair, frames, mask)
            return self.ipa_dropout(out)

        x = self.hc_ipa(x, ipa_branch)
        x = self.hc_transition(x, self._transition)
        s = self.readout_norm(contract_streams(x))  # [b, n, c_s]
        update = self.backbone_update(s * mask[..., None])
        return x, frames.compose(update)
