"""Triangle multiplicative update and triangle attention against AF2's definitions (fp64)."""

from __future__ import annotations

import pytest
import torch
from helpers import randomize_
from torch.testing import assert_close

from genie.model.dense.triangle_attention import TriangleAttention
from genie.model.dense.triangle_multiplication import TriangleMultiplication
from genie.model.layers.primitives import pair_mask


def make_pairs(b=2, n=9, c=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(b, n, n, c, generator=gen, dtype=torch.float64)
    mask = torch.ones(b, n, dtype=torch.float64)
    if b > 1:
        mask[1, n - 3 :] = 0  # second chain is padded
    return z, mask


def reference_trimul(layer: TriangleMultiplication, z, pmask):
    """AF2 Alg. 11 (outgoing) / Alg. 12 (incoming), written out with einsum."""
    zn = layer.norm_in(z)
    av, ag = layer.proj_a(zn).chunk(2, -1)
    bv, bg = layer.proj_b(zn).chunk(2, -1)
    a = av * torch.sigmoid(ag) * pmask[..., None]
    b = bv * torch.sigmoid(bg) * pmask[..., None]
    if layer.mix == "outgoing":
        x = torch.einsum("bikc,bjkc->bijc", a, b)
    else:
        x = torch.einsum("bkic,bkjc->bijc", a, b)
    return torch.sigmoid(layer.gate(zn)) * layer.out(layer.norm_out(x))


def reference_triangle_attention(layer: TriangleAttention, z, pmask):
    """AF2 Alg. 13 (starting node) / Alg. 14 (ending node), written out with einsum."""
    h, c = layer.h, layer.c
    zn = layer.norm(z)
    q, k, v = layer.qkv(zn).unflatten(-1, (3, h, c)).unbind(-3)  # [b, i, j, h, c]
    bias = layer.bias(zn)  # [b, i, j, h]
    if layer.node == "starting":
        logits = torch.einsum("bijhc,bikhc->bhijk", q, k) / c**0.5
        logits = logits + bias.permute(0, 3, 1, 2)[:, :, None]  # b_jk
        logits = logits + ((1 - pmask)[:, None, :, None, :] * -1e9)  # key (i, k)
        o = torch.einsum("bhijk,bikhc->bijhc", torch.softmax(logits, -1), v)
    else:
        logits = torch.einsum("bijhc,bkjhc->bhijk", q, k) / c**0.5
        logits = logits + bias.permute(0, 3, 2, 1)[:, :, :, None, :]  # b_ki
        logits = logits + ((1 - pmask).transpose(1, 2)[:, None, None, :, :] * -1e9)  # key (k, j)
        o = torch.einsum("bhijk,bkjhc->bijhc", torch.softmax(logits, -1), v)
    gate = torch.sigmoid(layer.gate(zn)).unflatten(-1, (h, c))
    return layer.out((gate * o).flatten(-2))


@pytest.mark.parametrize("mix", ["outgoing", "incoming"])
def test_trimul_matches_reference(mix):
    z, mask = make_pairs()
    layer = randomize_(TriangleMultiplication(c_p=6, c_hidden=5, mix=mix)).double()
    pm = pair_mask(mask)
    out = layer(z, pm)
    assert out.shape == z.shape
    assert_close(out, reference_trimul(layer, z, pm))


@pytest.mark.parametrize("mix", ["outgoing", "incoming"])
@pytest.mark.parametrize("chunk", [1, 4, 7, 9, 33])
def test_trimul_chunked_equals_unchunked(mix, chunk):
    z, mask = make_pairs(seed=1)
    layer = randomize_(TriangleMultiplication(c_p=6, c_hidden=5, mix=mix)).double()
    pm = pair_mask(mask)
    assert_close(layer(z, pm, chunk_size=chunk), layer(z, pm))


@pytest.mark.parametrize("mix", ["outgoing", "incoming"])
def test_trimul_padding_changes_nothing(mix):
    z, _ = make_pairs(b=1, n=6, seed=2)
    layer = randomize_(TriangleMultiplication(c_p=6, c_hidden=5, mix=mix)).double()
    alone = layer(z, pair_mask(torch.ones(1, 6, dtype=torch.float64)))
    padded_z = torch.nn.functional.pad(z, (0, 0, 0, 3, 0, 3), value=7.0)  # garbage padding
    padded_mask = torch.nn.functional.pad(torch.ones(1, 6, dtype=torch.float64), (0, 3))
    padded = layer(padded_z, pair_mask(padded_mask))
    assert_close(padded[:, :6, :6], alone)


@pytest.mark.parametrize("node", ["starting", "ending"])
def test_triangle_attention_matches_reference(node):
    z, mask = make_pairs(seed=3)
    layer = randomize_(TriangleAttention(c_p=6, c_hidden=4, n_heads=3, node=node)).double()
    pm = pair_mask(mask)
    out = layer(z, pm)
    ref = reference_triangle_attention(layer, z, pm)
    valid = pm.bool()
    assert_close(out[valid], ref[valid])


@pytest.mark.parametrize("node", ["starting", "ending"])
@pytest.mark.parametrize("chunk", [1, 4, 7, 33])
def test_triangle_attention_chunked_equals_unchunked(node, chunk):
    z, mask = make_pairs(seed=4)
    layer = randomize_(TriangleAttention(c_p=6, c_hidden=4, n_heads=3, node=node)).double()
    pm = pair_mask(mask)
    assert_close(layer(z, pm, chunk_size=chunk), layer(z, pm))


def test_recompute_gives_plain_gradients():
    from genie.utils.checkpointing import recompute_disabled

    z, mask = make_pairs(seed=5)
    layer = randomize_(TriangleMultiplication(c_p=6, c_hidden=5, mix="outgoing")).double()
    pm = pair_mask(mask)

    def grads():
        zz = z.clone().requires_grad_(True)
        (layer(zz, pm) ** 2).sum().backward()
        out = [zz.grad] + [p.grad.clone() for p in layer.parameters()]
        layer.zero_grad()
        return out

    with_recompute = grads()
    with recompute_disabled():
        plain = grads()
    for a, b in zip(with_recompute, plain, strict=True):
        assert_close(a, b)
