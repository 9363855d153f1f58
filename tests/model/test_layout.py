"""The whole-chain layout is the identity everywhere; layouts are installed on every part and
restored; the model's dropout draws what nn.Dropout draws."""

from __future__ import annotations

import pytest
import torch
from helpers import SPARSE_TINY
from torch import nn

from genie.config import load_config
from genie.geometry.graph import build_knn_graph
from genie.model.build import build_denoiser
from genie.model.layers.primitives import Dropout
from genie.model.layout import (
    WHOLE_CHAIN,
    SequenceLayout,
    SequenceParallel,
    set_sequence_layout,
    using_layout,
)


def test_whole_chain_layout_is_the_identity():
    x = torch.randn(2, 7, 4)
    for method in (WHOLE_CHAIN.gather, WHOLE_CHAIN.local, WHOLE_CHAIN.reduce_scatter,
                   WHOLE_CHAIN.sum):  # fmt: skip
        assert method(x) is x
    assert WHOLE_CHAIN.list_values(x, "column") is x and WHOLE_CHAIN.list_values(x, "row") is x
    assert WHOLE_CHAIN.own(7) == slice(0, 7) and WHOLE_CHAIN.full_length(7) == 7
    ids = torch.tensor([[3, -1, 20]])
    assert WHOLE_CHAIN.own_edge_ids(ids, n=7, k=3) is ids
    coords, mask = torch.randn(1, 9, 3) * 5, torch.ones(1, 9)
    index = torch.arange(9)[None]
    got = WHOLE_CHAIN.knn_graph(coords, mask, index, k=4, strategy="hybrid", chunk_size=2)
    ref = build_knn_graph(coords, mask, index, k=4, strategy="hybrid", chunk_size=2)
    assert all(torch.equal(getattr(got, a), getattr(ref, a)) for a in ("index", "valid", "offsets"))


class Marked(SequenceLayout):
    pass


def test_layouts_reach_every_part_and_are_restored():
    config = load_config(None, SPARSE_TINY + ["useSparseKNN=True", "useFlashMode=True"])
    model = build_denoiser(config, announce=False)
    parts = [m for m in model.modules() if isinstance(m, SequenceParallel)]
    kinds = {type(m).__name__ for m in parts}
    assert {"GenieDenoiser", "SparsePairEncoder", "EdgeFeatureNet", "SparseTriangleMultiplication",
            "FlashIPA", "LocalEdgeAttention", "Dropout"} <= kinds  # fmt: skip
    marked, other = Marked(), Marked()
    set_sequence_layout(model, marked)
    with using_layout(model, other):
        assert all(m.sequence_layout is other for m in parts)
    assert all(m.sequence_layout is marked for m in parts)


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_dropout_draws_what_nn_dropout_draws(p):
    x = torch.randn(3, 5, 4, 6)
    torch.manual_seed(0)
    ref = nn.Dropout(p)(x)
    torch.manual_seed(0)
    assert torch.equal(Dropout(p)(x), ref)
    assert torch.equal(Dropout(p).eval()(x), x)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        Dropout(1.5)
