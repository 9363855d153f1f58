"""Layer checkpointing: which layers each strategy picks, the saved-bytes measurement, and that
checkpointed models (nested with the layers' own recomputation) give the plain gradients."""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import TINY_MODEL, helix_trace, randomize_
from torch import nn
from torch.nn import functional as F
from torch.testing import assert_close

from genie.config import load_config
from genie.model.build import build_denoiser, layer_checkpointing
from genie.model.representations import PairFactors
from genie.utils.checkpointing import (
    AdaptiveCheckpointing,
    LayerCheckpointing,
    SelectiveCheckpointing,
    UniformCheckpointing,
    largest_covering,
    length_bucket,
    recompute_disabled,
    saved_bytes,
)

F64 = 8  # bytes per float64 element


class Counting(nn.Module):
    """``x [b, c] -> x + pad(exp(x[:, :width]))``: saves exactly its ``[b, width]`` exp result for
    backward (slicing, padding and adding save no tensor). Counts its forward calls."""

    def __init__(self, width: int):
        super().__init__()
        self.width, self.calls = width, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x + F.pad(torch.exp(x[:, : self.width]), (0, x.shape[1] - self.width))


def run_stack(policy, layers, x, *, kind="pair", n=10, first_index=0):
    for i, layer in enumerate(layers):
        x = policy.run(kind, first_index + i, n, layer, x)
    return x


def checkpointed(layers, step) -> set[int]:
    """Indices of the layers that ran twice (forward + recomputation) in ``step()``."""
    for layer in layers:
        layer.calls = 0
    step()
    return {i for i, layer in enumerate(layers) if layer.calls == 2}


def train_step(policy, layers, *, b=2, n=10, kind="pair"):
    x = torch.randn(b, 16, dtype=torch.float64, requires_grad=True)
    run_stack(policy, layers, x, kind=kind, n=n).sum().backward()
    return x.grad


def test_length_bucket():
    assert [length_bucket(n) for n in (1, 2, 3, 4, 5, 64, 65, 1000)] == [
        1, 2, 4, 4, 8, 64, 128, 1024,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="at least 1"):
        length_bucket(0)


def test_largest_covering_by_hand():
    sizes = {("pair", 0): 10, ("pair", 1): 40, ("structure", 0): 30, ("structure", 1): 20}
    assert largest_covering(sizes, 0.5) == {("pair", 1), ("structure", 0)}  # 40 + 30 ≥ 50
    assert largest_covering(sizes, 0.4) == {("pair", 1)}  # 40 ≥ 40
    assert largest_covering(sizes, 0.41) == {("pair", 1), ("structure", 0)}
    assert largest_covering(sizes, 1.0) == set(sizes)
    assert largest_covering(sizes, 0.0) == set()
    tied = {("pair", 0): 5, ("pair", 1): 5}
    assert largest_covering(tied, 0.5) == {("pair", 0)}  # ties: execution order
    assert largest_covering({("pair", 0): 0}, 1.0) == set()


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (LayerCheckpointing(), set()),
        (UniformCheckpointing(every=1), {0, 1, 2, 3, 4, 5, 6}),
        (UniformCheckpointing(every=3), {0, 3, 6}),
        (SelectiveCheckpointing(kinds=["pair"]), {0, 1, 2, 3, 4, 5, 6}),
        (SelectiveCheckpointing(kinds=["structure"]), set()),
    ],
)
def test_uniform_and_selective_pick_their_layers(policy, expected):
    layers = [Counting(2) for _ in range(7)]
    assert checkpointed(layers, lambda: train_step(policy, layers)) == expected


def test_selective_checks_kind_and_run_rejects_unknown_kinds():
    layers = [Counting(2) for _ in range(2)]
    policy = SelectiveCheckpointing(kinds=["structure"])
    assert checkpointed(layers, lambda: train_step(policy, layers, kind="structure")) == {0, 1}
    with pytest.raises(ValueError, match="unknown kind 'msa'"):
        policy.run("msa", 0, 10, layers[0], torch.ones(1, 4))
    with pytest.raises(ValueError, match="checkpointModules: unknown kind"):
        SelectiveCheckpointing(kinds=["pair", "msa"])


