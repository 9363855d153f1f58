"""Dense pair encoder (Genie): pair features ``z [b, n, n, c_p]``, then the pair stack."""

from __future__ import annotations

from torch import Tensor

from genie.model.dense.features import PairFeatureNet
from genie.model.encoder import PairEncoder
from genie.model.layers.primitives import pair_mask
from genie.model.representations import DensePair
from genie.model.self_condition import DenseSelfCondition
from genie.model.stack import PairStack


class DensePairEncoder(PairEncoder):
    """A :class:`~genie.model.encoder.PairEncoder` without a graph; with ``self_condition``
    (``selfConditioning``) the previous x̂_0's distances are added to the pair features."""

    def __init__(
        self, *, features: PairFeatureNet, stack: PairStack,
        self_condition: DenseSelfCondition | None = None,
    ):  # fmt: skip
        super().__init__(graph=None, self_condition=self_condition)
        self.features, self.stack = features, stack

    def encode(self, s: Tensor, x: Tensor, residue_index: Tensor, mask: Tensor, graph: None,
               self_condition: Tensor | None) -> tuple[Tensor, DensePair]:  # fmt: skip
        z = self.features(s, x, residue_index, mask)  # [b, n, n, c_p]
        if self.self_conditioning:
            z = z + self.sc_features(self_condition, mask).to(z.dtype)
        z = self.stack(z, pair_mask(mask), n=x.shape[1])
        return s, DensePair(z)
