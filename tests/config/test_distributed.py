"""The distributed keys (genie/config/distributed.py): every incompatible combination is refused
when the config is loaded, with the keys named; the layout arithmetic; configs stored before the
keys existed keep their meaning."""

from __future__ import annotations

import pytest

from genie.config import ConfigError, GenieConfig, SampleConfig, config_from_dict, load_config
from genie.config.distributed import data_parallel_layout

SPARSE = ["useSparseKNN=True", "useFlashMode=True"]
DDP = ["useDistributed=True", "distributedBackend=gloo"]
NO_TRIANGLES = ["includeTriangularMultiplicativeUpdate=False", "includeTriangularAttention=False"]


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["devices=2"], "devices = 2 needs useDistributed True"),
        (["numNodes=2"], "numNodes = 2 needs useDistributed True"),
        (["useGradientBucketing=True"], "useGradientBucketing = True needs useDistributed"),
        (["gradientCompressionRatio=4"], "gradientCompressionRatio = 4.0 needs useDistributed"),
        (["useSequenceParallelism=True", *SPARSE], "useSequenceParallelism = True needs useDist"),
        ([*DDP, "numSequenceShards=2"], "numSequenceShards = 2 needs useSequenceParallelism"),
        (["useDistributed=True", "accelerator=cpu"], "distributedBackend nccl with accelerator "),
        ([*DDP, "gradientCompressionRatio=4"], "hooks (PowerSGD) on CUDA devices only"),
        (["useDistributed=True", "distributedStrategy=fsdp", "gradientCompressionRatio=4"],
         "gradientCompressionRatio with distributedStrategy fsdp"),
        (["useDistributed=True", "distributedStrategy=fsdp", "useGradientBucketing=True"],
         "useGradientBucketing with distributedStrategy fsdp"),
        ([*DDP, "distributedStrategy=fsdp"], "FSDPStrategy runs on CUDA GPUs only"),
        (["useDistributed=True", "distributedStrategy=fsdp", "accelerator=cpu"],
         "FSDPStrategy runs on CUDA GPUs only"),
        ([*DDP, "useSequenceParallelism=True"], "useSequenceParallelism shards the sparse k-NN"),
        ([*DDP, "useSequenceParallelism=True", "useFactorizedPairs=True",
          "useFactorizedTriangleOps=True", "useFlashMode=True"],
         "triangle operations on factors couple every residue"),
        ([*DDP, "useSequenceParallelism=True", "useFactorizedPairs=True", *NO_TRIANGLES,
          "useFlashMode=False"], "useSequenceParallelism needs useFlashMode True"),
        ([*DDP, *SPARSE, "useSequenceParallelism=True", "randomNeighbors=4"],
         "randomNeighbors = 4 with useSequenceParallelism: not supported"),
        ([*DDP, *SPARSE, "useSequenceParallelism=True", "selfConditioning=True"],
         "selfConditioning = True with useSequenceParallelism: not supported"),
        ([*DDP, *SPARSE, "useSequenceParallelism=True", "predictionTarget=x0"],
         "predictionTarget = x0 with useSequenceParallelism: not supported"),
        (["useDistributed=True", *SPARSE, "useSequenceParallelism=True",
          "gradientCompressionRatio=4"], "gradientCompressionRatio with useSequenceParallelism"),
        (["useDistributed=True", "distributedStrategy=fsdp", "useSequenceParallelism=True",
          *SPARSE], "useSequenceParallelism with distributedStrategy fsdp"),
        ([*DDP, "devices=3", "useSequenceParallelism=True", "numSequenceShards=2", *SPARSE],
         "numSequenceShards (2) does not divide the 3 process(es) of devices × numNodes = 3 × 1"),
        ([*DDP, "devices=2", "numNodes=2", "batchSize=2", "effectiveBatchSize=12"],
         "effectiveBatchSize (12) is not a multiple of data-parallel ranks × batchSize = 4 × 2"),
        (["batchSize=4", "effectiveBatchSize=6"], "effectiveBatchSize (6) is not a multiple"),
        (["gradientBucketSizeMB=0"], "gradientBucketSizeMB = '0' is not allowed: must be > 0"),
        (["gradientCompressionRatio=1"], "gradientCompressionRatio = '1' is not allowed: must"),
        (["distributedBackend=mpi"], "allowed: nccl, gloo"),
        (["distributedStrategy=deepspeed"], "allowed: ddp, fsdp"),
    ],
)  # fmt: skip
def test_incompatible_distributed_keys_are_refused_with_their_names(overrides, needle):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert needle in str(error.value)


def test_sequence_parallel_layouts_are_accepted():
    # sparse pairs, DDP, 2 shards dividing 4 processes; factorised pairs read by FlashIPA
    keys = [*DDP, *SPARSE, "useSequenceParallelism=True", "numSequenceShards=2", "devices=4"]
    assert load_config(None, keys).numSequenceShards == 2
    factorised = [*DDP, "useFactorizedPairs=True", *NO_TRIANGLES, "useFlashMode=True",
                  "useSequenceParallelism=True"]  # fmt: skip
    assert load_config(None, factorised).useSequenceParallelism
    assert load_config(None, [*keys, "useGradientBucketing=True"]).useGradientBucketing
    assert SampleConfig(useSequenceParallelism=True, numSequenceShards=2).numSequenceShards == 2
    with pytest.raises(ConfigError, match="numSequenceShards = 2 needs useSequenceParallelism"):
        SampleConfig(numSequenceShards=2)


def test_accepted_layouts():
    cfg = load_config(
        None, [*DDP, "devices=2", "numNodes=2", "batchSize=2", "effectiveBatchSize=16"]
    )
    assert (cfg.devices, cfg.numNodes, cfg.effectiveBatchSize) == (2, 2, 16)
    # 1 × 1 may be a torchrun launch of any size: only batchSize must divide at load time
    assert load_config(None, [*DDP, "batchSize=2", "effectiveBatchSize=6"]).effectiveBatchSize == 6
    # accumulation on one device needs no distributed run
    assert load_config(None, ["batchSize=2", "effectiveBatchSize=8"]).effectiveBatchSize == 8
    gpu = load_config(None, ["useDistributed=True", "distributedStrategy=fsdp", "devices=8"])
    assert gpu.distributedBackend == "nccl" and gpu.accelerator == "auto"


@pytest.mark.parametrize(
    ("world", "shards", "batch", "effective", "expected"),
    [(8, 1, 1, None, (8, 1)), (8, 1, 1, 32, (8, 4)), (8, 2, 2, 16, (4, 2)), (6, 3, 1, 2, (2, 1))],
)
def test_data_parallel_layout_by_hand(world, shards, batch, effective, expected):
    layout = data_parallel_layout(world_size=world, sequence_shards=shards, batch_size=batch,
                                  effective_batch_size=effective)  # fmt: skip
    assert layout == expected


def test_a_stored_config_with_several_devices_meant_ddp():
    stored = {"devices": 2, "accelerator": "cpu"}  # written before the distributed keys existed
    cfg = config_from_dict(GenieConfig, stored)
    assert (cfg.useDistributed, cfg.distributedBackend) == (True, "gloo")
    assert config_from_dict(GenieConfig, {"devices": 4}).distributedBackend == "nccl"
    with pytest.raises(ConfigError, match="devices = 2 needs useDistributed True"):
        config_from_dict(GenieConfig, {"devices": 2, "useDistributed": False})
