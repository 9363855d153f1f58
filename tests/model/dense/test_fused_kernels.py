"""The fused-kernel path of the dense triangle layers, without a GPU: when ``auto`` hands a call
to cuEquivariance, that the CPU runs ours, that a required kernel refuses the CPU, and that our
parameters and masks reach the kernels' arguments as their documented formulas read them (a
stand-in module computes those formulas in fp64; the real kernels are compared on the GPU in
test_fused_kernels_gpu.py)."""

from __future__ import annotations

import inspect
import types

import pytest
import torch
from helpers import randomize_
from torch.testing import assert_close

from genie.config import ConfigError
from genie.model.dense import fused_kernels
from genie.model.dense.fused_kernels import (
    FusedTriangleKernels,
    attention_supported,
    compute_dtype,
    key_mask,
    multiplication_supported,
)
from genie.model.dense.layer import PairTransformLayer
from genie.model.dense.triangle_attention import TriangleAttention
from genie.model.dense.triangle_multiplication import TriangleMultiplication
from genie.model.layers.primitives import pair_mask

AUTO, REQUIRED = FusedTriangleKernels(required=False), FusedTriangleKernels(required=True)
F32, BF16, F16, F64 = torch.float32, torch.bfloat16, torch.float16, torch.float64


def padded_pairs(b=2, n=11, c=32, seed=0, dtype=F64):
    """Pairs ``[b, n, n, c]`` and their residue mask; the second chain has 4 padded residues."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(b, n, n, c, generator=gen, dtype=dtype)
    mask = torch.ones(b, n, dtype=dtype)
    mask[1, n - 4 :] = 0
    return z, mask


@pytest.mark.parametrize(
    ("device", "dtype", "c_hidden", "chunked", "fused"),
    [
        ("cuda", F32, 128, False, True),
        ("cuda", BF16, 32, False, True),
        ("cuda", F32, 128, True, False),  # a row-chunked call stays ours
        ("cuda", F32, 48, False, False),  # no kernel for hidden widths off multiples of 32
        ("cuda", F16, 128, False, False),  # fp16 and fp64 stay ours
        ("cuda", F64, 128, False, False),
        ("cpu", F32, 128, False, False),
        ("meta", F32, 128, False, False),
    ],
)  # fmt: skip
def test_auto_hands_the_multiplicative_update_over_where_documented(
    device, dtype, c_hidden, chunked, fused
):
    assert multiplication_supported(device, dtype, c_hidden=c_hidden, chunked=chunked) is fused


@pytest.mark.parametrize(
    ("device", "dtype", "head_dim", "fused"),
    [
        ("cuda", F32, 32, True), ("cuda", F32, 4, True), ("cuda", F32, 64, False),
        ("cuda", F32, 30, False), ("cuda", BF16, 128, True), ("cuda", BF16, 64, True),
        ("cuda", BF16, 136, False), ("cuda", BF16, 12, False), ("cuda", F16, 32, False),
        ("cuda", F64, 32, False), ("cpu", BF16, 32, False),
    ],
)  # fmt: skip
def test_auto_hands_the_attention_core_over_where_documented(device, dtype, head_dim, fused):
    assert attention_supported(device, dtype, head_dim=head_dim) is fused


def test_the_compute_dtype_follows_autocast():
    x = torch.zeros(2, dtype=F32)
    assert compute_dtype(x) == F32
    with torch.autocast("cpu", dtype=BF16):
        assert compute_dtype(x) == BF16
    assert compute_dtype(x.double()) == F64


def forbid_the_package(monkeypatch):
    def forbidden():
        raise AssertionError("the cuEquivariance package was asked for")

    monkeypatch.setattr(fused_kernels, "_cueq", forbidden)
    monkeypatch.setattr(fused_kernels, "_import_cuequivariance", forbidden)


def layers(kernels):
    """One layer of each kind with kernels, the same weights, and one without: (with, without)."""
    made = []
    for make in (
        lambda k: TriangleMultiplication(c_p=32, c_hidden=32, mix="outgoing", kernels=k),
        lambda k: TriangleMultiplication(c_p=32, c_hidden=32, mix="incoming", kernels=k),
        lambda k: TriangleAttention(c_p=32, c_hidden=8, n_heads=2, node="starting", kernels=k),
        lambda k: TriangleAttention(c_p=32, c_hidden=8, n_heads=2, node="ending", kernels=k),
        lambda k: TriangleAttention(c_p=32, c_hidden=8, n_heads=2, node="starting",
                                    triangle_bias=False, kernels=k),
    ):  # fmt: skip
        fast, plain = randomize_(make(kernels)).double(), randomize_(make(None)).double()
        made.append((fast, plain))
    return made


def test_auto_runs_ours_on_the_cpu_and_never_imports_the_package(monkeypatch):
    forbid_the_package(monkeypatch)
    z, mask = padded_pairs()
    pm = pair_mask(mask)
    for fast, plain in layers(AUTO):
        assert fast.kernels is AUTO and plain.kernels is None
        assert torch.equal(fast(z, pm), plain(z, pm)), type(fast).__name__
    with torch.autocast("cpu", dtype=BF16):  # bf16 on the CPU: still ours
        for fast, plain in layers(AUTO):
            fast, plain = fast.float(), plain.float()
            assert torch.equal(fast(z.float(), pm.float()), plain(z.float(), pm.float()))


def test_a_required_kernel_refuses_the_cpu(monkeypatch):
    forbid_the_package(monkeypatch)
    z, mask = padded_pairs()
    for fast, _ in layers(REQUIRED):
        with pytest.raises(ConfigError, match="runs on CUDA only.*set triangleKernel auto"):
            fast(z, pair_mask(mask))


def test_a_required_kernel_refuses_sizes_it_has_no_kernel_for():
    with pytest.raises(ValueError, match="multiple of 32, got 48"):
        TriangleMultiplication(c_p=32, c_hidden=48, mix="outgoing", kernels=REQUIRED)
    for head in (12, 136):
        with pytest.raises(ValueError, match=f"multiple of 8 and at most 128, got {head}"):
            TriangleAttention(c_p=32, c_hidden=head, n_heads=2, node="starting",
                              kernels=REQUIRED)  # fmt: skip
    TriangleMultiplication(c_p=32, c_hidden=48, mix="outgoing", kernels=AUTO)  # auto: ours there


def test_the_pair_layer_gives_its_kernels_to_every_triangle_and_axial_update():
    layer = PairTransformLayer(
        c_p=32, triangle_mul=True, triangle_att=True, c_hidden_mul=32, c_hidden_att=8,
        n_heads_att=2, dropout=0.0, transition_n=2, axial=True, kernels=AUTO,
    )  # fmt: skip
    assert [type(u).__name__ for u in layer.updates] == ["TriangleMultiplication"] * 2 + [
        "TriangleAttention"
    ] * 4
    assert all(update.kernels is AUTO for update in layer.updates)


def test_the_key_mask_keeps_valid_keys_and_opens_rows_without_any():
    pm = pair_mask(torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    keys = key_mask(pm)
    assert keys.shape == (1, 4, 1, 1, 4) and keys.dtype == torch.bool
    expected = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]]).bool()
    assert torch.equal(keys[0, :, 0, 0], expected)


# --- the kernels' documented formulas, computed here in fp64 ----------------------------------


def documented_multiplicative_update(x, direction="outgoing", mask=None, *, eps, **w):
    """cuequivariance_torch.triangle_multiplicative_update as its docstring defines it:
    LayerNorm, a = p(x)·σ(g(x)) masked (rows [a; b] of p_in/g_in), the triangular product, the
    output LayerNorm and projection, gated by σ(g_out(LN(x)))."""
    c = x.shape[-1]
    xn = torch.nn.functional.layer_norm(x, (c,), w["norm_in_weight"], w["norm_in_bias"], eps)
    proj = xn @ w["p_in_weight"].T + w["p_in_bias"]
    gated = proj * torch.sigmoid(xn @ w["g_in_weight"].T + w["g_in_bias"]) * mask[..., None]
    a, b = gated.chunk(2, dim=-1)
    if direction == "outgoing":
        y = torch.einsum("bikd,bjkd->bijd", a, b)
    else:
        y = torch.einsum("bkid,bkjd->bijd", a, b)
    d = y.shape[-1]
    y = torch.nn.functional.layer_norm(y, (d,), w["norm_out_weight"], w["norm_out_bias"], eps)
    out = y @ w["p_out_weight"].T + w["p_out_bias"]
    return out * torch.sigmoid(xn @ w["g_out_weight"].T + w["g_out_bias"])


def documented_attention(q, k, v, bias, mask=None, scale=None, return_aux=False):
    """cuequivariance_torch.triangle_attention as its docstring defines it: softmax over keys of
    s·q·k + bias where the mask is 1, −10⁹ where it is 0, times the values."""
    assert bias.dtype == torch.promote_types(q.dtype, torch.float32) and not return_aux
    assert mask.dtype == torch.bool and mask.shape == (*q.shape[:2], 1, 1, k.shape[3])
    logits = scale * q @ k.transpose(-1, -2) + bias.to(q.dtype)  # [b, i, h, j, k]
    logits = torch.where(mask, logits, torch.full_like(logits, -1e9))
    return torch.softmax(logits, dim=-1) @ v


@pytest.fixture
def documented_kernels(monkeypatch):
    """The layers' fused path on the CPU, computed by the documented formulas above."""
    stand_in = types.SimpleNamespace(
        triangle_multiplicative_update=documented_multiplicative_update,
        triangle_attention=documented_attention,
    )
    monkeypatch.setattr(fused_kernels, "_cueq", lambda: stand_in)
    monkeypatch.setattr(FusedTriangleKernels, "_check_device", lambda self, x: None)
    return REQUIRED


