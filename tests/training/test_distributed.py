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
from pathlib import Path

import pytest
import torch
from helpers import TINY_MODEL, torchrun

from genie.config import ConfigError, load_config
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
    result = torchrun(WORKER, str(root / "plan.json"), str(root), processes=2, cwd=root)
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


# --- the strategy builder, in-process -----------------------------------------------------------
SHAPES = [torch.Size([64, 32]), torch.Size([16]), torch.Size([8, 4])]


def test_powersgd_elements_and_rank_by_hand():
    from genie.training.distributed import powersgd_rank, sent_elements

    # rank 2: [64, 32] sends 2·(64 + 32) = 192; the vector 16; [8, 4] would send 2·12 = 24,
    # not 2× below 32, so it goes whole: 192 + 16 + 32 = 240 of 2,096
    assert sent_elements(SHAPES, rank=2) == (2096, 240)
    assert sent_elements(SHAPES, rank=1) == (2096, 96 + 16 + 12)  # ratio 16.9
    assert sent_elements(SHAPES, rank=3) == (2096, 288 + 16 + 32)  # ratio 6.2
    assert powersgd_rank(SHAPES, ratio=8) == 2 and powersgd_rank(SHAPES, ratio=16) == 1
    assert powersgd_rank(SHAPES, ratio=6) == 3
    with pytest.raises(ConfigError, match="gradientCompressionRatio 20 cannot be reached"):
        powersgd_rank(SHAPES, ratio=20)


def test_strategies_carry_the_hook_buckets_and_refuse_cpu():
    from pytorch_lightning.strategies import DDPStrategy, FSDPStrategy
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook

    from genie.training.distributed import distributed_strategy

    def build(**keys):
        settings = dict(
            strategy="ddp",
            backend="nccl",
            cuda=True,
            compression_ratio=None,
            parameter_shapes=SHAPES,
            bucket_size_mb=None,
            fsdp_units={torch.nn.Linear},
        )
        return distributed_strategy(**{**settings, **keys})  # fmt: skip

    ddp = build(compression_ratio=8, bucket_size_mb=50)
    assert isinstance(ddp, DDPStrategy) and ddp._ddp_comm_hook is powerSGD_hook.powerSGD_hook
    assert ddp._ddp_comm_state.matrix_approximation_rank == 2
    assert ddp._ddp_kwargs == {"broadcast_buffers": False, "bucket_cap_mb": 50,
                               "gradient_as_bucket_view": True}  # fmt: skip
    plain = build(backend="gloo", cuda=False)
    assert plain._ddp_comm_hook is None and plain._ddp_kwargs == {"broadcast_buffers": False}
    assert isinstance(build(strategy="fsdp"), FSDPStrategy)
    for keys, needle in (
        ({"cuda": False}, "distributedBackend nccl needs CUDA"),
        ({"strategy": "fsdp", "backend": "gloo", "cuda": False}, "FSDP runs on CUDA GPUs only"),
        ({"backend": "gloo", "cuda": False, "compression_ratio": 8}, "PowerSGD hooks run on CUDA"),
    ):
        with pytest.raises(ConfigError, match=needle):
            build(**keys)


def _torchrun(monkeypatch, world: int) -> None:
    for key, value in {
        "TORCHELASTIC_RUN_ID": "test",
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world),
        "RANK": "0",
        "LOCAL_RANK": "0",
    }.items():
        monkeypatch.setenv(key, value)  # fmt: skip


@pytest.mark.parametrize(
    ("keys", "needle"),
    [
        ([], "torchrun started 2 processes but useDistributed is False"),
        ([*DDP[:2], "batchSize=1", "effectiveBatchSize=3"],
         "effectiveBatchSize (3) is not a multiple of data-parallel ranks × batchSize = 2 × 1"),
        ([*DDP[:2], "effectiveBatchSize=8", "batchSize=1"], None),  # accumulation 4
    ],
)  # fmt: skip
def test_the_launch_layout_is_checked_when_the_trainer_is_built(
    tmp_path, monkeypatch, keys, needle
):
    from genie.training.run import build_trainer

    _torchrun(monkeypatch, 2)
    cfg = load_config(None, EXACT + _folder(tmp_path) + keys)
    if needle is None:
        trainer = build_trainer(cfg)
        assert (trainer.world_size, trainer.accumulate_grad_batches) == (2, 4)
        return
    with pytest.raises(ConfigError) as error:
        build_trainer(cfg)
    assert needle in str(error.value)


# --- one GPU: FSDP (its own clipping, a checkpoint one process reads) and the PowerSGD hook ------
GPU_RUN = [*EXACT, "useDistributed=True", "distributedBackend=nccl", "accelerator=gpu",
           "batchSize=2", "numEpochs=1", "useMixedPrecision=True", "precision=bf16"]  # fmt: skip


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fsdp_on_one_gpu_clips_and_writes_a_checkpoint_one_process_reads(tmp_path):
    from torch.distributed.fsdp import FullyShardedDataParallel

    from genie.checkpoint import read_checkpoint
    from genie.training.module import GenieModule

    cfg = load_config(None, GPU_RUN + _folder(tmp_path, "distributedStrategy=fsdp"))
    trainer, _ = train(cfg, enable_progress_bar=False)
    assert isinstance(trainer.strategy.model, FullyShardedDataParallel)
    assert trainer.global_step == 4 and torch.isfinite(trainer.callback_metrics["train/grad_norm"])
    ckpt = tmp_path / "runs" / "run" / "version_0" / "checkpoints" / "last.ckpt"
    trained = read_checkpoint(ckpt)  # on the CPU, without a process group
    weights = trained.model.state_dict()
    assert weights.keys() == GenieModule(cfg).model.state_dict().keys()  # unwrapped names
    assert all(torch.isfinite(w).all() for w in weights.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_powersgd_hook_is_registered_on_cuda(tmp_path):
    cfg = load_config(None, GPU_RUN + _folder(tmp_path, "gradientCompressionRatio=2",
                                              "useGradientBucketing=True"))  # fmt: skip
    trainer, _ = train(cfg, enable_progress_bar=False)
    state = trainer.strategy._ddp_comm_state  # PowerSGD counts the steps its hook reduced
    assert state.matrix_approximation_rank >= 1 and state.iter == trainer.global_step == 4
