"""The pair stack: one class for the dense, factorised and sparse representations.

A stack applies its layers in order, each a map ``(pair, context) -> pair`` of one representation
(:class:`~genie.model.protocols.PairLayer`):

* dense (:mod:`genie.model.dense.layer`): ``z [b, n, n, c_p]`` with the pair mask
  ``[b, n, n]``;
* factorised (:mod:`genie.model.factor.layer`): :class:`PairFactors` ``[b, n, r, c_f]`` with the
  mask ``[b, n]``;
* sparse (:mod:`genie.model.sparse.layer`): edges ``[b, n, k, c_p]`` with the
  :class:`KnnGraph`.

The layers may share weights (built by :meth:`~genie.model.sharing.LayerSharing.triangle_layers`)
and run under the model's layer-checkpointing policy (:mod:`genie.utils.checkpointing`, kind
``"pair"``). ``n_layers = 0`` is the identity.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from genie.model.sharing import SharedLayers
from genie.utils.checkpointing import LayerCheckpointing


class PairStack(nn.Module):
    def __init__(
        self,
        *,
        layers: nn.ModuleList | SharedLayers,
        checkpointing: LayerCheckpointing | None = None,
    ):
        super().__init__()
        self.layers = layers
        self.checkpointing = checkpointing or LayerCheckpointing()

    def forward(self, pair: Any, context: Any, *, n: int) -> Any:
        """
        Args:
            pair: the representation the layers update (table in the module docstring).
            context: what the layers read besides it (pair mask, mask or graph).
            n: residues of the batch (the padded length), for adaptive checkpointing.

        Returns:
            the updated representation, of the input's type and shape.
        """
        for i, layer in enumerate(self.layers):
            pair = self.checkpointing.run("pair", i, n, layer, pair, context)
        return pair
