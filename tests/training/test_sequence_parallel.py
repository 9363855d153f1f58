"""Sequence-parallel training through Lightning (2 CPU processes, gloo): the training step on a
data × sequence mesh gives the unsharded gradients; a whole run under ModelParallelStrategy
gives the weights of a one-process run; its checkpoint loads in one process."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from helpers import SPARSE_TINY, tiny_train_config
from sequence_parallel_cases import run_group, training
from torch.testing import assert_close

from genie.checkpoint import read_checkpoint
from genie.training.module import GenieModule
from genie.training.run import train
from genie.training.sequence_parallel import sequence_parallel_strategy

SHARDS = 2
# Dropout on; 3 optimiser steps of 4 chains cropped to 28 residues (a multiple of the shards,
# so the sharded dropout masks are the unsharded ones: docs/SEQUENCE_PARALLEL.md); a round of
# sample pictures (rank zero alone, on the whole chain).
RUN = [*SPARSE_TINY, "useSparseKNN=True", "useFlashMode=True", "useLocalEdgeBias=True",
       "useSpatialBias=True", "knnStrategy=hybrid", "useMHCLoss=True", "numEpochs=1",
       "batchSize=4", "datasetSize=12", "maximumNumResidues=28", "triangularDropout=0.25",
       "ipaDropout=0.1", "validationFraction=0.25", "logSamplesEveryEpochs=1",
       "logSamplesCount=1", "logSamplesLength=16", "logSamplesSkipSteps=50"]  # fmt: skip


def run_config(folder):
    """The run's config, writing under ``folder`` (the dataset cache is shared by both runs)."""
    return tiny_train_config(folder, *RUN, f"cacheDirectory={folder.parent / 'cache'}")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sp_training")
    return run_group(training, SHARDS, folder / "group", run_config(folder / "sharded"))[0], folder


def test_training_step_gradients_equal_unsharded(results):
    step = results[0]["step"]
    assert step["shards"] == SHARDS
    assert step["grads"].keys() == step["ref_grads"].keys()
    for key, ref in step["ref_grads"].items():  # the loss is fp32: so are the gradients
        assert_close(step["grads"][key], ref, rtol=1e-5, atol=1e-7, msg=f"gradient of {key}")


def test_sharded_run_trains_the_weights_of_one_process(results):
    fit, folder = results[0]["fit"], results[1]
    assert fit["steps"] == 3
    config = run_config(folder / "one")
    pl.seed_everything(config.seed, verbose=False)
    initial = GenieModule(config).model.state_dict()  # what train() starts from
    _, module = train(config, accelerator="cpu", enable_progress_bar=False,
                      enable_model_summary=False)  # fmt: skip
    for key, ref in module.model.state_dict().items():
        assert_close(fit["weights"][key], ref, rtol=1e-5, atol=1e-6, msg=f"weight {key}")
    assert max(float((fit["weights"][k] - v).abs().max()) for k, v in initial.items()) > 1e-3
    trained = read_checkpoint(fit["checkpoint"])  # one process, no strategy
    for key, value in trained.model.state_dict().items():
        assert torch.equal(value, fit["weights"][key]), key


def test_strategy_refuses_shards_that_do_not_divide_the_processes():
    with pytest.raises(ValueError, match="must divide the number of processes"):
        sequence_parallel_strategy(num_shards=3, world_size=4)
    strategy = sequence_parallel_strategy(num_shards=2, world_size=4)
    assert (strategy._data_parallel_size, strategy._tensor_parallel_size) == (2, 2)