def test_adaptive_measures_then_checkpoints_the_largest_layers():
    widths = [2, 8, 4, 6]  # saved elements per row: total 20, the two largest (8 + 6) cover ≥ half
    layers = [Counting(w) for w in widths]
    policy = AdaptiveCheckpointing(fraction=0.5)
    b = 3
    # Measuring step: every layer gets a dry forward, then runs checkpointed (3 calls each).
    for layer in layers:
        layer.calls = 0
    train_step(policy, layers, b=b, n=10)
    assert [layer.calls for layer in layers] == [3, 3, 3, 3]
    assert policy.measured(10) == {("pair", i): b * w * F64 for i, w in enumerate(widths)}
    assert policy.chosen(10) is None  # decided at the next step
    assert checkpointed(layers, lambda: train_step(policy, layers, b=b, n=10)) == {1, 3}
    assert policy.chosen(10) == {("pair", 1), ("pair", 3)}
    # Same bucket (9..16), other length: the decision holds; a new bucket measures again.
    assert checkpointed(layers, lambda: train_step(policy, layers, b=b, n=16)) == {1, 3}
    assert policy.chosen(17) is None and policy.measured(17) == {}
    train_step(policy, layers, b=b, n=17)
    assert set(policy.measured(32)) == {("pair", i) for i in range(4)}


def test_adaptive_fraction_extremes():
    layers = [Counting(w) for w in (2, 8)]
    none = AdaptiveCheckpointing(fraction=0.0)
    assert checkpointed(layers, lambda: train_step(none, layers)) == set()
    assert none.measured(10) == {}  # nothing to decide: no dry forward either
    every = AdaptiveCheckpointing(fraction=1.0)
    train_step(every, layers)
    assert checkpointed(layers, lambda: train_step(every, layers)) == {0, 1}


@pytest.mark.parametrize(
    "policy",
    [UniformCheckpointing(every=1), SelectiveCheckpointing(kinds=["pair"]),
     AdaptiveCheckpointing(fraction=1.0)],
)  # fmt: skip
def test_no_op_without_gradients(policy):
    layers = [Counting(3) for _ in range(3)]
    x = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        out = run_stack(policy, layers, x)
    assert [layer.calls for layer in layers] == [1, 1, 1]
    assert not out.requires_grad
    if isinstance(policy, AdaptiveCheckpointing):
        assert policy.measured(10) == {}


def test_checkpointed_toy_stack_gradients_equal_plain():
    layers = [Counting(w) for w in (3, 5, 2)]
    torch.manual_seed(0)
    plain = train_step(LayerCheckpointing(), layers)
    torch.manual_seed(0)
    assert_close(train_step(UniformCheckpointing(every=1), layers), plain, rtol=0, atol=0)


