"""Axial attention on dense pairs (``useAxialAttention``): row then column attention in
:class:`PairTransformLayer`, against an fp64 einsum reference; chunking and padding change
nothing; wired from the config; the denoiser stays SE(3)-equivariant with it.

Notation: b batch, i/j/k residues, h heads, c channels per head, c_p pair channels.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import TINY_MODEL, assert_rotates_with_input, denoiser_batch, randomize_
from torch.testing import assert_close

from genie.config import load_config
from genie.model.build import build_denoiser
from genie.model.dense.layer import PairTransformLayer
from genie.model.dense.triangle_attention import TriangleAttention
from genie.model.layers.primitives import pair_mask

BASELINE = Path(__file__).resolve().parents[3] / "configs" / "train_baseline.config"
NO_DROPOUT = ["triangularDropout=0", "ipaDropout=0", "structureTransitionDropout=0"]
TINY_BASELINE = [  # train_baseline.config with tiny dimensions (keeps its pair-stack options)
    "singleFeatureDimension=16", "pairFeatureDimension=8", "relativePositionK=4",
    "numPairTransformLayers=2", "triangularMultiplicativeHiddenDimension=8",
    "triangularAttentionHiddenDimension=4", "triangularAttentionNumHeads=2",
    "structureEncoderDepth=2", "structureEncoderHeads=2", "ipaHiddenDimension=4",
    "ipaNumQkPoints=2", "ipaNumVPoints=3",
]  # fmt: skip
LAYER = dict(
    c_p=6, c_hidden_mul=5, c_hidden_att=4, n_heads_att=3, dropout=0.0, transition_n=2
)  # fmt: skip


def make_pairs(b=2, n=9, c=6, seed=0):
    """Random pairs ``z [b, n, n, c]`` (fp64) and a residue mask ``[b, n]`` whose second chain
    has 3 padded residues."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(b, n, n, c, generator=gen, dtype=torch.float64)
    mask = torch.ones(b, n, dtype=torch.float64)
    if b > 1:
        mask[1, n - 3 :] = 0
    return z, mask


def reference_axial(att: TriangleAttention, z, pmask):
    """Axial attention written out (fp64): row (``starting``) entry ij attends over the ik of its
    row, softmax_k(q_ij·k_ik/√c) with masked keys at -inf; column (``ending``) over the kj of its
    column. Gated by σ(W_g z_ij), then the output projection. Uses ``att``'s own weights.
    A query with no valid key (a padded row or column) gets zero weights, not NaN.
    """
    h, c = att.h, att.c
    zn = att.norm(z)
    q, k, v = att.qkv(zn).unflatten(-1, (3, h, c)).unbind(-3)  # [b, i, j, h, c] each
    if att.node == "starting":
        logits = torch.einsum("bijhc,bikhc->bhijk", q, k) / c**0.5
        key_valid = pmask.bool()[:, None, :, None, :]  # key (i, k): [b, 1, i, 1, k]
        logits = logits.masked_fill(~key_valid, float("-inf"))
        o = torch.einsum("bhijk,bikhc->bijhc", torch.softmax(logits, -1).nan_to_num(0.0), v)
    else:
        logits = torch.einsum("bijhc,bkjhc->bhijk", q, k) / c**0.5
        key_valid = pmask.bool().transpose(1, 2)[:, None, None, :, :]  # key (k, j): [b,1,1,j,k]
        logits = logits.masked_fill(~key_valid, float("-inf"))
        o = torch.einsum("bhijk,bkjhc->bijhc", torch.softmax(logits, -1).nan_to_num(0.0), v)
    gate = torch.sigmoid(att.gate(zn)).unflatten(-1, (h, c))  # [b, i, j, h, c]
    return att.out((gate * o).flatten(-2))  # [b, i, j, c_p]


def axial_layer(seed=0, **kwargs) -> PairTransformLayer:
    layer = PairTransformLayer(
        **LAYER, triangle_mul=False, triangle_att=False, axial=True, **kwargs
    )
    return randomize_(layer, seed=seed).double().eval()


@pytest.mark.parametrize("index, node", [(0, "starting"), (1, "ending")])
def test_axial_attention_matches_reference(index, node):
    z, mask = make_pairs(seed=3)
    pm = pair_mask(mask)
    att = axial_layer().updates[index]
    assert att.node == node and att.bias is None  # no triangle bias: axial attention
    out = att(z, pm)
    valid = pm.bool()
    ref = reference_axial(att, z, pm)
    assert_close(out[valid], ref[valid])
    assert out[valid].abs().max() > 1e-2  # not trivially zero


def test_layer_applies_row_then_column_then_transition():
    z, mask = make_pairs(seed=4)
    pm = pair_mask(mask)
    layer = axial_layer(seed=1)
    row, col = layer.updates
    z1 = z + reference_axial(row, z, pm)
    z2 = z1 + reference_axial(col, z1, pm)
    ref = z2 + layer.transition(z2, pm)
    valid = pm.bool()
    assert_close(layer(z, pm)[valid], ref[valid])


