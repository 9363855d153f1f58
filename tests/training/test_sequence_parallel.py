"""Sequence-parallel training through Lightning (2 CPU processes, gloo): the training step on a
data × sequence mesh gives the unsharded gradients; a whole run of the training command under
torchrun with useSequenceParallelism (Lightning's ModelParallelStrategy) gives the weights of a
one-process run; its checkpoint loads in one process."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from helpers import REPO, SPARSE_TINY, tiny_train_config, torchrun
from sequence_parallel_cases import module_training_step, run_group
from torch.testing import assert_close

from genie.checkpoint import read_checkpoint
from genie.config import config_to_text
from genie.training.module import GenieModule
from genie.training.run import train
from genie.training.sequence_parallel import sequence_parallel_strategy

SHARDS = 2
# Dropout on; 3 optimiser steps of 4 chains cropped to 28 residues (a multiple of the shards,
# so the sharded dropout masks are the unsharded ones: docs/SEQUENCE_PARALLEL.md); a round of
# sample pictures (rank zero alone, on the whole chain).
RUN = [*SPARSE_TINY, "useSparseKNN=True", "useFlashMode=True", "useLocalEdgeBias=True",
       "useSpatialBias=True", "knnStrategy=hybrid", "useMHCLoss=True",
       "batchSize=4", "datasetSize=12", "maximumNumResidues=28", "triangularDropout=0.25",
       "ipaDropout=0.1", "validationFraction=0.25", "logSamplesEveryEpochs=1",
       "logSamplesCount=1", "logSamplesLength=16", "logSamplesSkipSteps=50"]  # fmt: skip


SEQUENCE_PARALLEL = ["useDistributed=True", "distributedBackend=gloo", "accelerator=cpu",
                     "useSequenceParallelism=True", f"numSequenceShards={SHARDS}"]  # fmt: skip


def run_config(folder, *extra: str):
    """The run's config, writing under ``folder`` (the dataset cache is shared by both runs)."""
    return tiny_train_config(folder, *RUN, f"cacheDirectory={folder.parent / 'cache'}", *extra)


@pytest.fixture(scope="module")
def step(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sp_step")
    return run_group(module_training_step, SHARDS, folder)[0]


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    """``train/train_long.py --config`` under ``torchrun --nproc_per_node 2`` for one epoch, then
    ``--resume`` of its last.ckpt for a second; the first epoch's and the last checkpoint."""
    folder = tmp_path_factory.mktemp("sp_training")
    config = folder / "sharded.config"
    config.write_text(config_to_text(run_config(folder / "sharded", "numEpochs=1",
                                                *SEQUENCE_PARALLEL)))  # fmt: skip
    entry = REPO / "train" / "train_long.py"
    result = torchrun(entry, "--config", str(config), processes=SHARDS, cwd=folder)
    assert result.returncode == 0, result.stderr[-4000:]
    (last,) = (folder / "sharded" / "runs").rglob("checkpoints/last.ckpt")
    first = folder / "epoch1.ckpt"
    first.write_bytes(last.read_bytes())
    resumed = torchrun(entry, "--config", str(config), "--resume", str(last), "--set",
                       "numEpochs=2", processes=SHARDS, cwd=folder)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    return folder, first, last


def test_training_step_gradients_equal_unsharded(step):
    assert step["shards"] == SHARDS
    assert step["grads"].keys() == step["ref_grads"].keys()
    for key, ref in step["ref_grads"].items():  # the loss is fp32: so are the gradients
        assert_close(step["grads"][key], ref, rtol=1e-5, atol=1e-7, msg=f"gradient of {key}")


def _weights(path):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
    return checkpoint["global_step"], weights


def test_sharded_run_and_its_resume_train_the_weights_of_one_process(sharded_run):
    folder, first, last = sharded_run
    config = run_config(folder / "one", "numEpochs=2")
    pl.seed_everything(config.seed, verbose=False)
    initial = GenieModule(config).model.state_dict()  # what train() starts from
    _, module = train(config, accelerator="cpu", enable_progress_bar=False,
                      enable_model_summary=False)  # fmt: skip
    (steps_one, after_one), (steps, weights) = _weights(first), _weights(last)
    assert (steps_one, steps) == (3, 6)
    # 2 epochs, resumed after the first. Attention key biases get no gradient but rounding
    # (softmax ignores a shift of every logit), which AdamW scales up to a few 1e-6 in 6 steps.
    for key, ref in module.model.state_dict().items():
        assert_close(weights[key], ref, rtol=1e-5, atol=1e-5, msg=f"weight {key}")
    assert max(float((after_one[k] - v).abs().max()) for k, v in initial.items()) > 1e-3
    assert max(float((weights[k] - after_one[k]).abs().max()) for k in initial) > 1e-4
    trained = read_checkpoint(last)  # one process, no strategy
    assert trained.config.useSequenceParallelism and trained.config.devices == SHARDS
    for key, value in trained.model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_strategy_refuses_shards_that_do_not_divide_the_processes():
    with pytest.raises(ValueError, match="must divide the number of processes"):
        sequence_parallel_strategy(num_shards=3, world_size=4)
    strategy = sequence_parallel_strategy(num_shards=2, world_size=4)
    assert (strategy._data_parallel_size, strategy._tensor_parallel_size) == (2, 2)
