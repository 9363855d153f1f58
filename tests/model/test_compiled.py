"""The compiled model (genie/model/compiled.py) against the eager reference.

On the CPU: every shipped config's forward is one graph without breaks (``torch._dynamo``'s own
report), the compiled forward and backward (``aot_eager``: the captured graph and its autograd,
without kernel generation) equal the eager module's in float64, and a compiler failure falls back
to eager with a warning. On a GPU (``-m gpu``): the inductor modes, CUDA graphs included, equal
eager, and a graph-captured reverse process gives the eager backbone from the same seed.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from pathlib import Path

import pytest
import torch
import torch._dynamo as dynamo
from helpers import SPARSE_TINY, denoiser_batch, randomize_
from torch.testing import assert_close

from genie.config import load_config
from genie.model.build import build_denoiser
from genie.model.compiled import CompiledDenoiser, maybe_compile
from genie.utils.runtime import resolve_compile_mode

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TRAIN_CONFIGS = sorted(p.stem.removeprefix("train_") for p in CONFIGS.glob("train_*.config"))
DENSE_TINY = [
    "singleFeatureDimension=16", "pairFeatureDimension=8", "positionalEmbeddingDimension=8",
    "timestepEmbeddingDimension=8", "structureEncoderDepth=2", "structureEncoderHeads=2",
    "ipaHiddenDimension=4", "ipaNumQkPoints=2", "ipaNumVPoints=3", "ipaDropout=0",
    "structureTransitionDropout=0", "triangularDropout=0",
]  # fmt: skip


def shipped_model(name: str, *extra: str):
    return build_denoiser(load_config(CONFIGS / f"train_{name}.config", list(extra)),
                          announce=False)  # fmt: skip


def tiny_model(name: str, *extra: str):
    sparse = name in ("stage3v2", "stage4")
    keys = [*(SPARSE_TINY if sparse else DENSE_TINY), *extra]
    cfg = load_config(CONFIGS / f"train_{name}.config", keys)
    return randomize_(build_denoiser(cfg, announce=False), scale=0.2, seed=1).double()


# Every config without gradients (sampling); with gradients (training: checkpointed chunks and
# layers) one config per representation and structure stack, as tracing is slow on the CPU.
CASES = [(name, False) for name in TRAIN_CONFIGS] + [
    (name, True) for name in ("baseline", "stage2", "stage3v2", "stage4", "mhc_flash")
]


@pytest.mark.parametrize(("name", "grad"), CASES)
def test_shipped_forward_compiles_without_graph_breaks(name, grad):
    """The forward of each shipped config, given its eagerly built graph, is one graph."""
    model = shipped_model(name).train(grad)
    x, t, mask = (v.float() if v.is_floating_point() else v for v in denoiser_batch(40, 1))
    graph = model.build_graph(x, mask)
    context = contextlib.nullcontext() if grad else torch.no_grad()
    with context:
        if grad:  # adaptive checkpointing measures its layers (eagerly) in its first step
            model(x, t, mask, graph=graph)
        report = dynamo.explain(lambda x, t, m, g: model(x, t, m, graph=g))(x, t, mask, graph)
    reasons = [r.reason.splitlines()[0] for r in report.break_reasons]
    assert report.graph_break_count == 0, reasons
    assert report.graph_count == 1


@pytest.mark.parametrize("name", ["quickstart", "stage3v2", "stage4", "mhc_flash"])
def test_compiled_forward_and_backward_equal_eager(name):
    """Outputs, input gradients and every parameter gradient (float64, padded batch)."""
    dynamo.reset()
    model = tiny_model(name).train()
    x, t, mask = denoiser_batch(17, 2, seed=2, pad_last=4)
    compiled = CompiledDenoiser(model, mode="default", backend="aot_eager")
    results = []
    for run in (model, compiled):
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(0)
        out = run(xi, t, mask)
        grads = torch.autograd.grad(out.square().sum(), [xi, *model.parameters()],
                                    allow_unused=True)  # fmt: skip
        results.append((out, *grads))
    assert compiled.failed is None
    assert results[0][0].abs().max() > 1e-3
    for got, want in zip(results[1], results[0], strict=True):
        if want is None:
            assert got is None
        else:
            assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_recompiles_are_bounded_when_the_length_changes():
    """Automatic dynamic shapes: the second length recompiles once with n symbolic, later
    lengths (and column widths) reuse it."""
    dynamo.reset()
    compiles = []

    def counting_backend(graph, inputs):
        compiles.append(graph)
        return graph.forward

    model = tiny_model("stage3v2").eval()
    compiled = CompiledDenoiser(model, mode="default", backend=counting_backend)
    with torch.no_grad():
        for n in (16, 17, 18, 19, 20):  # sparseChunkSize 5: 4 chunks for every length
            x, t, mask = denoiser_batch(n, 1, seed=n)
            assert_close(compiled(x, t, mask), model(x, t, mask), rtol=1e-12, atol=1e-12)
    assert len(compiles) == 2  # static for n = 16, then one graph with n symbolic


def test_many_chunks_compile_as_often_however_many_they_are():
    """More than MAX_UNROLLED chunks of the sparse layers run through the chunk function
    (genie/utils/chunking.py): 10 or 18 chunks compile the same graphs (their operations
    counted; unrolled, the count would grow with the chunks), and the output and every gradient
    still equal eager (float64)."""
    counts = []
    for n in (20, 36):  # sparseChunkSize 2
        dynamo.reset()
        compiles = []

        def counting_backend(graph, inputs, compiles=compiles):
            compiles.append(len(graph.graph.nodes))
            return graph.forward

        model = tiny_model("stage3v2", "sparseChunkSize=2").train()
        x, t, mask = denoiser_batch(n, 1, seed=n)
        compiled = CompiledDenoiser(model, mode="default", backend=counting_backend)
        results = []
        for run in (model, compiled):
            xi = x.clone().requires_grad_(True)
            out = run(xi, t, mask)
            results.append(
                (out, *torch.autograd.grad(out.square().sum(), [xi, *model.parameters()]))
            )
        assert compiled.failed is None
        for got, want in zip(results[1], results[0], strict=True):
            assert_close(got, want, rtol=1e-10, atol=1e-10)
        counts.append(sum(compiles))
    assert counts[0] == counts[1], counts


def test_a_compiler_failure_falls_back_to_eager_with_one_warning(caplog):
    def broken_backend(graph, inputs):
        raise RuntimeError("backend exploded")

    model = tiny_model("quickstart").eval()
    compiled = CompiledDenoiser(model, mode="default", backend=broken_backend)
    x, t, mask = denoiser_batch(12, 1)
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        first = compiled(x, t, mask)
        second = compiled(x, t, mask)
    assert_close(first, model(x, t, mask))
    assert_close(second, first)
    assert "backend exploded" in (compiled.failed or "")
    assert sum("torch.compile failed" in r.message for r in caplog.records) == 1


def test_compile_mode_choice():
    assert resolve_compile_mode("auto", "cpu") == "off"
    assert resolve_compile_mode("auto", "cuda") == "default"
    assert resolve_compile_mode("auto", "cuda", auto="reduce-overhead") == "reduce-overhead"
    assert resolve_compile_mode("max-autotune", "cpu") == "max-autotune"
    with pytest.raises(ValueError, match="compileModel"):
        resolve_compile_mode("fast", "cuda")
    model = tiny_model("quickstart")
    assert maybe_compile(model, mode="off") is model
    assert isinstance(maybe_compile(model, mode="default"), CompiledDenoiser)


def test_the_compiled_model_keeps_the_module_state_dict():
    model = tiny_model("stage3v2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compiled = CompiledDenoiser(model, mode="default", backend="eager")
    assert compiled.model is model and not isinstance(compiled, torch.nn.Module)
    assert model.state_dict().keys() == before.keys()


# --- GPU: inductor and CUDA graphs --------------------------------------------------------------

NO_DROPOUT = ["ipaDropout=0", "structureTransitionDropout=0", "triangularDropout=0"]


def outputs_and_gradients(run, x, t, mask, params) -> list[torch.Tensor | None]:
    """The output of ``run(x, t, mask)`` and the gradients of its squared sum with respect to
    ``x`` and ``params``, copied at once (a CUDA graph's outputs are overwritten by its next
    replay)."""
    torch.manual_seed(0)
    xi = x.clone().requires_grad_(True)
    out = run(xi, t, mask)
    grads = torch.autograd.grad(out.square().sum(), [xi, *params], allow_unused=True)
    return [out.detach().clone()] + [g if g is None else g.clone() for g in grads]


def compiled_against_float64(model, x, t, mask, *, mode: str) -> dict[str, float]:
    """Every tensor (output, input gradient, parameter gradients) where the compiled fp32 model
    (its first call and a replay) is further from the eager fp64 model than 10× the eager fp32
    model's own rounding error, plus 1e-6 of the tensor's norm (or of 1e-3 of all parameter
    gradients' norm, for a gradient that is zero but for rounding: the per-head bias of
    attention logits, which softmax cancels). Returns {tensor: error / allowed}."""
    reference = copy.deepcopy(model).double()
    truth = outputs_and_gradients(reference, x.double(), t, mask, list(reference.parameters()))
    params = list(model.parameters())
    eager = outputs_and_gradients(model, x, t, mask, params)
    compiled = CompiledDenoiser(model, mode=mode)
    runs = {"first call": outputs_and_gradients(compiled, x, t, mask, params)}
    runs["replay"] = outputs_and_gradients(compiled, x, t, mask, params)
    assert compiled.failed is None, f"compilation fell back to eager: {compiled.failed}"
    names = ["output", "input gradient"] + [n for n, _ in model.named_parameters()]
    floor = 1e-3 * torch.stack([g.norm() for g in truth[2:] if g is not None]).norm()
    over = {}
    for call, got in runs.items():
        for label, c, e, want in zip(names, got, eager, truth, strict=True):
            if want is None:
                continue
            scale = want.norm() if label in names[:2] else torch.maximum(want.norm(), floor)
            allowed = 10 * (e.double() - want).norm() + 1e-6 * scale
            ratio = float((c.double() - want).norm() / allowed)
            if not ratio <= 1:
                over[f"{call}: {label}"] = ratio
    return over


@pytest.mark.parametrize("name", ["quickstart", "stage3v2"])
def test_inductor_equals_eager_on_cpu(name):
    """Inductor's generated CPU code (not only the captured graph, as the ``aot_eager`` tests
    above): a tiny fp32 model, padded batch, output and every gradient as close to the fp64
    eager model as the eager fp32 model is (:func:`compiled_against_float64`). The CPU stand-in
    for the GPU test below, so that CI runs the real compiler. Two chunks of the sparse layers
    (16 + 5 residues), not the tiny config's five: each chunk adds compile time."""
    dynamo.reset()
    model = tiny_model(name, "sparseChunkSize=16").float().train()
    x, t, mask = denoiser_batch(21, 2, seed=3, pad_last=5)
    over = compiled_against_float64(model, x.float(), t, mask.float(), mode="default")
    assert not over, sorted(over.items(), key=lambda item: -item[1])[:20]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