class ScaledExp(nn.Module):
    def __init__(self, n: int):
        super().__init__()
        self.w = nn.Parameter(torch.full((n,), 0.5, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = (x * self.w).exp()  # mul saves x (input) and w (parameter); exp saves r
        return r.sin() * 3.0  # sin saves r again (one storage); scaling by a number saves nothing


def test_saved_bytes_by_hand():
    n = 50
    x = torch.randn(n, dtype=torch.float64, requires_grad=True)
    assert saved_bytes(ScaledExp(n), x) == n * F64  # r once; x and w excluded
    # Without the exclusions (a plain function), x and w count too.
    layer = ScaledExp(n)
    assert saved_bytes(lambda: layer(x)) == 3 * n * F64
    # Inputs inside dataclasses are excluded as well; a tensor in float32 counts 4 bytes/element.
    u, v = torch.randn(2, 4, 2, 3, requires_grad=True), torch.randn(2, 4, 2, 3, requires_grad=True)
    assert saved_bytes(lambda pair: pair.u.exp() * pair.v, PairFactors(u, v)) == 48 * 4


def test_saved_bytes_leaves_rng_and_autograd_state_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    with torch.no_grad():
        saved_bytes(lambda: F.dropout(torch.ones(100, requires_grad=True), 0.5))
        assert not torch.is_grad_enabled()
    assert_close(torch.rand(4), expected, rtol=0, atol=0)


def test_layer_checkpointing_from_config():
    assert type(layer_checkpointing(load_config(None, []))) is LayerCheckpointing
    on = ["useGradientCheckpointing=True"]
    uniform = layer_checkpointing(load_config(None, on + ["checkpointEveryNLayers=3"]))
    assert isinstance(uniform, UniformCheckpointing) and uniform.every == 3
    sel = layer_checkpointing(
        load_config(None, on + ["checkpointingStrategy=selective", "checkpointModules=structure"])
    )
    assert isinstance(sel, SelectiveCheckpointing) and sel.kinds == {"structure"}
    ada = layer_checkpointing(
        load_config(None, on + ["checkpointingStrategy=adaptive", "adaptiveCheckpointFraction=0.3"])
    )
    assert isinstance(ada, AdaptiveCheckpointing) and ada.fraction == 0.3


# --- whole models: every stack kind, every strategy ---------------------------------------------

DEPTHS = ["numPairTransformLayers=3", "structureEncoderDepth=3"]
VARIANTS = {
    "dense": ["includeTriangularAttention=True"],
    "factor": [
        "useFactorizedPairs=True", "useFactorizedTriangleOps=True", "zFactorRank=2",
        "pairFactorDim=6", "triangleUpdateRank=2", "numTriangleLayers=2",
        "includeTriangularAttention=True", "triangleAttentionChunkSize=5",
    ],
    "flash_mhc": [
        "useFactorizedPairs=True", "includeTriangularMultiplicativeUpdate=False",
        "useFlashMode=True", "zFactorRank=2", "pairFactorDim=6", "useMHCMode=True",
        "mhcExpansionRate=2",
    ],
}  # fmt: skip
STRATEGIES = {
    "uniform_1": ["checkpointEveryNLayers=1"],
    "uniform_2": ["checkpointEveryNLayers=2"],
    "selective_pair": ["checkpointingStrategy=selective", "checkpointModules=pair"],
    "selective_structure": ["checkpointingStrategy=selective", "checkpointModules=structure"],
    "adaptive": ["checkpointingStrategy=adaptive", "adaptiveCheckpointFraction=0.5"],
}


def build(variant: str, *extra: str):
    cfg = load_config(None, TINY_MODEL + DEPTHS + VARIANTS[variant] + list(extra))
    return randomize_(build_denoiser(cfg), scale=0.2, seed=1).double().train()  # dropout on


def inputs(n=11):
    gen = torch.Generator().manual_seed(2)
    x = torch.stack([helix_trace(n, generator=gen) for _ in range(2)]).double() * 1.5
    mask = torch.ones(2, n, dtype=torch.float64)
    mask[1, -3:] = 0
    weights = torch.randn(2, n, 3, generator=gen, dtype=torch.float64)
    return x, torch.tensor([30, 700]), mask, weights


def gradients(model, seed: int) -> dict[str, torch.Tensor]:
    """Gradients of a fixed weighting of ε̂ for every parameter and the input coordinates."""
    x, t, mask, weights = inputs()
    x.requires_grad_(True)
    model.zero_grad()
    torch.manual_seed(seed)  # the same dropout masks in every run
    (model(x, t, mask) * weights).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return grads | {"coords": x.grad}


@functools.cache
def reference(variant: str) -> dict[str, torch.Tensor]:
    """Plain model, every activation stored (no layer checkpoints, no inner recomputation)."""
    with recompute_disabled():
        return gradients(build(variant), seed=0)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_checkpointed_gradients_equal_plain(variant, strategy):
    model = build(variant, "useGradientCheckpointing=True", *STRATEGIES[strategy])
    expected = reference(variant)
    steps = 2 if strategy == "adaptive" else 1  # adaptive: the measuring step, then its choice
    for step in range(steps):
        got = gradients(model, seed=0)
        assert got.keys() == expected.keys()
        for name, grad in expected.items():
            assert_close(got[name], grad, msg=lambda m, name=name, step=step: f"{name} {step}: {m}")
    # The checkpoints were real: the model now stores fewer bytes for backward.
    x, t, mask, _ = inputs()
    plain = build(variant)
    assert saved_bytes(model, x, t, mask) < saved_bytes(plain, x, t, mask)
    if strategy == "adaptive":
        chosen = model.structure.checkpointing.chosen(x.shape[1])
        assert chosen and len(chosen) < 6  # a proper subset of the 3 + 3 layers


def test_checkpointing_everything_saves_least():
    x, t, mask, _ = inputs()
    every = saved_bytes(build("dense", "useGradientCheckpointing=True"), x, t, mask)
    some = saved_bytes(build("dense", "useGradientCheckpointing=True", *STRATEGIES["uniform_2"]),
                       x, t, mask)  # fmt: skip
    assert every < some < saved_bytes(build("dense"), x, t, mask)
