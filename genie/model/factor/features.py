"""Factorised pair features (stage 1): U, V ``[b, n, r, c_f]`` built per residue.

Notation: b batch, n residues, r factor rank, c_f factor channels, d sequence offsets.

z_ij = Σ_r U_ir ⊙ V_jr is produced without any n×n work from three per-residue sources:

- single features s_i (learned projections, a rank-r bilinear form per channel);
- relative position: paired sin/cos encodings, cos ω(i−j) = cos ωi cos ωj + sin ωi sin ωj, so
  the product of the factors depends on i − j exactly (components 2k, 2k+1 share a frequency);
- local geometry of the noisy trace: the Cα distances from i to i ± d for a fixed set of
  offsets d (a vectorised shift, O(n·d)), and optionally (FlashIPA configs, ``kNeighbors``) a
  summary of each residue's k nearest neighbours in space (:mod:`genie.model.factor.environment`
  on the model's k-NN graph). Both are invariant to rotations and translations.

DISCREPANCY (deliberate): DESIGN §3 suggests random Fourier features cos ω·(x_i − x_j) of the
coordinates. They factorise, but for a fixed ω they change when the structure rotates, which
would break the SE(3) invariance of the model. Pairwise geometry beyond the local window reaches
the model through IPA's point attention instead (and, with FlashIPA, k-NN features).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from genie.geometry.graph import KnnGraph
from genie.model.factor.environment import KnnEnvironmentFeatures
from genie.model.layers.primitives import Linear
from genie.model.layout import SequenceParallel
from genie.model.representations import PairFactors

LOCAL_OFFSETS = (1, 2, 3, 4, 6, 8, 12, 16)  # residues; distances to i − d and i + d
DISTANCE_SCALE = 0.1  # Å -> nm for the distance features


def local_distance_features(coords: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cα distances to sequence neighbours, ``[b, n, 2·len(LOCAL_OFFSETS) · 2]``.

    Args:
        coords: ``[b, n, 3]`` Å.
        mask: ``[b, n]``.

    Returns:
        for every offset ±d: the distance (nm, 0 where the neighbour is missing) and a 0/1 flag
        that the neighbour exists.
    """
    feats = []
    for d in LOCAL_OFFSETS:
        for shift in (d, -d):
            other = torch.roll(coords, shifts=-shift, dims=1)  # other[i] = coords[i + shift]
            valid = torch.roll(mask, shifts=-shift, dims=1) * mask
            idx = torch.arange(coords.shape[1], device=coords.device) + shift
            valid = valid * ((idx >= 0) & (idx < coords.shape[1]))  # no wrap-around
            dist = torch.sqrt(((other - coords) ** 2).sum(-1) + 1e-8) * DISTANCE_SCALE
            feats += [dist * valid, valid]
    return torch.stack(feats, dim=-1)


def relative_position_factors(
    residue_index: torch.Tensor, rank: int, channels: int, *, max_period: float = 32768.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paired sin/cos factors whose product is Σ_k cos(ω_{k,c} (i − j)) ``[b, n, r, c]``.

    Components 2k and 2k+1 hold cos and sin of the same frequency; an odd last component is 0.
    Frequencies are geometric between 1 and 2π / max_period over all (k, c).
    """
    pairs = rank // 2
    b, n = residue_index.shape
    u = residue_index.new_zeros(b, n, rank, channels, dtype=torch.float32)
    if pairs == 0:
        return u, u.clone()
    exponent = torch.arange(pairs * channels, device=residue_index.device) / (pairs * channels)
    omega = (2 * math.pi / max_period) ** exponent  # [pairs·c], from 1 down to 2π/max_period
    angles = residue_index.float()[..., None] * omega  # [b, n, pairs·c]
    angles = angles.view(b, n, pairs, channels)
    trig = torch.stack([torch.cos(angles), torch.sin(angles)], dim=3)  # [b, n, pairs, 2, c]
    u[:, :, : 2 * pairs] = trig.flatten(2, 3)
    return u, u.clone()


class PairFactorNet(SequenceParallel, nn.Module):
    """Single features, residue index and noisy trace -> pair factors ``U, V [b, n, r, c_f]``."""

    def __init__(self, *, c_s: int, c_f: int, rank: int, knn: KnnEnvironmentFeatures | None = None):
        super().__init__()
        self.rank, self.c_f = rank, c_f
        self.knn = knn  # k-NN environment features [b, n, c_s] (useKnnEnvironmentFeatures), or None
        n_local = 4 * len(LOCAL_OFFSETS)
        self.local = Linear(n_local, c_s)
        self.proj_u = Linear(c_s, rank * c_f)
        self.proj_v = Linear(c_s, rank * c_f)
        self.relpos_scale = nn.Parameter(torch.ones(rank, c_f))  # weight of the exact i − j term

    def forward(
        self,
        s: torch.Tensor,
        coords: torch.Tensor,
        residue_index: torch.Tensor,
        mask: torch.Tensor,
        *,
        graph: KnnGraph | None = None,
    ) -> tuple[torch.Tensor, PairFactors]:
        """
        Args:
            s: ``[b, n, c_s]`` single features.
            coords: ``[b, n, 3]`` noisy Cα coordinates, Å.
            residue_index: ``[b, n]``.
            mask: ``[b, n]``.
            graph: the model's k-NN graph (needed with, and only with, environment features).

        Returns:
            s with the local-geometry embedding added ``[b, n, c_s]``, and the pair factors.
        """
        b, n, _ = s.shape
        layout = self.sequence_layout  # the distances to i ± d cross shard boundaries
        local = layout.local(local_distance_features(layout.gather(coords), layout.gather(mask)))
        s = s + self.local(local.to(s.dtype)) * mask[..., None]
        if (graph is None) != (self.knn is None):
            raise ValueError(
                "PairFactorNet: give a k-NN graph exactly when it has environment features"
            )
        if self.knn is not None:
            s = s + self.knn(coords, mask, graph).to(s.dtype)
        rel_u, rel_v = relative_position_factors(residue_index, self.rank, self.c_f)
        u = self.proj_u(s).view(b, n, self.rank, self.c_f) + rel_u.to(s.dtype) * self.relpos_scale
        v = self.proj_v(s).view(b, n, self.rank, self.c_f) + rel_v.to(s.dtype)
        return s, PairFactors(u, v).masked(mask)
