"""Dense pair features of the denoiser (Genie §3.2): ``[b, n, n, c_p]`` from single features and
the noisy trace.

Notation: b batch, n residues, c_s single channels, c_p pair channels. Coordinates in Å.
"""

from __future__ import annotations

import torch
from torch import nn

from genie.model.layers.primitives import Linear
from genie.utils.checkpointing import recompute

DISTANCE_BIN_EDGES = (2.0, 20.0)  # Å; binned template feature (DESIGN §2)


class PairFeatureNet(nn.Module):
    """Dense pair features ``[b, n, n, c_p]``: outer sum of single projections, relative
    position (AF2 Alg. 4, clipped at ±k) and distances of the noisy trace.

    ``template_type``: ``v1`` is Genie's raw Cα distance through a linear map; ``binned`` a one-hot
    of ``n_distance_bins`` bins over 2-20 Å (DISCREPANCY: DESIGN §2 measured it to work better).
    One-hot features are applied as embedding look-ups (the same function as one-hot + linear,
    without the one-hot tensor). The whole computation is recomputed in backward, so only the
    output is stored.
    """

    def __init__(
        self, *, c_s: int, c_p: int, relpos_k: int, template_type: str, n_distance_bins: int = 16
    ):
        super().__init__()
        self.relpos_k = relpos_k
        self.template_type = template_type
        self.linear_i = Linear(c_s, c_p)
        self.linear_j = Linear(c_s, c_p, bias=False)
        self.relpos = nn.Embedding(2 * relpos_k + 1, c_p)
        if template_type == "binned":
            self.register_buffer(
                "bin_edges",
                torch.linspace(*DISTANCE_BIN_EDGES, n_distance_bins - 1),
                persistent=False,
            )
            self.distance = nn.Embedding(n_distance_bins, c_p)
        elif template_type == "v1":
            self.distance = Linear(1, c_p)
        else:
            raise ValueError(f"unknown template_type '{template_type}' (v1, binned)")

    def _features(self, s, coords, residue_index, mask):
        z = self.linear_i(s)[:, :, None, :] + self.linear_j(s)[:, None, :, :]  # [b, n, n, c_p]
        offset = residue_index[:, None, :] - residue_index[:, :, None]  # [b, n, n], j − i
        z = z + self.relpos(offset.clamp(-self.relpos_k, self.relpos_k) + self.relpos_k)
        dist = torch.cdist(coords, coords)  # [b, n, n] Å
        if self.template_type == "binned":
            z = z + self.distance(torch.bucketize(dist, self.bin_edges))
        else:
            z = z + self.distance(dist[..., None])
        return z * (mask[:, :, None] * mask[:, None, :])[..., None]

    def forward(
        self,
        s: torch.Tensor,
        coords: torch.Tensor,
        residue_index: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """
        Args:
            s: ``[b, n, c_s]`` single features.
            coords: ``[b, n, 3]`` noisy Cα coordinates, Å.
            residue_index: ``[b, n]`` residue positions.
            mask: ``[b, n]``.

        Returns:
            ``[b, n, n, c_p]`` pair features (zero where either residue is padding).
        """
        return recompute(self._features, s, coords, residue_index, mask)
