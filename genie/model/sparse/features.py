"""Sparse k-NN pair features (stages 3 V2, 4): edges of the noisy trace's neighbour graph, and the
per-residue factors FlashIPA reads, pooled from the edges.

Notation: b batch, n residues, k neighbours, c_s single channels, c_p edge channels, r factor
rank, c_f factor channels.

For each edge i → j (j one of i's k neighbours):

    e_ij = W_i s_i + W_j s_j + E_sep[clip(r_j − r_i, ±R)] + E_dist[bin(‖x_j − x_i‖)]

with R = ``relpos_k`` (AF2's relpos, Jumper et al. 2021 Alg. 4, one class per clipped offset) and
the Cα distance of the noisy trace in bins of 1 Å from 0 to ``max_distance`` (last bin open).
Only residue-index offsets and distances enter: invariant to rotations and translations.

Pooling (``EdgePooling``): p_i = mean_j LN(e_ij) over i's valid edges; s_i ← s_i + W_p p_i; the
factors are U_i = W_U s_i + rel_U, V_i = W_V s_i + rel_V, with the exact sin/cos relative-position
factors of :func:`~genie.model.factor.features.relative_position_factors`, so FlashIPA sees the
sequence separation at every range and the local geometry through the pooled edges.

Under sequence parallelism (:mod:`genie.model.layout`) s, the coordinates and the edges hold this
process's residues (and their out-edges); the neighbours' W_j s_j and coordinates are gathered.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.graph import KnnGraph
from genie.geometry.knn import gather_neighbors
from genie.model.factor.features import relative_position_factors
from genie.model.layers.primitives import Linear
from genie.model.layout import SequenceParallel
from genie.model.representations import PairFactors


class EdgeFeatureNet(SequenceParallel, nn.Module):
    def __init__(
        self, *, c_s: int, c_p: int, relpos_k: int = 32, num_bins: int = 24,
        max_distance: float = 23.0,
    ):  # fmt: skip
        super().__init__()
        self.relpos_k = relpos_k
        self.linear_i = Linear(c_s, c_p)
        self.linear_j = Linear(c_s, c_p, bias=False)
        self.separation = nn.Embedding(2 * relpos_k + 1, c_p)
        self.register_buffer(
            "bin_edges", torch.linspace(0.0, max_distance, num_bins)[1:], persistent=False
        )  # [num_bins − 1] Å, upper edges of the closed bins
        self.distance = nn.Embedding(num_bins, c_p)

    def forward(self, s: torch.Tensor, coords: torch.Tensor, graph: KnnGraph) -> torch.Tensor:
        """
        Args:
            s: ``[b, n, c_s]`` single features.
            coords: ``[b, n, 3]`` noisy Cα coordinates, Å.
            graph: the k-NN graph, with ``offsets [b, n, k]`` = r_j − r_i.

        Returns:
            ``[b, n, k, c_p]`` edge features, zero at invalid edges.
        """
        layout = self.sequence_layout
        own = layout.own(graph.n)
        index = graph.index[:, own]  # [b, n, k] neighbours of own residues
        e = self.linear_i(s)[:, :, None] + gather_neighbors(layout.gather(self.linear_j(s)), index)
        sep = graph.offsets[:, own].clamp(-self.relpos_k, self.relpos_k) + self.relpos_k
        x = coords.float()
        dist = torch.linalg.vector_norm(
            gather_neighbors(layout.gather(x), index) - x[:, :, None], dim=-1
        )  # [b, n, k] Å
        dist_bin = torch.bucketize(dist.detach(), self.bin_edges, right=True)
        e = e + self.separation(sep) + self.distance(dist_bin)
        return e * graph.valid[:, own, :, None].to(e.dtype)


class EdgePooling(SequenceParallel, nn.Module):
    """Edges -> single update and the pair factors FlashIPA attends through (module doc)."""

    def __init__(self, *, c_s: int, c_p: int, c_f: int, rank: int):
        super().__init__()
        self.rank, self.c_f = rank, c_f
        self.norm = nn.LayerNorm(c_p)
        self.to_single = Linear(c_p, c_s)
        self.proj_u = Linear(c_s, rank * c_f)
        self.proj_v = Linear(c_s, rank * c_f)
        self.relpos_scale = nn.Parameter(torch.ones(rank, c_f))

    def forward(
        self,
        s: torch.Tensor,
        edges: torch.Tensor,
        graph: KnnGraph,
        residue_index: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, PairFactors]:
        """
        Args:
            s: ``[b, n, c_s]``; edges: ``[b, n, k, c_p]``; graph: the k-NN graph;
            residue_index: ``[b, n]``; mask: ``[b, n]``.

        Returns:
            updated s ``[b, n, c_s]`` and factors ``U, V [b, n, r, c_f]`` (zero at padding).
        """
        b, n, _ = s.shape
        weight = graph.valid[:, self.sequence_layout.own(graph.n), :, None].to(edges.dtype)
        pooled = (self.norm(edges) * weight).sum(2) / weight.sum(2).clamp(min=1.0)  # [b, n, c_p]
        s = s + self.to_single(pooled) * mask[..., None].to(s.dtype)
        rel_u, rel_v = relative_position_factors(residue_index, self.rank, self.c_f)
        u = self.proj_u(s).view(b, n, self.rank, self.c_f) + rel_u.to(s.dtype) * self.relpos_scale
        v = self.proj_v(s).view(b, n, self.rank, self.c_f) + rel_v.to(s.dtype)
        return s, PairFactors(u, v).masked(mask)
