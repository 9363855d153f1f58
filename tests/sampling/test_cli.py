"""The sampling command end to end on the CPU with a tiny (random-weight) checkpoint."""

from __future__ import annotations

import logging
import os
import runpy
import sys

import numpy as np
import pytest
import torch
from helpers import REPO, write_tiny_checkpoint
from torch.testing import assert_close

from genie.checkpoint import read_checkpoint
from genie.config import ConfigError, SampleConfig
from genie.config.cli import load_with_defaults
from genie.data.structure_io import read_ca_segments
from genie.model import memory
from genie.sampling import run as sampling_run
from genie.sampling.provenance import read_manifest
from genie.sampling.run import main

T = 10  # diffusion steps of the tiny model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint in the trainer's format, with random (not zero-initialised) weights."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", timesteps=T)


def run(checkpoint, out, *overrides):
    args = [f"checkpoint={checkpoint}", f"outputDirectory={out}", "name=t", "device=cpu",
            "sampleLengths=5,8,11", "samplesPerLength=1", *overrides]  # fmt: skip
    config = REPO / "configs" / "sample_quickstart.config"
    return main(["--config", str(config), *(a for o in args for a in ("--set", o))])


def read(path):
    (segment,) = read_ca_segments(path, split_chain_breaks=False)
    return torch.from_numpy(segment.coords)


SAMPLERS = {
    "ddpm": ["samplingStrategy=ddpm"],
    "ddim": ["samplingStrategy=ddim", "skipSteps=3", "ddimEta=0.5"],
}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_batched_samples_equal_samples_drawn_alone(checkpoint, tmp_path, sampler, capsys):
    assert run(checkpoint, tmp_path / "batch", "batchSize=3", *SAMPLERS[sampler]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith(f"[genie] {sampler}") and "wrote 3 samples" in summary
    assert "samples/min" in summary
    assert run(checkpoint, tmp_path / "alone", "batchSize=1", *SAMPLERS[sampler]) == 0
    for n in (5, 8, 11):
        batched = read(tmp_path / "batch" / f"t_L{n}_0000.pdb")
        alone = read(tmp_path / "alone" / f"t_L{n}_0000.pdb")
        assert batched.shape == (n, 3)
        assert_close(batched, alone, atol=2e-3, rtol=0)  # PDB rounds to 1e-3 Å


def test_ddim_and_ddpm_differ_and_rerun_regenerates_only_missing_files(checkpoint, tmp_path):
    assert run(checkpoint, tmp_path / "ddpm") == 0
    assert run(checkpoint, tmp_path / "ddim", *SAMPLERS["ddim"]) == 0
    ddpm, ddim = (read(tmp_path / d / "t_L8_0000.pdb") for d in ("ddpm", "ddim"))
    assert (ddpm - ddim).abs().max() > 0.1
    target = tmp_path / "ddim" / "t_L8_0000.pdb"
    target.unlink()
    other = tmp_path / "ddim" / "t_L5_0000.pdb"
    stamp = other.stat().st_mtime_ns
    assert run(checkpoint, tmp_path / "ddim", *SAMPLERS["ddim"]) == 0
    assert_close(read(target), ddim, atol=0, rtol=0)
    assert other.stat().st_mtime_ns == stamp


def test_chunk_keys_of_the_sampling_config_change_only_the_memory(
    checkpoint, tmp_path, monkeypatch
):
    """triangleChunkSize and ipaChunkSize replace the checkpoint's keys of the same name."""
    assert run(checkpoint, tmp_path / "plain", *SAMPLERS["ddim"]) == 0
    built = []

    def reading(path, **kwargs):
        trained = read_checkpoint(path, **kwargs)
        built.append(trained.config)
        return trained

    monkeypatch.setattr(sampling_run, "read_checkpoint", reading)
    chunks = ["triangleChunkSize=2", "ipaChunkSize=3"]
    assert run(checkpoint, tmp_path / "chunked", *SAMPLERS["ddim"], *chunks) == 0
    assert [(c.triangleChunkSize, c.ipaChunkSize) for c in built] == [(2, 3)]
    for n in (5, 8, 11):
        plain, chunked = (read(tmp_path / d / f"t_L{n}_0000.pdb") for d in ("plain", "chunked"))
        assert_close(chunked, plain, atol=2e-3, rtol=0)


def test_trajectory_limit_and_fragments(checkpoint, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="genie.sample"):
        options = ["saveTrajectory=True", "trajectoryEvery=4", "trajectoryMaxLength=8",
                   "saveFragments=True", "fragmentLength=6"]  # fmt: skip
        assert run(checkpoint, tmp_path, *options) == 0
    assert "t_L11_0000: saveTrajectory skipped, 11 residues" in caplog.text
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if n.endswith(".npz")] == ["t_L5_0000.trajectory.npz",
                                                        "t_L8_0000.trajectory.npz"]  # fmt: skip
    frames = np.load(tmp_path / "t_L8_0000.trajectory.npz")
    assert frames["timesteps"].tolist() == [8, 4, 0]  # every 4th of 10 DDPM steps, ending at 0
    assert frames["coords"].shape == (3, 8, 3)
    assert_close(torch.from_numpy(frames["coords"][-1]), read(tmp_path / "t_L8_0000.pdb"),
                 atol=6e-4, rtol=0)  # fmt: skip
    assert [n for n in names if "_frag" in n] == ["t_L11_0000_frag000.pdb",
        "t_L11_0000_frag001.pdb", "t_L8_0000_frag000.pdb", "t_L8_0000_frag001.pdb"]  # fmt: skip
    pieces = [read(tmp_path / f"t_L11_0000_frag00{k}.pdb") for k in range(2)]
    assert [len(p) for p in pieces] == [6, 5]
    assert_close(torch.cat(pieces), read(tmp_path / "t_L11_0000.pdb"), atol=0, rtol=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["skipSteps=5"], "skipSteps = 5 needs samplingStrategy ddim"),
        (["ddimEta=1"], "ddimEta = 1.0 needs samplingStrategy ddim"),
        (["samplingStrategy=ddim", f"skipSteps={T}"],
         f"skipSteps = {T} is not smaller than the model's numTimesteps = {T}"),
        (["sampleLengths=10000", "outputFormat=pdb"], "outputFormat pdb holds at most 9999"),
        (["ddimEta=2"], "ddimEta = '2' is not allowed"),
        ([f"startTimestep={T + 1}"], f"startTimestep {T + 1} exceeds the model's numTimesteps {T}"),
        (["samplingStrategy=ddim", "skipSteps=4", "startTimestep=1"],
         "startTimestep 1 lies below every timestep the sampler visits"),
        (["startTimestep=5", "startSignalShare=0.2"], "startTimestep and startSignalShare both"),
        (["startSignalShare=1"], "startSignalShare must be below 1"),
    ],
)  # fmt: skip
def test_config_errors_are_reported(checkpoint, tmp_path, capsys, overrides, message):
    assert run(checkpoint, tmp_path, *overrides) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_ultralong_defaults_fill_only_unset_keys(tmp_path):
    config = tmp_path / "long.config"
    config.write_text("checkpoint x.ckpt\nbatchSize 4\n")
    defaults = {"batchSize": "1", "clearCacheEveryNSteps": "50", "saveTrajectory": "False"}
    cfg, applied = load_with_defaults(SampleConfig, config, ["saveTrajectory=True"], defaults)
    assert applied == ["clearCacheEveryNSteps=50"]
    assert (cfg.batchSize, cfg.clearCacheEveryNSteps, cfg.saveTrajectory) == (4, 50, True)