def record_chunk_sizes(layer: PairTransformLayer) -> list:
    """Hook every update of ``layer``; returns the list of chunk sizes they are called with."""
    seen = []
    for update in layer.updates:
        update.register_forward_pre_hook(
            lambda _m, _a, kw: seen.append(kw["chunk_size"]), with_kwargs=True
        )
    return seen


@pytest.mark.parametrize("forward_chunk", [None, 4])
def test_axial_chunked_equals_unchunked(forward_chunk):
    z, mask = make_pairs(seed=5)
    pm = pair_mask(mask)
    full = dict(triangle_mul=True, triangle_att=True, axial=True)
    plain = randomize_(PairTransformLayer(**LAYER, **full), seed=2).double().eval()
    chunked = PairTransformLayer(**LAYER, **full, chunk_size=forward_chunk,
                                 axial_row_chunk_size=3, axial_col_chunk_size=2)  # fmt: skip
    chunked = randomize_(chunked, seed=2).double().eval()
    seen = record_chunk_sizes(chunked)
    assert_close(chunked(z, pm), plain(z, pm))
    # trimul out/in, triangle start/end take the layer's chunk size, the axial ones their own
    assert seen == [forward_chunk] * 4 + [3, 2]


def test_axial_chunk_size_defaults_to_layer_chunk_size():
    z, mask = make_pairs(seed=6)
    layer = axial_layer(seed=3, chunk_size=4)
    seen = record_chunk_sizes(layer)
    assert_close(layer(z, pair_mask(mask)), axial_layer(seed=3)(z, pair_mask(mask)))
    assert seen == [4, 4]


@pytest.mark.parametrize("tri_att", [False, True])
def test_axial_padding_changes_nothing(tri_att):
    z, _ = make_pairs(b=1, n=6, seed=7)
    layer = PairTransformLayer(
        **LAYER, triangle_mul=True, triangle_att=tri_att, axial=True,
        axial_row_chunk_size=2, axial_col_chunk_size=4,
    )  # fmt: skip
    layer = randomize_(layer, seed=4).double().eval()
    ones = torch.ones(1, 6, dtype=torch.float64)
    alone = layer(z, pair_mask(ones))
    padded_z = torch.nn.functional.pad(z, (0, 0, 0, 3, 0, 3), value=7.0)  # garbage padding
    padded = layer(padded_z, pair_mask(torch.nn.functional.pad(ones, (0, 3))))
    assert_close(padded[:, :6, :6], alone)


def baseline_model(*extra: str):
    cfg = load_config(BASELINE, TINY_BASELINE + NO_DROPOUT + list(extra))
    return build_denoiser(cfg).double().eval()


def batch(n=12, b=2, seed=0):
    return denoiser_batch(n, b, seed, pad_last=2)


def test_config_builds_dense_axial_attention():
    plain = randomize_(baseline_model(), scale=0.2, seed=5)
    axial = baseline_model("useAxialAttention=True")
    # start from the plain model's weights; only the axial modules are new
    missing, unexpected = axial.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    per_att = sum(p.numel() for p in axial.pair_encoder.stack.layers[0].updates[2].parameters())
    n_layers = len(axial.pair_encoder.stack.layers)
    assert n_layers == 2
    assert {k.split(".updates.")[1].split(".")[0] for k in missing} == {"2", "3"}
    assert axial.num_parameters() - plain.num_parameters() == n_layers * 2 * per_att
    for layer in axial.pair_encoder.stack.layers:
        row, col = layer.updates[2:]
        assert (row.node, col.node) == ("starting", "ending")
        assert row.bias is None and col.bias is None
        assert row.h == 2 and row.c == 4  # triangularAttentionNumHeads/HiddenDimension
        randomize_(row, scale=0.2, seed=6)
        randomize_(col, scale=0.2, seed=7)
    x, t, mask = batch()
    with torch.no_grad():
        diff = (axial(x, t, mask) - plain(x, t, mask)).abs().max()
    assert diff > 1e-3


def test_config_axial_chunk_sizes_reach_layers():
    model = baseline_model("useAxialAttention=True", "axialRowChunkSize=3", "axialColChunkSize=2")
    for layer in model.pair_encoder.stack.layers:
        assert layer.chunk_sizes == [None, None, 3, 2]
    randomize_(model, scale=0.2, seed=8)
    unchunked = baseline_model("useAxialAttention=True")
    unchunked.load_state_dict(model.state_dict())
    x, t, mask = batch(seed=1)
    with torch.no_grad():
        assert_close(model(x, t, mask), unchunked(x, t, mask))


@pytest.mark.parametrize("extra", [[], ["includeTriangularAttention=True"]])
def test_dense_axial_model_is_se3_equivariant(extra):
    cfg = load_config(None, TINY_MODEL + NO_DROPOUT + ["useAxialAttention=True"] + extra)
    model = randomize_(build_denoiser(cfg), scale=0.2, seed=9).double().eval()
    pairs = []
    model.pair_encoder.stack.register_forward_hook(lambda _m, _a, out: pairs.append(out))
    assert_rotates_with_input(model, *batch(seed=2))
    assert_close(pairs[1], pairs[0])  # the pair representation is invariant