@pytest.mark.parametrize("name", ["baseline", "stage3v2", "stage4", "mhc_flash"])
def test_inductor_equals_eager_on_gpu(name, mode):
    """fp32 (TF32 off, FlashIPA's Q/K too), padded batch: the compiled model's output, input
    and parameter gradients are as close to the eager model in float64 as the eager fp32 model
    is (10× its error, :func:`compiled_against_float64`): the kernels sum in another order, and
    a compiler bug would be orders of magnitude further off. Dropout is off (inductor draws its
    masks with its own generator) and the zero-initialised final layers are filled, so that the
    output is not trivially zero."""
    dynamo.reset()
    torch.backends.cuda.matmul.allow_tf32 = False
    # FlashIPA's fp16 Q/K (its GPU default) has its own test against the math reference
    # (tests/model/structure/test_flash_ipa.py); here it runs in fp32, as the rest
    keys = ["matmulPrecision=highest", "flashQKDtype=fp32", *NO_DROPOUT]
    model = shipped_model(name, *keys).cuda().float().train()
    gen = torch.Generator(device="cuda").manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.1, generator=gen)
    x, t, mask = (v.cuda() for v in denoiser_batch(300, 2, seed=3, pad_last=37))
    over = compiled_against_float64(model, x.float(), t, mask, mode=mode)
    assert not over, sorted(over.items(), key=lambda item: -item[1])[:20]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["stage3v2", "baseline"])
def test_graph_captured_reverse_process_equals_eager(name):
    """Same seeds, a 50-call DDIM pass (η = 1, noise injected) in fp32: the backbone of the
    CUDA-graph run equals the eager one to rounding."""
    from genie.model.build import build_schedule
    from genie.sampling.chains import ChainBatch
    from genie.sampling.ddim import DDIMSampler
    from genie.sampling.reverse import reverse_process

    dynamo.reset()
    torch.backends.cuda.matmul.allow_tf32 = False
    cfg = load_config(CONFIGS / f"train_{name}.config", ["matmulPrecision=highest"])
    model = build_denoiser(cfg, announce=False).cuda().eval()
    sampler = DDIMSampler(schedule=build_schedule(cfg), stride=20, eta=1.0, temperature=0.6)
    out = []
    for run in (model, CompiledDenoiser(model, mode="reduce-overhead")):
        chains = ChainBatch(lengths=[256, 200], seeds=[5, 6], device="cuda")
        out.append(reverse_process(run, sampler, chains).coords)
    for got, want in zip(out[1], out[0], strict=True):
        assert_close(got, want, rtol=1e-3, atol=1e-3)
