"""The training objective on sequence shards equals the unsharded one: the terms of the whole
batch (noise, the chunked multi-scale distance loss, per chain) and, summed over the shards, the
gradients of the shares; processes whose random streams differ are stopped; one shard is the
unsharded objective exactly."""

from __future__ import annotations

import torch
from sequence_parallel_cases import LENGTH, _objective, loss_batch, tiny_model
from torch.testing import assert_close

from genie.distributed import SequenceShards, sequence_parallel
from genie.model.layout import WHOLE_CHAIN


def test_sharded_losses_equal_unsharded(sequence_parallel_results):
    case = sequence_parallel_results["losses"]
    ref, sharded = case["ref"], case["sharded"]
    assert torch.equal(sharded["t"], ref["t"])
    assert_close(sharded["noise"], ref["noise"], rtol=1e-12, atol=0)  # float64
    # the distance loss is computed in fp32 whatever the input: fp32 rounding
    assert ref["distance"] > 1e-3
    assert_close(sharded["distance"], ref["distance"], rtol=1e-6, atol=0)
    assert_close(sharded["total"], ref["total"], rtol=1e-6, atol=0)
    assert_close(sharded["per_chain"], ref["per_chain"], rtol=1e-6, atol=0)
    assert 0 < case["share"] < ref["total"]  # rank 0's share, not the whole
    assert case["grads"].keys() == case["ref_grads"].keys()
    for key, grad in case["ref_grads"].items():
        assert_close(case["grads"][key], grad, rtol=1e-5, atol=1e-8, msg=f"gradient of {key}")


def test_processes_with_different_random_streams_are_stopped(sequence_parallel_results):
    assert "drew different timesteps" in sequence_parallel_results["diverged_streams"]


def test_one_shard_is_the_unsharded_objective_exactly(tmp_path):
    import torch.distributed as dist

    model, batch = tiny_model("stage3v2"), loss_batch()
    assert batch["coords"].shape[1] == LENGTH
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        terms = []
        for layout in (WHOLE_CHAIN, SequenceShards(dist.group.WORLD)):
            with sequence_parallel(model, layout):
                gen = torch.Generator().manual_seed(0)
                terms.append(_objective(model, batch, layout=layout, generator=gen,
                                        distance=True))  # fmt: skip
    finally:
        dist.destroy_process_group()
    for name in ("total", "noise", "distance", "per_chain", "objective"):
        assert torch.equal(getattr(terms[1], name), getattr(terms[0], name)), name
