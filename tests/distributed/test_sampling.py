"""Sampling on sequence shards gives the backbones (and trajectory frames) of one process."""

from __future__ import annotations

import torch


def test_sharded_sampling_equals_unsharded(sequence_parallel_results):
    one, sharded = (sequence_parallel_results["sampling"][k] for k in ("one", "sharded"))
    assert [c.shape for c in sharded.coords] == [(13, 3), (9, 3)]
    for a, b in zip(one.coords, sharded.coords, strict=True):
        assert torch.equal(a, b)
    assert sharded.frame_timesteps == one.frame_timesteps == [4, 2, 0]
    for frames, ref in zip(sharded.trajectories, one.trajectories, strict=True):
        assert len(frames) == len(ref) == 3
        assert all(torch.equal(a, b) for a, b in zip(frames, ref, strict=True))