def test_ultralong_entry_point_samples(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "")  # restored after the test
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF")
    config = tmp_path / "s.config"
    config.write_text(f"checkpoint {checkpoint}\noutputDirectory {tmp_path / 'out'}\n"
                      "sampleLengths 6,9\nsamplesPerLength 1\ndevice cpu\n"
                      "samplingStrategy ddim\nskipSteps 5\n")  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["sample_ultralong.py", "--config", str(config)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "sample" / "sample_ultralong.py"), run_name="__main__")
    assert exit_info.value.code == 0
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    out = capsys.readouterr().out
    assert "defaults applied: batchSize 1, outputFormat auto, saveTrajectory False, " in out
    assert "ddim, stride 5, 2 steps" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "provenance.json", "samples_L6_0000.pdb", "samples_L9_0000.pdb"
    ]  # fmt: skip


def test_a_batch_that_cannot_fit_is_refused_before_sampling(checkpoint, tmp_path, capsys,
                                                            monkeypatch):  # fmt: skip
    """The dense model at 100,000 residues needs terabytes: exit 2 naming the keys; with a
    device that has almost no free memory --force still samples."""
    assert run(checkpoint, tmp_path / "huge", "sampleLengths=100000") == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "lower sampleLengths or batchSize" in err
    assert "Traceback" not in err and not any((tmp_path / "huge").glob("*.pdb"))
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1024)
    assert run(checkpoint, tmp_path / "small") == 2  # a small batch on a 1 KiB device
    args = ["--config", str(REPO / "configs" / "sample_quickstart.config"), "--force"]
    for item in (f"checkpoint={checkpoint}", f"outputDirectory={tmp_path / 'forced'}",
                 "device=cpu", "sampleLengths=5", "samplesPerLength=1"):  # fmt: skip
        args += ["--set", item]
    assert main(args) == 0 and len(list((tmp_path / "forced").glob("*.pdb"))) == 1


def test_sampling_under_torchrun_needs_sequence_parallelism(monkeypatch):
    from genie.sampling.run import check_launch

    check_launch(SampleConfig())  # one process: fine
    for key, value in {"TORCHELASTIC_RUN_ID": "test", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="every process would sample every chain"):
        check_launch(SampleConfig())


def test_a_late_start_is_reported(checkpoint, tmp_path, capsys):
    assert run(checkpoint, tmp_path, "samplingStrategy=ddim", "skipSteps=3",
               "startTimestep=8") == 0  # fmt: skip
    assert "ddim, stride 3, 3 steps, η 0, γ 0.6, from t = 7" in capsys.readouterr().out
    records, _ = read_manifest(tmp_path)  # recorded, so a run from T does not reuse the files
    assert {r["sampler"]["startTimestep"] for r in records.values()} == {8}


def test_a_start_from_a_signal_share_is_reported_and_recorded(checkpoint, tmp_path, capsys):
    assert run(checkpoint, tmp_path, "samplingStrategy=ddim", "skipSteps=3",
               "startSignalShare=0.5") == 0  # fmt: skip
    assert "η 0, γ 0.6, from signal share 0.5: wrote 3 samples" in capsys.readouterr().out
    records, _ = read_manifest(tmp_path)
    assert {r["sampler"]["startSignalShare"] for r in records.values()} == {0.5}
