"""Data parallelism through Lightning on CPU ranks (gloo), float64: a 2-rank DDP run with
gradient accumulation equals one process at the effective batch (weights after every step, the
chains of every step, the synchronised metrics); a resumed 2-rank run equals an uninterrupted
one; every chain of an epoch is trained once; rank 0 alone writes the run folder; the
(data, sequence) device mesh.

One ``torchrun --standalone --nproc_per_node 2`` start runs every 2-rank training of this file
(tests/training/distributed_worker.py); the 1-process reference runs in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, TINY_MODEL

from genie.config import load_config
from genie.training.run import train

WORKER = Path(__file__).with_name("distributed_worker.py")

# 8 training chains, each exactly 32 residues (longer chains cropped, shorter ones joined), so a
# micro-batch of 1 chain and a batch of 4 weigh every chain alike; no dropout (it draws from each
# rank's own stream); clipping and AdamW as in every run
EXACT = [
    *TINY_MODEL, "numWorkers=0", "maximumNumResidues=32", "minimumNumResidues=20",
    "concatenateChains=True", "datasetSize=8", "validationSize=4", "validationFraction=0.2",
    "numTimesteps=100", "learningRate=3e-3", "gradientClipVal=1.0", "logEverySteps=1",
    "seed=3", "accelerator=cpu", "logSamplesEveryEpochs=0", "matmulPrecision=highest",
    "triangularDropout=0", "ipaDropout=0", "structureTransitionDropout=0", "name=run",
]  # fmt: skip
DDP = ["useDistributed=True", "distributedBackend=gloo", "batchSize=1", "effectiveBatchSize=4"]


def _folder(root: Path, *keys: str) -> list[str]:
    return [f"logDirectory={root / 'runs'}", f"cacheDirectory={root / 'cache'}", *keys]


def _weights(root: Path) -> dict[str, torch.Tensor]:
    ckpt = root / "runs" / "run" / "version_0" / "checkpoints" / "last.ckpt"
    return torch.load(ckpt, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 2-rank runs (uninterrupted 2 epochs, float64 and float32; 1 epoch, then resumed for
    the 2nd) and the 1-process run at batch 4, all of 2 epochs of 2 optimiser steps."""
    root = tmp_path_factory.mktemp("distributed")
    whole = root / "whole"
    # float64 for the comparison with one process; the resume in float32: Lightning restores a
    # checkpoint's weights into the module before 64-true converts it, rounding them to float32
    whole32, first = root / "whole32", root / "first"
    resume = first / "runs" / "run" / "version_0" / "checkpoints" / "last.ckpt"
    ddp = EXACT + DDP
    plan = {"runs": [
        {"name": "whole", "overrides": ddp + _folder(whole, "numEpochs=2"), "resume": None,
         "precision": "64-true"},
        {"name": "whole32", "overrides": ddp + _folder(whole32, "numEpochs=2"), "resume": None,
         "precision": "32-true"},
        {"name": "first", "overrides": ddp + _folder(first, "numEpochs=1"), "resume": None,
         "precision": "32-true"},
        {"name": "resumed", "overrides": ddp + _folder(first, "numEpochs=2"),
         "resume": str(resume), "precision": "32-true"},
    ]}  # fmt: skip
    (root / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(WORKER), str(root / "plan.json"), str(root)],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]
    single = root / "single"
    trainer, _ = train(
        load_config(None, EXACT + _folder(single, "numEpochs=2", "batchSize=4")),
        precision="64-true", enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {"root": root, "ranks": ranks, "single": metrics, "single_steps": trainer.global_step}


def test_two_ranks_with_accumulation_equal_one_process_at_the_effective_batch(runs):
    root = runs["root"]
    assert runs["ranks"][0]["world_size"] == 2
    single, ddp = _weights(root / "single"), _weights(root / "whole")
    assert runs["single_steps"] == 4  # 8 chains, 4 per step, 2 epochs
    assert single.keys() == ddp.keys()
    moved = 0
    for key, value in single.items():
        assert value.dtype == torch.float64, key
        torch.testing.assert_close(ddp[key], value, rtol=1e-9, atol=1e-12, msg=key)
        moved += int(not torch.equal(value, _initial(root, key)))
    assert moved > 0.5 * len(single)  # the steps changed the weights


def _initial(root: Path, key: str) -> torch.Tensor:
    """A weight as the seed initialises it (to check that training moved it)."""
    from genie.training.module import GenieModule

    if not hasattr(_initial, "state"):
        cfg = load_config(None, EXACT + _folder(root / "init"))
        torch.manual_seed(cfg.seed)
        _initial.state = GenieModule(cfg).double().state_dict()
    return _initial.state[key]


def test_synchronised_metrics_are_the_global_means(runs):
    # every chain is 32 residues long: the mean over all chains, whichever rank held them
    single, ranks = runs["single"], runs["ranks"]
    for key in ("val/loss", "val/noise_loss", "train/loss_epoch", "train/noise_loss_epoch"):
        for rank in ranks:
            got = rank["runs"]["whole"]["metrics"][key]
            assert got == pytest.approx(single[key], rel=1e-10, abs=1e-12), key


def test_each_epoch_trains_every_chain_once_and_steps_hold_the_same_chains(runs):
    ranks = [rank["runs"]["whole"]["batches"] for rank in runs["ranks"]]
    assert len(ranks[0]) == len(ranks[1]) == 8  # 2 epochs × 2 steps × 2 micro-batches
    for epoch in range(2):
        chains = [i for rank in ranks for e, _, items in rank if e == epoch for i in items]
        assert sorted(chains) == list(range(8))
    # global step s: the same 4 chains as one process at batch 4 (its sampler's step s)
    from genie.data.sampler import LengthBucketBatchSampler
    from genie.training.run import build_datamodule

    module = build_datamodule(load_config(None, EXACT + _folder(runs["root"] / "single")))
    module.setup("fit")
    for epoch in range(2):
        sampler = LengthBucketBatchSampler(module.train_dataset, batch_size=4, shuffle=True,
                                           seed=3)  # fmt: skip
        sampler.set_epoch(epoch)
        for step, batch in enumerate(sampler):
            held = [i for rank in ranks for e, s, items in rank
                    if (e, s) == (epoch, 2 * epoch + step) for i in items]  # fmt: skip
            assert sorted(held) == sorted(key[0] for key in batch)


def test_a_resumed_two_rank_run_equals_the_uninterrupted_one(runs):
    root = runs["root"]
    whole, resumed = _weights(root / "whole32"), _weights(root / "first")
    for key, value in whole.items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)
    second = [b for b in runs["ranks"][0]["runs"]["resumed"]["batches"]]
    assert [e for e, _, _ in second] == [1] * 4  # the resumed run trained epoch 2 only
    assert second == [b for b in runs["ranks"][0]["runs"]["whole32"]["batches"] if b[0] == 1]


def test_rank_zero_alone_writes_the_run_folder(runs):
    run = runs["root"] / "whole" / "runs" / "run"
    assert [p.name for p in run.iterdir()] == ["version_0"]  # no folder of rank 1
    files = sorted(p.name for p in (run / "version_0").iterdir())
    assert files.count("config.resolved") == 1
    assert len([f for f in files if f.startswith("events.out.tfevents")]) == 1
    checkpoints = sorted(p.name for p in (run / "version_0" / "checkpoints").iterdir())
    assert (
        len(checkpoints) == 2 and checkpoints[0].startswith("best-") and "last.ckpt" in checkpoints
    )


def test_device_mesh_of_data_and_sequence_ranks(runs):
    for rank, report in enumerate(runs["ranks"]):
        one, two = report["meshes"]["1"], report["meshes"]["2"]
        assert one["names"] == two["names"] == ["data", "sequence"]
        assert (one["shape"], one["coordinate"], one["sequence_ranks"]) == ([2, 1], [rank, 0],
                                                                            [rank])  # fmt: skip
        assert (two["shape"], two["coordinate"], two["sequence_ranks"]) == ([1, 2], [0, rank],
                                                                            [0, 1])  # fmt: skip
