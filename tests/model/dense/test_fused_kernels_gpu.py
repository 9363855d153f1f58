"""On a GPU with cuEquivariance installed: the fused triangle kernels against our reference layers
(``pytest -m gpu``; skipped without CUDA or without the package).

Every comparison is against an fp64 evaluation of our layer (the truth), for the layer's output
on real pairs and the gradients of its input and of every parameter, with padded chains. The
fused kernel must be as accurate as our layer at the same precision: relative error (Frobenius
norm of the difference over the norm of the truth) at most max(2 × ours, floor), floor = 1e-4 in
fp32 (TF32 off, so both sides compute in true fp32) and 2e-2 under bf16 autocast (fp32 inputs
and parameters, as training with ``precision bf16`` runs). Outputs must be finite on every entry,
padding included (a NaN there would spread through the masks, since NaN · 0 = NaN).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from helpers import REPO, randomize_

from genie.config import load_config
from genie.model import build_denoiser
from genie.model.dense import fused_kernels
from genie.model.dense.fused_kernels import FusedTriangleKernels, cuequivariance_unavailable
from genie.model.dense.triangle_attention import TriangleAttention
from genie.model.dense.triangle_multiplication import TriangleMultiplication
from genie.model.layers.primitives import pair_mask

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(
        torch.cuda.is_available() and cuequivariance_unavailable() is not None,
        reason="needs cuequivariance-torch (pip install 'genie-long[cueq]')",
    ),
]

AUTO, REQUIRED = FusedTriangleKernels(required=False), FusedTriangleKernels(required=True)
N, REAL = 144, 117  # above the kernels' own PyTorch fallback (≤ 100 residues); 27 padded
FLOOR = {"fp32": 1e-4, "bf16": 2e-2}
LAYERS = {
    "outgoing": lambda k, c=64: TriangleMultiplication(c_p=64, c_hidden=c, mix="outgoing",
                                                       kernels=k),
    "incoming": lambda k, c=64: TriangleMultiplication(c_p=64, c_hidden=c, mix="incoming",
                                                       kernels=k),
    "starting": lambda k, c=32: TriangleAttention(c_p=64, c_hidden=c, n_heads=4,
                                                  node="starting", kernels=k),
    "ending": lambda k, c=32: TriangleAttention(c_p=64, c_hidden=c, n_heads=4, node="ending",
                                                kernels=k),
    "row": lambda k, c=32: TriangleAttention(c_p=64, c_hidden=c, n_heads=4, node="starting",
                                             triangle_bias=False, kernels=k),
    "column": lambda k, c=32: TriangleAttention(c_p=64, c_hidden=c, n_heads=4, node="ending",
                                                triangle_bias=False, kernels=k),
}  # fmt: skip


@pytest.fixture(autouse=True)
def true_fp32():
    """fp32 products in true fp32 (no TF32) on both sides while a test runs."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the calls that reach cuEquivariance."""
    calls = []
    real = fused_kernels._cueq

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(fused_kernels, "_cueq", counted)
    return calls


