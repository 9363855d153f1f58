"""The stage 5 configs from the command line on CPU ranks (gloo): train_stage5.config trains
under ``torchrun --nproc_per_node 2`` and under a plain launch with ``devices 2`` (Lightning
starts the second process), and its checkpoint samples in one process with sample_stage5.config.
Tiny sizes of the same sparse model (helpers.SPARSE_TINY); everything else is the recipe's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from helpers import REPO, SPARSE_TINY

from genie.checkpoint import read_checkpoint
from genie.config import load_config
from genie.data.structure_io import read_ca_segments

TRAIN, SAMPLE = REPO / "train" / "train_ultralong.py", REPO / "sample" / "sample_ultralong.py"
CONFIG = REPO / "configs" / "train_stage5.config"


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _train_keys(tmp_path: Path, *extra: str) -> list[str]:
    keys = [
        *SPARSE_TINY,
        f"logDirectory={tmp_path / 'runs'}",
        f"cacheDirectory={tmp_path}",
        "accelerator=cpu",
        "distributedBackend=gloo",
        "maximumNumResidues=48",
        "progressiveStartLength=32",
        "progressiveEndLength=48",
        "progressiveNumStages=2",
        "numEpochs=2",
        "datasetSize=8",
        "validationSize=2",
        "numTimesteps=50",
        "numWorkers=0",
        "lossChunkSize=16",
        "effectiveBatchSize=4",
        "logEverySteps=1",
        *extra,
    ]
    return [item for key in keys for item in ("--set", key)]  # fmt: skip


def test_stage5_trains_under_torchrun_on_two_cpu_ranks_and_samples_in_one_process(tmp_path):
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    result = _run(
        [*torchrun, str(TRAIN), "--config", str(CONFIG), *_train_keys(tmp_path)], tmp_path
    )
    assert "[genie] torchrun: devices=2, numNodes=1" in result.stdout  # not the config's 8
    run = tmp_path / "runs" / "stage5"
    assert [p.name for p in run.iterdir()] == ["version_0"]
    ckpt = torch.load(run / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (1, 4)  # 8 chains, 4 per step, 2 epochs
    trained = read_checkpoint(run / "version_0" / "checkpoints" / "last.ckpt")  # one process
    assert trained.config.useDistributed and trained.config.effectiveBatchSize == 4
    resolved = load_config(run / "version_0" / "config.resolved")
    assert resolved.useSparseKNN and (resolved.devices, resolved.numNodes) == (2, 1)
    out = tmp_path / "samples"
    sample = [str(SAMPLE), "--config", str(REPO / "configs" / "sample_stage5.config"),
              "--set", f"checkpoint={run}", "--set", f"outputDirectory={out}",
              "--set", "sampleLengths=40", "--set", "samplesPerLength=1", "--set", "device=cpu",
              "--set", "samplingStrategy=ddim", "--set", "skipSteps=10"]  # fmt: skip
    _run([sys.executable, *sample], tmp_path)
    (written,) = sorted(out.glob("*.pdb"))
    (segment,) = read_ca_segments(written, split_chain_breaks=False)
    coords = segment.coords
    assert coords.shape == (40, 3) and torch.isfinite(torch.from_numpy(coords)).all()


def test_stage5_trains_with_a_plain_launch_of_two_processes(tmp_path):
    keys = _train_keys(tmp_path, "devices=2", "numEpochs=1")
    result = _run([sys.executable, str(TRAIN), "--config", str(CONFIG), *keys], tmp_path)
    assert "torchrun" not in result.stdout
    run = tmp_path / "runs" / "stage5"
    assert [p.name for p in run.iterdir()] == ["version_0"]  # the second process wrote nothing
    ckpt = torch.load(run / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (ckpt["epoch"], ckpt["global_step"]) == (0, 2)
