"""The sparse k-NN model of stages 3 V2 and 4: graph bookkeeping, SE(3) invariance, padding,
chunking, graph reuse, and no n×n tensor anywhere (forward and backward)."""

from pathlib import Path

import pytest
import torch
from helpers import (
    SPARSE_TINY,
    assert_rotates_with_input,
    denoiser_batch,
    forbid_allocations_at_least,
    helix_trace,
    randomize_,
)
from torch.testing import assert_close

from genie.config import load_config
from genie.geometry.graph import KnnGraph
from genie.geometry.knn import knn_graph
from genie.model.build import build_denoiser

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
SMALL = SPARSE_TINY


def stage_model(name: str, *extra: str):
    cfg = load_config(CONFIGS / f"train_{name}.config", SMALL + list(extra))
    return build_denoiser(cfg)


def test_edge_lookup_and_lists_match_brute_force():
    gen = torch.Generator().manual_seed(0)
    coords = torch.randn(2, 17, 3, generator=gen) * 5
    mask = torch.ones(2, 17, dtype=torch.bool)
    mask[0, 12:] = False
    index, valid = knn_graph(coords, mask, k=4, strategy="hybrid")
    graph = KnnGraph.from_neighbors(index, valid, torch.zeros_like(index))
    edges = {(b, i, int(index[b, i, s])): i * 4 + s
             for b in range(2) for i in range(17) for s in range(4) if valid[b, i, s]}  # fmt: skip
    src = torch.randint(0, 17, (2, 50), generator=gen)
    dst = torch.randint(0, 17, (2, 50), generator=gen)
    src[:, :20] = torch.arange(20) % 17  # make sure some queries hit real edges
    dst[:, :20] = index[:, torch.arange(20) % 17, 0]
    got = graph.edge_id(src, dst)
    want = torch.tensor(
        [[edges.get((b, int(s), int(d)), -1) for s, d in zip(src[b], dst[b], strict=True)]
         for b in range(2)]
    )  # fmt: skip
    assert (want[:, :20] >= 0).any()
    assert torch.equal(got, want)
    # every valid edge appears once in the column list of its target, nothing else does
    cols = graph.column_lists
    for b in range(2):
        listed = sorted(int(e) for e in cols[b].flatten() if e >= 0)
        assert listed == sorted(e for (bb, _, _), e in edges.items() if bb == b)
        for j in range(17):
            for e in cols[b, j]:
                if e >= 0:
                    assert int(index[b, int(e) // 4, int(e) % 4]) == j


@pytest.mark.parametrize("stage", ["stage3v2", "stage4"])
def test_stage_model_is_se3_equivariant_and_ignores_padding(stage):
    """ε̂ rotates with x_t and ignores translations and padding (coordinate-dependent graph)."""
    model = randomize_(stage_model(stage), scale=0.2, seed=3).double().eval()
    x, t, mask = denoiser_batch(15, 1, seed=4)
    eps = assert_rotates_with_input(model, x, t, mask)
    with torch.no_grad():
        padded = torch.cat([x, torch.full((1, 6, 3), 1e3, dtype=x.dtype)], dim=1)
        pmask = torch.cat([mask, torch.zeros(1, 6, dtype=mask.dtype)], dim=1)
        out = model(padded, t, pmask)
        assert_close(out[:, :15], eps)
        assert out[:, 15:].abs().max() == 0


def test_graph_reuse_and_chunking_change_nothing():
    model = randomize_(stage_model("stage4"), scale=0.2, seed=5).double().eval()
    gen = torch.Generator().manual_seed(6)
    x = helix_trace(20, generator=gen)[None].double()
    t, mask = torch.tensor([50]), torch.ones(1, 20, dtype=torch.float64)
    with torch.no_grad():
        eps = model(x, t, mask)
        assert_close(model(x, t, mask, graph=model.build_graph(x, mask)), eps)
        model.pair_encoder.chunk_size = None
        for layer in model.structure.layers:
            layer.ipa.chunk_size = None
        assert_close(model(x, t, mask), eps)
        # a graph from a different trace gives a different answer (the graph is really used)
        other = model.build_graph(x + 3 * torch.randn(x.shape, generator=gen, dtype=x.dtype), mask)
        assert (model(x, t, mask, graph=other) - eps).abs().max() > 1e-6


@pytest.mark.parametrize("stage", ["stage3v2", "stage4"])
def test_no_n_by_n_tensor_at_4096(stage):
    """No operator, forward or backward, returns a tensor with two residue axes or n² elements."""
    n = 4096
    tiny = ["kNeighbors=4", "sparseChunkSize=512", "knnChunkSize=512", "numPairTransformLayers=1",
            "numTriangleLayers=1", "structureEncoderDepth=1"]  # fmt: skip
    model = stage_model(stage, *tiny).train()
    x = helix_trace(n, generator=torch.Generator().manual_seed(7))[None]
    with forbid_allocations_at_least(n * n // 4, square=n) as limit:
        out = model(x, torch.tensor([100]), torch.ones(1, n))
        (out**2).sum().backward()
    assert limit.largest >= 512 * n  # the k-NN distance blocks were seen


@pytest.mark.parametrize("strategy", ["uniform", "adaptive"])
def test_checkpointed_sparse_stack_gives_plain_gradients(strategy):
    """Whole-layer checkpointing of the sparse pair and structure stacks (two steps, so that the
    adaptive policy measures and then selects) leaves every gradient unchanged."""
    on = [f"checkpointingStrategy={strategy}", "adaptiveCheckpointFraction=0.6"]
    plain = randomize_(stage_model("stage4", "useGradientCheckpointing=False"), seed=9).double()
    ckpt = stage_model("stage4", *on).double()
    ckpt.load_state_dict(plain.state_dict())
    gen = torch.Generator().manual_seed(10)
    x = helix_trace(18, generator=gen)[None].double()
    t, mask = torch.tensor([200]), torch.ones(1, 18, dtype=torch.float64)
    for _ in range(2):
        grads = []
        for model in (plain, ckpt):
            model.zero_grad()
            (model(x, t, mask) ** 2).sum().backward()
            grads.append([p.grad for p in model.parameters()])
        for a, b in zip(*grads, strict=True):
            assert_close(a, b)


def test_stage4_shares_adjacent_pair_layers():
    four = ("numPairTransformLayers=4", "numTriangleLayers=4")
    model = stage_model("stage4", *four)
    layers = list(model.pair_encoder.stack.layers)
    assert layers[0] is layers[1] and layers[2] is layers[3] and layers[0] is not layers[2]
    unshared = stage_model("stage4", *four, "useModelCompression=False")
    per_layer = sum(p.numel() for p in unshared.pair_encoder.stack.layers[0].parameters())
    saved = sum(p.numel() for p in unshared.pair_encoder.stack.parameters()) - sum(
        p.numel() for p in model.pair_encoder.stack.parameters()
    )
    assert saved == 2 * per_layer  # 4 layers stored as 2
