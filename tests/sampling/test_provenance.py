"""Sample provenance: ``outputDirectory/provenance.json`` records the checkpoint's weights digest,
the sampler settings, the seed, the length and the code version of every sample; a re-run counts
a file as done only when its record matches, refuses files made otherwise or without a record
(exit 2, naming the settings) and samples them again with ``--overwrite``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from helpers import REPO, write_tiny_checkpoint

import genie
from genie.checkpoint import state_dict_digest
from genie.sampling.chains import sample_seed
from genie.sampling.provenance import MANIFEST, read_manifest
from genie.sampling.run import main

CONFIG = REPO / "configs" / "sample_quickstart.config"
NAMES = ["t_L5_0000", "t_L5_0001", "t_L8_0000", "t_L8_0001"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two checkpoints of the same tiny model (10 timesteps) with other weights: the second has
    one weight changed and no checksum entry (its digest is computed)."""
    folder = tmp_path_factory.mktemp("ckpt")
    first = write_tiny_checkpoint(folder / "first.ckpt", timesteps=10)
    stored = torch.load(first, weights_only=True)
    name = next(k for k, v in stored["state_dict"].items() if v.is_floating_point())
    stored["state_dict"][name] = stored["state_dict"][name] + 1e-3
    torch.save(stored, folder / "second.ckpt")
    return first, folder / "second.ckpt"


def sample(checkpoint: Path, out: Path, *overrides: str, flags: tuple[str, ...] = ()) -> int:
    given = [f"checkpoint={checkpoint}", f"outputDirectory={out}", "name=t", "device=cpu",
             "sampleLengths=5,8", "samplesPerLength=2", "batchSize=3", *overrides]  # fmt: skip
    return main(["--config", str(CONFIG), *(a for o in given for a in ("--set", o)), *flags])


def written(out: Path) -> dict[str, int]:
    """Every file of ``out`` but the manifest, with its modification time."""
    return {p.name: p.stat().st_mtime_ns for p in sorted(out.iterdir()) if p.name != MANIFEST}


def test_every_sample_has_a_record_of_what_made_it(checkpoints, tmp_path):
    first, _ = checkpoints
    assert sample(first, tmp_path, "temperature=0.8") == 0
    records, problem = read_manifest(tmp_path)
    assert problem is None and sorted(records) == NAMES
    record = records["t_L8_0001"]
    weights = torch.load(first, weights_only=True)["state_dict"]
    assert record["checkpoint"] == {"sha256": state_dict_digest(weights), "path": str(first)}
    assert record["sampler"] == {
        "samplingStrategy": "ddpm", "temperature": 0.8, "skipSteps": 0, "ddimEta": 0.0,
        "numTimesteps": 10, "steps": 10, "knnUpdateFrequency": 1, "recentre": False,
        "parametrisation": "unit noise, epsilon", "modelOverrides": {},
    }  # fmt: skip
    assert (record["seed"], record["length"], record["index"]) == (sample_seed(0, 8, 1), 8, 1)
    assert record["code"]["version"] == genie.__version__ and record["device"] == "cpu"
    assert "commit" in record["code"]


def test_an_identical_rerun_skips_every_file(checkpoints, tmp_path, capsys):
    first, _ = checkpoints
    assert sample(first, tmp_path) == 0
    before = written(tmp_path)
    capsys.readouterr()
    assert sample(first, tmp_path) == 0
    assert "4 samples planned, 4 already written" in capsys.readouterr().out
    assert written(tmp_path) == before


