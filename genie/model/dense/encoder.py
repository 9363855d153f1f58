"""Dense pair encoder (Genie): pair features ``z [b, n, n, c_p]``, then the pair stack."""

from __future__ import annotations

import torch
from torch import nn

from genie.geometry.graph import KnnGraph
from genie.model.dense.features import PairFeatureNet
from genie.model.layers.primitives import pair_mask
from genie.model.representations import DensePair
from genie.model.stack import PairStack


class DensePairEncoder(nn.Module):
    """A :class:`~genie.model.protocols.PairEncoder` without a graph."""

    uses_graph = False

    def __init__(self, *, features: PairFeatureNet, stack: PairStack):
        super().__init__()
        self.features, self.stack = features, stack

    def build_graph(
        self, coords: torch.Tensor, mask: torch.Tensor, residue_index: torch.Tensor
    ) -> None:
        """Dense pairs need no graph."""
        return None

    def forward(
        self,
        s: torch.Tensor,
        x: torch.Tensor,
        residue_index: torch.Tensor,
        mask: torch.Tensor,
        *,
        graph: KnnGraph | None = None,
    ) -> tuple[torch.Tensor, DensePair]:
        """See :class:`~genie.model.protocols.PairEncoder`; ``graph`` must be None."""
        if graph is not None:
            raise ValueError("a dense pair encoder takes no k-NN graph (build_graph returns None)")
        z = self.features(s, x, residue_index, mask)  # [b, n, n, c_p]
        z = self.stack(z, pair_mask(mask), n=x.shape[1])
        return s, DensePair(z)
