"""Self-conditioning (``selfConditioning``, ``selfConditionGraph``): off is today's model, on adds
only zero-initialised weights, reads only distances of x̂0, and can build the graph from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import SPARSE_TINY, TINY_MODEL, denoiser_batch, random_rotation, randomize_
from torch.testing import assert_close

from genie.config import ConfigError, load_config
from genie.model import build_denoiser

REPO = Path(__file__).resolve().parents[2]
NO_DROPOUT = ["ipaDropout=0", "structureTransitionDropout=0", "triangularDropout=0"]
KINDS = {
    "dense": (None, TINY_MODEL + NO_DROPOUT),
    "factor": (None, TINY_MODEL + NO_DROPOUT + ["useFactorizedPairs=True", "pairFactorDim=6",
                                                "includeTriangularMultiplicativeUpdate=False"]),
    "factor_flash": (None, TINY_MODEL + NO_DROPOUT + [
        "useFactorizedPairs=True", "useFlashMode=True", "pairFactorDim=6", "kNeighbors=5",
        "includeTriangularMultiplicativeUpdate=False"]),
    "sparse": (REPO / "configs" / "train_stage3v2.config", SPARSE_TINY),
}  # fmt: skip


def build(kind: str, *extra: str, seed: int = 0):
    path, keys = KINDS[kind]
    torch.manual_seed(seed)
    return build_denoiser(load_config(path, keys + list(extra))).double().eval()


def x0_guess(x: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """A previous "prediction": the trace shrunk and perturbed."""
    gen = torch.Generator().manual_seed(seed)
    return 0.7 * x + torch.randn(x.shape, generator=gen, dtype=x.dtype)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_on_adds_only_zero_weights_and_starts_as_the_model_without_it(kind):
    """The same seed gives every weight of the model without self-conditioning (its extra
    weights draw no random numbers), the extras start at zero, so it computes the same."""
    off, on = build(kind), build(kind, "selfConditioning=True")
    assert not off.self_conditioning and on.self_conditioning
    off_state, on_state = off.state_dict(), on.state_dict()
    extra = [k for k in on_state if k not in off_state]
    assert extra and all(k.startswith("pair_encoder.sc_features.") for k in extra)
    assert all(torch.equal(on_state[k], v) for k, v in off_state.items())
    assert all(not on_state[k].any() for k in extra)
    # Trained weights of the model without it; with its extras still zero: equal outputs.
    randomize_(off, scale=0.2, seed=3)
    on.load_state_dict(off.state_dict(), strict=False)
    x, t, mask = denoiser_batch(11, pad_last=3)
    with torch.no_grad():
        plain = off(x, t, mask)
        assert plain.abs().max() > 1e-3
        assert torch.equal(on(x, t, mask), plain)
        assert torch.equal(on(x, t, mask, self_condition=x0_guess(x)), plain)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_x0_changes_the_output_through_its_distances_only(kind):
    model = randomize_(build(kind, "selfConditioning=True"), scale=0.2, seed=4)
    x, t, mask = denoiser_batch(11, pad_last=3)
    x0 = x0_guess(x)
    gen = torch.Generator().manual_seed(6)
    q1, q2 = random_rotation(gen, x.dtype), random_rotation(gen, x.dtype)
    with torch.no_grad():
        absent, given = model(x, t, mask), model(x, t, mask, self_condition=x0)
        # x rotated and moved, x0 rotated and moved on its own: ε̂ rotates with x only
        moved = model(x @ q1.T + 5.0, t, mask, self_condition=x0 @ q2.T - 3.0)
    assert (given - absent).abs().max() > 1e-3
    assert_close(moved, given @ q1.T)


def test_a_model_without_self_conditioning_refuses_an_x0():
    model = build("dense")
    x, t, mask = denoiser_batch(9)
    with pytest.raises(ValueError, match="no self-conditioning"):
        model(x, t, mask, self_condition=x)


def test_self_condition_graph_is_searched_on_x0():
    """selfConditionGraph: the graph of (x, x̂0) is the graph of x̂0; without it, of x."""
    x, _, mask = denoiser_batch(14, pad_last=2)
    x0 = x0_guess(x, seed=2)[:, torch.randperm(14, generator=torch.Generator().manual_seed(0))]
    on = build(
        "sparse", "selfConditioning=True", "selfConditionGraph=True", "knnStrategy=coordinate"
    )
    plain = build("sparse", "selfConditioning=True", "knnStrategy=coordinate")
    from_x0 = on.build_graph(x, mask, self_condition=x0)
    assert torch.equal(from_x0.index, on.build_graph(x0, mask).index)
    assert not torch.equal(from_x0.index, on.build_graph(x, mask).index)
    assert torch.equal(plain.build_graph(x, mask, self_condition=x0).index,
                       plain.build_graph(x, mask).index)  # fmt: skip
    assert torch.equal(on.build_graph(x, mask).index, plain.build_graph(x, mask).index)


def test_config_checks_of_the_graph_keys():
    with pytest.raises(ConfigError, match="selfConditionGraph"):
        load_config(None, TINY_MODEL + ["selfConditionGraph=True", "selfConditioning=True"])
    with pytest.raises(ConfigError, match="selfConditionGraph"):
        load_config(REPO / "configs" / "train_stage3v2.config", ["selfConditionGraph=True"])
    with pytest.raises(ConfigError, match="randomNeighbors"):
        load_config(None, TINY_MODEL + ["randomNeighbors=4"])
    keys = ["selfConditioning=True", "selfConditionGraph=True", "randomNeighbors=4"]
    cfg = load_config(REPO / "configs" / "train_stage3v2.config", keys)
    assert cfg.randomNeighbors == 4


def test_random_neighbours_widen_the_graph_of_the_model():
    x, t, mask = denoiser_batch(16)
    model = randomize_(build("sparse", "randomNeighbors=3"), scale=0.2, seed=5)
    seeds = torch.tensor([1, 2])
    graph = model.build_graph(x, mask, seeds=seeds)
    assert graph.k == 6 + 3  # kNeighbors 6 of SPARSE_TINY, then 3 random
    assert torch.equal(graph.index, model.build_graph(x, mask, seeds=seeds).index)
    with torch.no_grad():
        out = model(x, t, mask, graph=graph)
    assert torch.isfinite(out).all()
