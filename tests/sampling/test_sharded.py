"""Sampling on sequence shards (genie/sampling/sharded.py) gives the backbones (and trajectory
frames) of one process, with the length-aware noise scale and re-centring."""

from __future__ import annotations

import torch


def test_sharded_sampling_equals_unsharded(sequence_parallel_results):
    one, sharded = (sequence_parallel_results["sampling"][k] for k in ("one", "sharded"))
    assert [c.shape for c in sharded.coords] == [(13, 3), (9, 3)]
    assert min(sequence_parallel_results["sampling"]["scales"]) > 2.0  # σ(L) Å, not unit noise
    for a, b in zip(one.coords, sharded.coords, strict=True):
        assert torch.equal(a, b)
        assert float(a.mean(0).abs().max()) < 1e-5  # re-centred
    assert sharded.frame_timesteps == one.frame_timesteps == [4, 2, 0]
    for frames, ref in zip(sharded.trajectories, one.trajectories, strict=True):
        assert len(frames) == len(ref) == 3
        assert all(torch.equal(a, b) for a, b in zip(frames, ref, strict=True))
