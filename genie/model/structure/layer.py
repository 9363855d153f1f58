"""Structure layer (Genie's StructureNet layer; AF2 Alg. 20 lines 6-10 without side chains).

Each layer: s ← LN(s + Dropout(IPA(s, z, T))); s ← LN(s + Dropout(Transition(s)));
T ← T ∘ BackboneUpdate(s). Translations are in nm inside the stack (see structure_stack.py).
"""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.rigid import Rigid, quaternion_to_rotation
from genie.model.layers.primitives import Dropout, Linear
from genie.model.protocols import StructureAttention
from genie.model.representations import PairRepresentation

NM_PER_ANGSTROM = 0.1


def transition_block(c_s: int) -> nn.Sequential:
    """One residual MLP block of the structure transition: Linear-ReLU-Linear-ReLU-Linear, the
    last zero-initialised (the block starts as the identity of its residual)."""
    return nn.Sequential(
        Linear(c_s, c_s, init="relu"), nn.ReLU(),
        Linear(c_s, c_s, init="relu"), nn.ReLU(),
        Linear(c_s, c_s, init="final"),
    )  # fmt: skip


class StructureTransition(nn.Module):
    """AF2 Alg. 20 lines 8-9: residual MLP blocks (Linear-ReLU-Linear-ReLU-Linear) + LN."""

    def __init__(self, *, c_s: int, n_layers: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(transition_block(c_s) for _ in range(n_layers))
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(c_s)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """``[b, n, c_s]`` -> ``[b, n, c_s]``."""
        for block in self.blocks:
            s = s + block(s)
        return self.norm(self.dropout(s))


class BackboneUpdate(nn.Module):
    """AF2 Alg. 23: a quaternion (1, b, c, d) and a translation (nm) per residue, in its frame."""

    def __init__(self, *, c_s: int):
        super().__init__()
        self.linear = Linear(c_s, 6, init="final")

    def forward(self, s: torch.Tensor) -> Rigid:
        """``[b, n, c_s]`` -> frame updates ``[b, n]``."""
        bcd, trans = self.linear(s).float().split(3, dim=-1)  # frames stay fp32
        quat = torch.cat([torch.ones_like(bcd[..., :1]), bcd], dim=-1)
        return Rigid(quaternion_to_rotation(quat), trans)


class StructureLayer(nn.Module):
    """Genie's (post-LN) structure layer around an attention module ``ipa`` (dense IPA or
    FlashIPA: a :class:`~genie.model.protocols.StructureAttention`)."""

    def __init__(
        self,
        *,
        ipa: StructureAttention,
        c_s: int,
        ipa_dropout: float,
        n_transition_layers: int,
        transition_dropout: float,
    ):
        super().__init__()
        self.ipa = ipa
        self.ipa_dropout = Dropout(ipa_dropout)
        self.ipa_norm = nn.LayerNorm(c_s)
        self.transition = StructureTransition(
            c_s=c_s, n_layers=n_transition_layers, dropout=transition_dropout
        )
        self.backbone_update = BackboneUpdate(c_s=c_s)

    def forward(
        self,
        s: torch.Tensor,
        pair: PairRepresentation,
        frames: Rigid,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, Rigid]:
        """
        Args:
            s: ``[b, n, c_s]``; pair: dense or factorised pair representation; frames: ``[b, n]``
            (nm); mask: ``[b, n]``.

        Returns:
            updated s ``[b, n, c_s]`` and frames ``[b, n]`` (nm; padding entries are meaningless).
        """
        s = self.ipa_norm(s + self.ipa_dropout(self.ipa(s, pair, frames, mask)))
        s = self.transition(s)
        update = self.backbone_update(s * mask[..., None])
        return s, frames.compose(update)