def test_our_parameters_and_masks_reach_the_documented_formulas(documented_kernels):
    """Outputs on every entry (padding too) and gradients of the input and of every parameter:
    the fused path from our weights equals our layer."""
    z, mask = padded_pairs(seed=1)
    pm = pair_mask(mask)
    for fast, plain in layers(documented_kernels):
        plain.load_state_dict(fast.state_dict())
        name = f"{type(fast).__name__} {getattr(fast, 'mix', getattr(fast, 'node', ''))}"
        w = torch.randn(z.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
        grads = []
        for layer in (fast, plain):
            zz = z.clone().requires_grad_(True)
            out = layer(zz, pm, chunk_size=4)  # chunks: rows of the attention core
            (out * w).sum().backward()
            grads.append((out.detach(), zz.grad, {n: p.grad for n, p in layer.named_parameters()}))
        (out_f, gz_f, gp_f), (out_p, gz_p, gp_p) = grads
        assert_close(out_f, out_p, msg=name)
        assert_close(gz_f, gz_p, msg=name)
        assert gp_f.keys() == gp_p.keys()
        for key in gp_f:
            assert_close(gp_f[key], gp_p[key], msg=f"{name}: {key}")


def test_the_keywords_we_pass_exist_in_the_installed_api():
    cueq = pytest.importorskip("cuequivariance_torch")
    layer = TriangleMultiplication(c_p=32, c_hidden=32, mix="outgoing")
    passed = fused_kernels.multiplication_arguments(
        norm_in=layer.norm_in, proj_a=layer.proj_a, proj_b=layer.proj_b, gate=layer.gate,
        norm_out=layer.norm_out, out=layer.out,
    )  # fmt: skip
    mul = inspect.signature(cueq.triangle_multiplicative_update).parameters
    assert set(passed) | {"direction", "mask"} <= set(mul)
    att = inspect.signature(cueq.triangle_attention).parameters
    assert list(att)[:4] == ["q", "k", "v", "bias"] and {"mask", "scale"} <= set(att)