@pytest.mark.parametrize(
    ("which", "overrides", "named"),
    [
        (1, [], "checkpoint weights sha256"),
        (0, ["temperature=0.1"], "temperature 0.6 in the folder, 0.1 now (4 files)"),
        (0, ["seed=5"], "seed "),
        (0, ["samplingStrategy=ddim", "skipSteps=3"], "samplingStrategy ddpm in the folder"),
        (0, ["knnUpdateFrequency=2"], "knnUpdateFrequency 1 in the folder, 2 now"),
        (0, ["recentre=True"], "recentre False in the folder, True now"),
        (0, ["ipaChunkSize=4"], "modelOverrides {} in the folder, {'ipaChunkSize': 4} now"),
    ],
)  # fmt: skip
def test_a_rerun_made_otherwise_is_refused_and_changes_nothing(
    checkpoints, tmp_path, capsys, which, overrides, named
):
    assert sample(checkpoints[0], tmp_path) == 0
    before, manifest = written(tmp_path), (tmp_path / MANIFEST).read_bytes()
    capsys.readouterr()
    assert sample(checkpoints[which], tmp_path, *overrides) == 2
    captured = capsys.readouterr()
    assert "already written" not in captured.out  # the old files are not reported as done
    (line,) = captured.err.strip().splitlines()
    assert f"outputDirectory {tmp_path}: of the 4 planned samples, 4 were made otherwise" in line
    assert named in line and "--overwrite" in line and "another outputDirectory" in line
    assert written(tmp_path) == before and (tmp_path / MANIFEST).read_bytes() == manifest


def test_overwrite_samples_them_again_and_leaves_nothing_stale(checkpoints, tmp_path, capsys):
    first, second = checkpoints
    assert sample(first, tmp_path, "saveFragments=True", "fragmentLength=4") == 0
    assert (tmp_path / "t_L8_0000_frag001.pdb").exists()
    old = (tmp_path / "t_L8_0000.pdb").read_text()
    assert sample(second, tmp_path, "temperature=0.1", flags=("--overwrite",)) == 0
    assert "4 samples planned, 0 already written" in capsys.readouterr().out
    assert sorted(written(tmp_path)) == [f"{name}.pdb" for name in NAMES]  # old fragments gone
    assert (tmp_path / "t_L8_0000.pdb").read_text() != old
    records, _ = read_manifest(tmp_path)
    assert {r["sampler"]["temperature"] for r in records.values()} == {0.1}
    assert {r["checkpoint"]["path"] for r in records.values()} == {str(second)}


@pytest.mark.parametrize("manifest", [None, "not json {"])
def test_files_of_unknown_provenance_are_refused_unless_overwritten(
    checkpoints, tmp_path, capsys, manifest
):
    first, _ = checkpoints
    assert sample(first, tmp_path) == 0
    if manifest is None:  # files of an older version, which wrote no manifest
        (tmp_path / MANIFEST).unlink()
        why = f"{MANIFEST} has no record of them: written by an older version?"
    else:
        (tmp_path / MANIFEST).write_text(manifest)
        why = f"{tmp_path / MANIFEST} cannot be read (JSONDecodeError"
    before = written(tmp_path)
    assert sample(first, tmp_path) == 2
    err = capsys.readouterr().err
    assert "4 have unknown provenance" in err and why in err
    assert written(tmp_path) == before
    assert sample(first, tmp_path, flags=("--overwrite",)) == 0
    assert sorted(read_manifest(tmp_path)[0]) == NAMES


def test_another_code_version_alone_only_warns(checkpoints, tmp_path, capsys, caplog):
    first, _ = checkpoints
    assert sample(first, tmp_path) == 0
    data = json.loads((tmp_path / MANIFEST).read_text())
    for record in data["samples"].values():
        record["code"] = {"version": "0.0.1", "commit": "0" * 40}
    (tmp_path / MANIFEST).write_text(json.dumps(data))
    before = written(tmp_path)
    capsys.readouterr()
    with caplog.at_level(logging.WARNING, logger="genie.sample"):
        assert sample(first, tmp_path) == 0
    assert "4 samples planned, 4 already written" in capsys.readouterr().out
    assert "4 sample(s) in" in caplog.text and "another code version" in caplog.text
    assert written(tmp_path) == before


def test_records_of_other_samples_are_kept(checkpoints, tmp_path):
    first, _ = checkpoints
    assert sample(first, tmp_path) == 0
    assert sample(first, tmp_path, "sampleLengths=6", "samplesPerLength=1") == 0
    assert sorted(read_manifest(tmp_path)[0]) == sorted([*NAMES, "t_L6_0000"])
