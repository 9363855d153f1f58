"""The sampling command with ``useSequenceParallelism`` under torchrun (2 CPU processes, gloo):
every chain sharded over 2 processes, or 2 data ranks taking different batches, writes the very
files of a one-process run; models the shards cannot run are refused before any work."""

from __future__ import annotations

import json

import pytest
from helpers import REPO, SPARSE_TINY, TINY_MODEL, torchrun, write_tiny_checkpoint

from genie.sampling.run import main

ENTRY_POINT = REPO / "sample" / "sample_ultralong.py"
SPARSE = [*SPARSE_TINY, "useSparseKNN=True", "useFlashMode=True", "useLocalEdgeBias=True",
          "useSpatialBias=True", "knnStrategy=hybrid"]  # fmt: skip
# DDIM with η = 1 injects fresh noise at every step; lengths not divisible by the shards; a
# start below T as the long-chain sample configs have (share 0.9 on this 10-step schedule: t = 8;
# its start factors scale the sharded x_T)
KEYS = ["sampleLengths 23,30", "samplesPerLength 2", "samplingStrategy ddim", "skipSteps 2",
        "ddimEta 1.0", "recentre True", "startSignalShare 0.9", "device cpu",
        "name t"]  # fmt: skip
FILES = [f"t_L{n}_{i:04d}.pdb" for n in (23, 30) for i in (0, 1)]


def _config(folder, checkpoint, out, *keys: str, base=KEYS):
    path = folder / f"{out}.config"
    lines = [f"checkpoint {checkpoint}", f"outputDirectory {folder / out}", *base, *keys]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sp_sampling")
    checkpoint = write_tiny_checkpoint(folder / "sparse.ckpt", timesteps=10, model=SPARSE)
    one = _config(folder, checkpoint, "one", "batchSize 2")
    assert main(["--config", str(one)]) == 0
    at_t = [key for key in KEYS if not key.startswith("startSignalShare")]
    from_t = _config(folder, checkpoint, "from_t", "batchSize 2", base=at_t)
    assert main(["--config", str(from_t)]) == 0
    launches = {
        "shards": ("batchSize 2", "useSequenceParallelism True", "numSequenceShards 2"),
        "data": ("batchSize 1", "useSequenceParallelism True", "numSequenceShards 1"),
    }
    results = {}
    for name, keys in launches.items():
        config = _config(folder, checkpoint, name, *keys)
        results[name] = torchrun(ENTRY_POINT, "--config", str(config), processes=2, cwd=folder)
    return folder, results


@pytest.mark.parametrize("launch", ["shards", "data"])
def test_torchrun_sampling_writes_the_files_of_one_process(runs, launch):
    folder, results = runs
    result = results[launch]
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [line for line in result.stdout.splitlines() if "wrote" in line]
    assert len(summaries) == 1 and "wrote 4 samples, 0 diverged" in summaries[0]  # rank 0 only
    for name in FILES:
        assert (folder / launch / name).read_bytes() == (folder / "one" / name).read_bytes(), name
    manifest = json.loads((folder / launch / "provenance.json").read_text())["samples"]
    assert sorted(manifest) == sorted(name.removesuffix(".pdb") for name in FILES)


def test_the_start_below_t_took_effect(runs):
    folder, _ = runs
    assert all((folder / "from_t" / n).read_bytes() != (folder / "one" / n).read_bytes()
               for n in FILES)  # fmt: skip


def test_a_rerun_under_torchrun_finds_every_sample_written(runs):
    folder, _ = runs
    config = folder / "shards.config"
    again = torchrun(ENTRY_POINT, "--config", str(config), processes=2, cwd=folder)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 samples planned, 4 already written" in again.stdout


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        (TINY_MODEL, "useSequenceParallelism shards the sparse k-NN representation"),
        ([*SPARSE, "randomNeighbors=2"], "randomNeighbors = 2 (the checkpoint's model"),
    ],
)
def test_a_model_the_shards_cannot_run_is_refused(tmp_path, capsys, model, needle):
    checkpoint = write_tiny_checkpoint(tmp_path / "m.ckpt", timesteps=10, model=model)
    config = _config(tmp_path, checkpoint, "out", "useSequenceParallelism True")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*.pdb"))
