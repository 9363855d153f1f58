"""A denoiser on sequence shards computes what it computes on the whole chain: outputs, every
parameter gradient (summed over the shards) and input gradients, in float64, for the stage 3 V2,
stage 4 and mHC + FlashIPA models, on a chain of 13 residues (not a multiple of the shards) and
one of 3 (a shard of padding only); dropout masks too. One shard is the unsharded model exactly;
models that cannot be sharded are refused."""

from __future__ import annotations

import pytest
import torch
from helpers import SPARSE_TINY, denoiser_batch
from sequence_parallel_cases import LENGTH, MODELS, tiny_model
from torch.testing import assert_close

from genie.config import load_config
from genie.distributed import SequenceParallelError, SequenceShards, check_shardable
from genie.distributed import sequence_parallel as on_shards
from genie.model.build import build_denoiser
from genie.model.layout import WHOLE_CHAIN


@pytest.mark.parametrize("name", list(MODELS))
def test_sharded_forward_and_backward_equal_unsharded(sequence_parallel_results, name):
    case = sequence_parallel_results["forward_backward"][name]
    assert case["local_residues"] == 7  # ⌈13 / 2⌉: the shards did split the chains
    assert case["ref"].abs().max() > 1e-2  # a non-trivial prediction
    assert_close(case["out"], case["ref"], rtol=1e-10, atol=1e-10)
    assert case["grads"].keys() == case["ref_grads"].keys()
    assert len(case["ref_grads"]) == sum(1 for _ in tiny_model(name).parameters())  # all of them
    for key, ref in case["ref_grads"].items():
        assert_close(case["grads"][key], ref, rtol=1e-9, atol=1e-10, msg=f"gradient of {key}")
    assert case["ref_x_grad"].abs().max() > 1e-3
    assert_close(case["x_grad"], case["ref_x_grad"], rtol=1e-9, atol=1e-10)


def test_dropout_masks_equal_unsharded(sequence_parallel_results):
    case = sequence_parallel_results["dropout"]
    assert (case["eval"] - case["ref"]).abs().max() > 1e-2  # the masks do change ε̂
    assert_close(case["out"], case["ref"], rtol=1e-10, atol=1e-10)


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo group of this process alone (destroyed afterwards)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        yield dist.group.WORLD
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", ["stage4", "mhc_flash"])
def test_one_shard_is_the_unsharded_model_exactly(one_process_group, name):
    model = tiny_model(name).eval()
    x, t, mask = denoiser_batch(n=LENGTH, b=2, seed=3, pad_last=3)
    outputs, grads = [], []
    for layout in (None, SequenceShards(one_process_group)):
        model.zero_grad()
        if layout is None:
            out = model(x, t, mask)
        else:
            with on_shards(model, layout):
                assert model.pair_encoder.sequence_layout is layout
                out = model(x, t, mask)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    assert model.pair_encoder.sequence_layout is WHOLE_CHAIN  # the block restored it
    assert torch.equal(outputs[1], outputs[0])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ([], "dense pairs"),  # Genie's default model
        (["useFactorizedPairs=True", "useFlashMode=False",
          "includeTriangularMultiplicativeUpdate=False"], "dense IPA"),
        (["useFactorizedPairs=True", "useFlashMode=True", "useFactorizedTriangleOps=True",
          "includeTriangularMultiplicativeUpdate=True"], "triangle updates on factors"),
    ],
)  # fmt: skip
def test_models_that_cannot_be_sharded_are_refused(extra, refused):
    model = build_denoiser(load_config(None, SPARSE_TINY + extra), announce=False)
    with pytest.raises(SequenceParallelError, match=refused):
        check_shardable(model)
    with pytest.raises(SequenceParallelError, match="shards a GenieDenoiser"):
        check_shardable(torch.nn.Linear(2, 2))
    for name in MODELS:
        check_shardable(tiny_model(name))  # the supported ones pass