def inputs(seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    z = torch.randn(2, N, N, 64, device="cuda", generator=gen)
    mask = torch.ones(2, N, device="cuda")
    mask[1, REAL:] = 0
    pm = pair_mask(mask)
    weight = torch.randn(z.shape, device="cuda", generator=gen) * pm[..., None]  # real pairs
    return z, pm, weight


def evaluate(layer, z, pm, weight, *, precision, chunk=None):
    """Output (fp32 or fp64) and the gradients of Σ weight · output: input, every parameter."""
    zz = z.clone().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = layer(zz, pm, chunk_size=chunk)
    out = out.to(z.dtype)
    grads = torch.autograd.grad((out * weight).sum(), [zz, *layer.parameters()])
    names = ["input"] + [f"{name}.grad" for name, _ in layer.named_parameters()]
    return out.detach(), dict(zip(names, grads, strict=True))


def relative(a: torch.Tensor, truth: torch.Tensor) -> float:
    return ((a.double() - truth).norm() / truth.norm().clamp_min(1e-30)).item()


def check_against_reference(make, precision, chunk=None, seed=0):
    fused = randomize_(make(REQUIRED), scale=0.3, seed=seed).cuda()
    ours = make(None).cuda()
    ours.load_state_dict(fused.state_dict())
    truth = make(None).cuda().double()
    truth.load_state_dict(fused.state_dict())
    z, pm, weight = inputs(seed)
    out_t, grads_t = evaluate(truth, z.double(), pm.double(), weight.double(), precision="fp64")
    out_o, grads_o = evaluate(ours, z, pm, weight, precision=precision, chunk=chunk)
    out_f, grads_f = evaluate(fused, z, pm, weight, precision=precision, chunk=chunk)
    assert torch.isfinite(out_f).all(), "non-finite fused output"
    real = pm.bool()
    rows = [("output", out_f[real], out_o[real], out_t[real])]
    rows += [(name, grads_f[name], grads_o[name], grads_t[name]) for name in grads_t]
    failures = []
    for name, f, o, t in rows:
        e_f, e_o = relative(f, t), relative(o, t)
        if not e_f <= max(2 * e_o, FLOOR[precision]):
            failures.append(f"{name}: fused {e_f:.2e}, ours {e_o:.2e}")
    assert not failures, f"{precision}: " + "; ".join(failures)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("kind", ["outgoing", "incoming"])
def test_fused_multiplicative_update_equals_ours(kind, precision, fused_calls):
    check_against_reference(LAYERS[kind], precision)
    assert fused_calls, "the fused kernel was not called"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("chunk", [None, 48])
@pytest.mark.parametrize("kind", ["starting", "ending", "row", "column"])
def test_fused_attention_equals_ours(kind, chunk, precision, fused_calls):
    check_against_reference(LAYERS[kind], precision, chunk=chunk)
    assert fused_calls, "the fused kernel was not called"


@pytest.mark.parametrize(
    ("kind", "head_or_hidden", "precision", "chunk", "fused"),
    [
        ("outgoing", 64, "fp32", None, True), ("outgoing", 64, "bf16", None, True),
        ("outgoing", 64, "fp32", 48, False),  # chunked: ours
        ("incoming", 64, "fp16", None, False),  # fp16: ours
        ("starting", 32, "fp32", None, True), ("starting", 32, "bf16", 48, True),
        ("ending", 64, "fp32", None, False),  # 64 channels per head in fp32: ours
        ("ending", 64, "bf16", None, True), ("row", 32, "fp16", None, False),
    ],
)  # fmt: skip
def test_auto_uses_the_fused_kernels_where_documented(
    kind, head_or_hidden, precision, chunk, fused, fused_calls
):
    layer = randomize_(LAYERS[kind](AUTO, head_or_hidden)).cuda()
    z, pm, _ = inputs()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    context = torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()
    with context:
        out = layer(z, pm, chunk_size=chunk)
    assert torch.isfinite(out).all()
    assert bool(fused_calls) is fused


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_dense_denoiser_trains_the_same_with_either_kernel(precision):
    """The baseline's sizes with triangle and axial attention, 2 pair layers: ε̂ and every
    parameter gradient with triangleKernel cuequivariance as accurate as with reference."""
    keys = ["numPairTransformLayers=2", "includeTriangularAttention=True",
            "useAxialAttention=True", "triangularDropout=0", "ipaDropout=0",
            "structureTransitionDropout=0"]  # fmt: skip
    models = {}
    for kernel in ("cuequivariance", "reference"):
        cfg = load_config(REPO / "configs" / "train_baseline.config",
                          [*keys, f"triangleKernel={kernel}"])  # fmt: skip
        models[kernel] = randomize_(build_denoiser(cfg, announce=False), scale=0.05).cuda()
    truth = randomize_(build_denoiser(cfg, announce=False), scale=0.05).cuda().double()
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(2, N, 3, device="cuda", generator=gen, dtype=torch.float64).cumsum(1) * 2.2
    t = torch.tensor([10, 700], device="cuda")
    mask = torch.ones(2, N, device="cuda", dtype=torch.float64)
    mask[1, REAL:] = 0

    def step(model, dtype, autocast):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            eps = model(x.to(dtype), t, mask.to(dtype)).to(torch.float64)
        loss = (eps * mask[..., None]).square().sum()
        return [eps.detach(), *torch.autograd.grad(loss, list(model.parameters()))]

    truth_rows = step(truth, torch.float64, autocast=False)
    bf16 = precision == "bf16"
    ours = step(models["reference"], torch.float32, autocast=bf16)
    fused = step(models["cuequivariance"], torch.float32, autocast=bf16)
    names = ["eps"] + [name for name, _ in truth.named_parameters()]
    failures = []
    for name, f, o, ref in zip(names, fused, ours, truth_rows, strict=True):
        if ref.norm() == 0:
            continue
        e_f, e_o = relative(f, ref), relative(o, ref)
        if not e_f <= max(2 * e_o, 10 * FLOOR[precision]):
            failures.append(f"{name}: fused {e_f:.2e}, ours {e_o:.2e}")
    assert not failures, f"{precision}: " + "; ".join(failures)
