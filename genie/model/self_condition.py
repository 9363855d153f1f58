"""Self-conditioning features (``selfConditioning``; Chen, Zhang & Hinton 2022, "Analog Bits",
§3.2): the previous prediction x̂_0 of the chain, fed back as pair features.

Notation: b batch, n residues, k edge slots, c channels. Coordinates in Å.

Only distances of x̂_0 enter (invariant to rotations and translations, like every other feature
of the denoiser): binned Cα distances ‖x̂_0,j − x̂_0,i‖ for dense pairs (all pairs) and sparse
edges (the graph's edges), and the distances to the sequence neighbours i ± d of
:func:`~genie.model.factor.features.local_distance_features` for factorised pairs, which have no
pair tensor to add to (their factors are projections of the single features, so the feature
goes there). When there is no previous x̂_0 (the first reverse step; training steps without
self-conditioning) a learned "absent" value is used instead.

Every weight starts at zero and is made without drawing random numbers: a model with
self-conditioning computes, before training, exactly what the same seed gives without it, and
the other weights are those of that model (tests/model/test_self_condition.py).
"""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.graph import KnnGraph
from genie.geometry.knn import gather_neighbors
from genie.model.factor.features import LOCAL_OFFSETS, local_distance_features

DISTANCE_BIN_EDGES = (2.0, 22.0)  # Å: upper edges of the closed bins span this range
NUM_DISTANCE_BINS = 16  # the last bin is open above the range


class _BinnedDistances(nn.Module):
    """A zero-initialised embedding of binned distances, with one more class for "absent"."""

    def __init__(self, c: int):
        super().__init__()
        self.register_buffer(
            "bin_edges", torch.linspace(*DISTANCE_BIN_EDGES, NUM_DISTANCE_BINS - 1),
            persistent=False,
        )  # fmt: skip
        self.absent = NUM_DISTANCE_BINS  # the class of "no previous x̂0"
        self.embedding = nn.Embedding(
            NUM_DISTANCE_BINS + 1, c, _weight=torch.zeros(NUM_DISTANCE_BINS + 1, c)
        )

    def embed(self, dist: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
        """``dist`` Å of any shape -> ``[*shape, c]``; None -> the absent row, broadcast."""
        if dist is None:
            return self.embedding.weight[self.absent].expand(*shape, -1)
        return self.embedding(torch.bucketize(dist.detach(), self.bin_edges))


class DenseSelfCondition(_BinnedDistances):
    """x̂_0 -> dense pair features ``[b, n, n, c_p]``, to add to Genie's pair features."""

    def forward(self, x0: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x0: ``[b, n, 3]`` the previous x̂_0 (Å), or None when there is none.
            mask: ``[b, n]`` real residues.

        Returns:
            ``[b, n, n, c_p]``, zero where either residue is padding.
        """
        b, n = mask.shape
        dist = None if x0 is None else torch.cdist(x0.float(), x0.float())  # [b, n, n]
        pairs = (mask[:, :, None] * mask[:, None, :]).to(self.embedding.weight.dtype)
        return self.embed(dist, (b, n, n)) * pairs[..., None]


class EdgeSelfCondition(_BinnedDistances):
    """x̂_0 -> sparse edge features ``[b, n, k, c_p]`` on the model's graph."""

    def forward(self, x0: torch.Tensor | None, graph: KnnGraph) -> torch.Tensor:
        """
        Args:
            x0: ``[b, n, 3]`` the previous x̂_0 (Å), or None.
            graph: the k-NN graph of the edges.

        Returns:
            ``[b, n, k, c_p]``, zero at invalid edges.
        """
        dist = None
        if x0 is not None:
            x = x0.float()
            ends = gather_neighbors(x, graph.index)  # [b, n, k, 3]
            dist = torch.linalg.vector_norm(ends - x[:, :, None], dim=-1)  # [b, n, k]
        valid = graph.valid[..., None].to(self.embedding.weight.dtype)
        return self.embed(dist, tuple(graph.index.shape)) * valid


class LocalSelfCondition(nn.Module):
    """x̂_0 -> single features ``[b, n, c_s]`` from its distances to sequence neighbours
    (factorised pairs: the factors are built from the single features)."""

    def __init__(self, c_s: int):
        super().__init__()
        n_in = 4 * len(LOCAL_OFFSETS) + 1  # distance and presence per ±d, and "absent"
        self.weight = nn.Parameter(torch.zeros(c_s, n_in))

    def forward(self, x0: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x0: ``[b, n, 3]`` the previous x̂_0 (Å), or None.
            mask: ``[b, n]`` real residues.

        Returns:
            ``[b, n, c_s]``, zero at padding.
        """
        b, n = mask.shape
        n_local = self.weight.shape[1] - 1
        if x0 is None:
            feats = mask.new_zeros(b, n, n_local + 1, dtype=self.weight.dtype)
            feats[..., -1] = 1.0
        else:
            local = local_distance_features(x0.float(), mask.float()).to(self.weight.dtype)
            feats = torch.cat([local, local.new_zeros(b, n, 1)], dim=-1)
        return (feats @ self.weight.T) * mask[..., None].to(self.weight.dtype)
