"""k-NN environment features (``useKnnEnvironmentFeatures``, factorised pairs): a per-residue
summary of its neighbours in the noisy trace, added to the single features before the factors
are built.

Notation: b batch, n residues, k neighbours, c channels.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.graph import KnnGraph
from genie.geometry.knn import gather_neighbors
from genie.model.layers.primitives import Linear
from genie.model.layout import SequenceParallel


class KnnEnvironmentFeatures(SequenceParallel, nn.Module):
    """Per-residue summary of its k nearest Cα neighbours in the current noisy trace.

    For each neighbour j of i in the model's k-NN graph (``knnStrategy``): the binned distance
    ‖x_j − x_i‖ (``num_bins`` bins of width ``max_distance / (num_bins − 1)`` from 0 Å, the last
    bin open above ``max_distance``) and the clipped offset j − i of the residue index (AF2
    relpos one-hot, Jumper et al. 2021 Alg. 4: 2·max_offset + 1 classes) are embedded and
    summed, passed through a ReLU (so distance and offset interact, unlike a pair of
    histograms), mean-pooled over the valid neighbours and projected to ``c_out``. Only
    distances and index offsets enter, so the
    output is invariant to rotations and translations by construction.
    """

    def __init__(
        self,
        *,
        c_out: int,
        num_bins: int = 16,
        max_distance: float = 20.0,
        max_offset: int = 32,
    ):
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.max_offset = max_offset
        self.register_buffer(
            "bin_edges", torch.linspace(0.0, max_distance, num_bins)[1:], persistent=False
        )  # [num_bins − 1] Å: upper edges of the closed bins
        self.distance_embedding = nn.Embedding(num_bins, c_out)
        self.offset_embedding = nn.Embedding(2 * max_offset + 1, c_out)
        self.out = Linear(c_out, c_out, init="relu")

    def forward(self, coords: torch.Tensor, mask: torch.Tensor, graph: KnnGraph) -> torch.Tensor:
        """
        Args:
            coords: ``[b, n, 3]`` noisy Cα coordinates, Å.
            mask: ``[b, n]`` real residues.
            graph: the model's k-NN graph of the trace (its ``offsets`` r_j − r_i are the
                residue-index offsets).

        Returns:
            ``[b, n, c_out]``, zero at padded residues.
        """
        layout, own = self.sequence_layout, self.sequence_layout.own(graph.n)
        x = torch.where(mask.bool()[..., None], coords.float(), 0.0)  # [b, n, 3]
        neighbours = gather_neighbors(layout.gather(x), graph.index[:, own])  # [b, n, k, 3]
        dist = torch.linalg.vector_norm(neighbours - x[:, :, None], dim=-1)  # [b, n, k] Å
        dist_bin = torch.bucketize(dist.detach(), self.bin_edges, right=True)  # [b, n, k]
        offset = graph.offsets[:, own].clamp(-self.max_offset, self.max_offset) + self.max_offset
        h = torch.relu(self.distance_embedding(dist_bin) + self.offset_embedding(offset.long()))
        weight = graph.valid[:, own].to(h.dtype)[..., None]  # [b, n, k, 1]
        pooled = (h * weight).sum(2) / weight.sum(2).clamp(min=1.0)  # [b, n, c]
        return self.out(pooled) * mask[..., None].to(pooled.dtype)
