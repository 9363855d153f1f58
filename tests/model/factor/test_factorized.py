"""Factorised pairs (stages 1-2) against dense computations on the materialised tensor (fp64)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import (
    TINY_MODEL,
    assert_rotates_with_input,
    denoiser_batch,
    forbid_allocations_at_least,
    helix_trace,
    random_rotation,
    randomize_,
)
from torch.testing import assert_close

from genie.config import load_config
from genie.model.build import build_denoiser
from genie.model.factor.features import local_distance_features, relative_position_factors
from genie.model.factor.triangle import FactorTriangleAttention, FactorTriangleMultiplication
from genie.model.layers.primitives import Linear
from genie.model.representations import DensePair, PairFactors
from genie.utils.checkpointing import recompute_disabled

B, N, R, C = 2, 9, 3, 5


def factors(seed=0, b=B, n=N):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(b, n, R, C, generator=gen, dtype=torch.float64)
    v = torch.randn(b, n, R, C, generator=gen, dtype=torch.float64)
    mask = torch.ones(b, n, dtype=torch.float64)
    if b > 1:
        mask[1, n - 3 :] = 0
    return PairFactors(u, v).masked(mask), mask


def test_bias_and_attend_equal_dense():
    pair, _ = factors()
    dense = DensePair(pair.materialize())
    linear = Linear(C, 4).double()
    torch.nn.init.normal_(linear.bias)
    attn = torch.softmax(torch.randn(B, 4, 3, N, dtype=torch.float64), -1)
    rows = slice(2, 5)
    assert_close(pair.bias(linear, rows), dense.bias(linear, rows))
    assert_close(pair.attend(attn, rows), dense.attend(attn, rows))


@pytest.mark.parametrize("mix", ["outgoing", "incoming"])
def test_triangle_multiplication_equals_dense_on_materialised_operands(mix):
    pair, mask = factors(1)
    layer = randomize_(FactorTriangleMultiplication(c_f=C, rank=R, update_rank=2, mix=mix)).double()
    x, y = layer.operands(pair, mask)
    factored = torch.einsum("biqc,bjqc->bijc", x, y)  # rank-t² product, materialised
    # Dense reference: materialise the operands a_ik, b_jk, then AF2's sum over k.
    u, v = layer.norm(pair.u), layer.norm(pair.v)
    op = {name: layer._operand(name, f, mask) for name, f in
          (("a", u), ("a2", v), ("b", u), ("b2", v))}  # fmt: skip
    a = torch.einsum("bitc,bktc->bikc", op["a"], op["a2"])  # a_ik
    b = torch.einsum("bjtc,bktc->bjkc", op["b"], op["b2"])  # b_jk
    if mix == "outgoing":
        dense = torch.einsum("bikc,bjkc->bijc", a, b)
    else:
        dense = torch.einsum("bkic,bkjc->bijc", a, b)
    assert_close(factored, dense)
    out = layer(pair, mask)
    assert out.u.shape == pair.u.shape and out.v.shape == pair.v.shape


def reference_factor_attention(layer: FactorTriangleAttention, pair: PairFactors, mask):
    """Dense starting/ending-node attention on the materialised z of the normalised factors,
    projected on the column factors (see genie/model/factor/triangle.py)."""
    u, v = (pair.u, pair.v) if layer.node == "starting" else (pair.v, pair.u)
    u, v = layer.norm(u), layer.norm(v)
    z = torch.einsum("birc,bjrc->bijc", u, v)
    h, c = layer.h, layer.c
    q, k, val = layer.qkv(z).unflatten(-1, (3, h, c)).unbind(-3)  # [b, i, j, h, c]
    bias = layer.bias(z)  # [b, j, k, h]
    logits = torch.einsum("bijhc,bikhc->bhijk", q, k) / math.sqrt(c)
    logits = logits + bias.permute(0, 3, 1, 2)[:, :, None] + ((mask - 1) * 1e9)[:, None, None, None]
    o = torch.einsum("bhijk,bikhc->bijhc", torch.softmax(logits, -1), val)
    o = layer.out(torch.sigmoid(layer.gate(z)) * o.flatten(-2))
    o = o * mask[:, :, None, None] * mask[:, None, :, None]
    return torch.einsum("bijc,bjrc->birc", o, v) / mask.sum(-1)[:, None, None, None]


@pytest.mark.parametrize("node", ["starting", "ending"])
@pytest.mark.parametrize("chunk", [None, 1, 4, 7, 33])
def test_triangle_attention_equals_dense_reference(node, chunk):
    pair, mask = factors(2)
    layer = FactorTriangleAttention(c_f=C, rank=R, c_hidden=4, n_heads=2, node=node,
                                    chunk_size=chunk)  # fmt: skip
    layer = randomize_(layer).double()
    out = layer(pair, mask)
    delta = reference_factor_attention(layer, pair, mask)
    if node == "starting":
        assert_close(out.u - pair.u, delta)
        assert_close(out.v, pair.v)
    else:
        assert_close(out.v - pair.v, delta)
        assert_close(out.u, pair.u)


def test_relative_position_factors_depend_on_offset_only():
    idx = torch.arange(40)[None]
    u, v = relative_position_factors(idx, rank=4, channels=6)
    z = torch.einsum("birc,bjrc->bijc", u, v)[0]  # [n, n, c]
    assert_close(z[5:25, 5:25], z[:20, :20])  # shifting both residues changes nothing
    assert_close(z, z.transpose(0, 1))  # cos is even in i − j


def test_local_distance_features_by_hand_and_invariance():
    x = torch.tensor([[[0.0, 0, 0], [3.0, 4, 0], [3.0, 4, 12], [0, 0, 0]]])
    mask = torch.tensor([[1.0, 1, 1, 0]])
    f = local_distance_features(x, mask)
    # offset +1 (first feature pair): 5 Å, 12 Å, missing, missing (in nm, with flags)
    assert_close(f[0, :, 0], torch.tensor([0.5, 1.2, 0.0, 0.0]), atol=1e-4, rtol=0)
    assert_close(f[0, :, 1], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    q = random_rotation(torch.Generator().manual_seed(0))
    assert_close(local_distance_features(x @ q.T + 3.0, mask), f, atol=1e-5, rtol=0)


STAGE2 = [
    "useFactorizedPairs=True", "useFactorizedTriangleOps=True", "includeTriangularAttention=True",
    "zFactorRank=2", "pairFactorDim=6", "triangleUpdateRank=2", "numTriangleLayers=1",
    "triangleAttentionChunkSize=5", "ipaDropout=0", "structureTransitionDropout=0",
]  # fmt: skip


def factor_model(*extra, seed=0):
    model = build_denoiser(load_config(None, TINY_MODEL + STAGE2 + list(extra)))
    return randomize_(model, scale=0.2, seed=seed).double().eval()


def test_factorised_denoiser_rotates_with_input_and_ignores_padding():
    model = factor_model()
    gen = torch.Generator().manual_seed(3)
    x = torch.stack([helix_trace(11, generator=gen) for _ in range(2)]).double() * 1.5
    t, mask = torch.tensor([3, 700]), torch.ones(2, 11, dtype=torch.float64)
    q = random_rotation(gen, torch.float64)
    with torch.no_grad():
        eps = model(x, t, mask)
        moved = model(x @ q.T - 4.0, t, mask)
        padded = model(torch.cat([x, 30 * torch.randn(2, 4, 3, dtype=torch.float64)], 1), t,
                       torch.cat([mask, torch.zeros(2, 4, dtype=torch.float64)], 1))  # fmt: skip
    assert eps.abs().max() > 1e-3
    assert_close(moved, eps @ q.T)
    assert_close(padded[:, :11], eps)


def test_factorised_chunking_and_recompute_change_nothing():
    model = factor_model(seed=1)
    chunked_model = factor_model("ipaChunkSize=4", "triangleAttentionChunkSize=13", seed=1)
    x = helix_trace(13, generator=torch.Generator().manual_seed(4))[None].double()
    t, mask = torch.tensor([50]), torch.ones(1, 13, dtype=torch.float64)
    with torch.no_grad():
        plain = model(x, t, mask)
        assert_close(chunked_model(x, t, mask), plain)
    model.train()

    def grads():
        model.zero_grad()
        (model(x, t, mask) ** 2).sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    chunked = grads()
    with recompute_disabled():
        stored = grads()
    for a, b in zip(chunked, stored, strict=True):
        assert_close(a, b)


def test_no_n_by_n_tensor_in_forward_and_backward():
    # Triangle attention is off here, as in Genie's and our stage configs: on the CPU, PyTorch's
    # math attention materialises each row's [n, n] logits (GPU kernels do not).
    n = 512
    cfg = load_config(
        None, TINY_MODEL + STAGE2 + ["includeTriangularAttention=False", "ipaChunkSize=32"]
    )
    model = build_denoiser(cfg).train()
    x = helix_trace(n, generator=torch.Generator().manual_seed(5))[None]
    with forbid_allocations_at_least(n * n, square=n) as limit:
        out = model(x, torch.tensor([100]), torch.ones(1, n))
        (out**2).sum().backward()
    assert limit.largest >= 32 * n  # the IPA query chunks were seen
    # The guard does catch an n×n tensor (the dense model builds them).
    dense = build_denoiser(load_config(None, TINY_MODEL))
    with pytest.raises(AssertionError, match="two residue axes"), torch.no_grad():
        with forbid_allocations_at_least(n * n * 1000, square=n):
            dense(x, torch.tensor([100]), torch.ones(1, n))


def test_stage3_config_model_is_se3_equivariant():
    """The model of configs/train_stage3.config (narrowed to test size) rotates ε̂ with x_t."""
    repo = __import__("pathlib").Path(__file__).resolve().parents[3]
    small = ["singleFeatureDimension=16", "pairFactorDim=6", "structureEncoderDepth=2",
             "structureEncoderHeads=2", "ipaHiddenDimension=4", "ipaChunkSize=5",
             "ipaDropout=0", "structureTransitionDropout=0"]  # fmt: skip
    model = build_denoiser(load_config(repo / "configs" / "train_stage3.config", small))
    model = randomize_(model, scale=0.2, seed=7).double().eval()
    assert_rotates_with_input(model, *denoiser_batch(14, 1, seed=8))
