"""The long-chain study driver (benchmarks/long_study.py) end to end on CPU with a tiny budget on
the bundled chains: train an arm with every option on, sample its sets, resume, send it back
through pack and unpack, train on from there, evaluate, record the results, report from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import SPARSE_TINY

REPO = Path(__file__).resolve().parents[2]
TINY = [*SPARSE_TINY, "numPairTransformLayers=1", "numTriangleLayers=1", "numTimesteps=10",
        "minimumNumResidues=20", "maximumNumResidues=32", "progressiveStartLength=24",
        "progressiveEndLength=32", "progressiveNumStages=2", "numEpochs=1", "datasetSize=8",
        "batchSize=4", "validationSize=2", "numWorkers=0", "accelerator=cpu",
        "useMixedPrecision=False", "lossChunkSize=16"]  # fmt: skip


def study(work: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "benchmarks" / "long_study.py"), "--work", str(work),
               "--data", "bundled", "--arms", "combined", "--lengths", "12,16",
               "--per-length", "2", "--tm-pairs", "0", *args]  # fmt: skip
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)


def coordinates(pdb: Path) -> list[str]:
    """A PDB file's ATOM records (its remarks name the checkpoint it came from)."""
    return [line for line in pdb.read_text().splitlines() if line.startswith("ATOM")]


@pytest.mark.slow
def test_the_study_trains_samples_evaluates_and_reports(tmp_path):
    work = tmp_path / "study"
    train_keys = [item for key in TINY for item in ("--set", key)]
    done = study(work, *train_keys, "train", "5")
    log = work / "logs" / "train_combined.log"
    assert done.returncode == 0, done.stdout + done.stderr + log.read_text()[-2000:]
    last = work / "runs" / "combined" / "version_0" / "checkpoints" / "last.ckpt"
    config = torch.load(last, map_location="cpu", weights_only=True)["hyper_parameters"]["config"]
    assert config["noiseScale"] == "length" and config["predictionTarget"] == "x0"
    assert config["selfConditioning"] and config["selfConditionGraph"]
    assert config["randomNeighbors"] == 16 and config["concatenateChains"]
    assert config["useProgressiveTraining"] and config["maxTrainingMinutes"] == 5
    assert "train combined: exit 0, step" in done.stdout
    record = json.loads((work / "training" / "combined.json").read_text())
    assert record["budget_minutes"] == 5 and record["exit"] == 0 and record["git_commit"]
    assert record["progress"]["steps"] >= 1 and "randomNeighbors=16" in record["train_keys"]
    assert 0 < record["progress"]["minutes"] <= 5 + 1  # the budget stops it within a batch

    # the study's stride 10 needs 1,000 timesteps; the tiny model has 10
    cpu = ["--sample-set", "device=cpu", "--sample-set", "skipSteps=2"]
    sampled = study(work, *cpu, "sample")
    assert sampled.returncode == 0, sampled.stdout + sampled.stderr
    for name in ("combined_renoise", "combined_ddim"):
        assert f"sample {name}: exit 0, 4 of 4 backbones written" in sampled.stdout
        assert len(list((work / "samples" / name).glob("*_L1[26]_000[01].pdb"))) == 4
    again = study(work, *cpu, "sample")  # resumes: nothing left to do
    assert (
        again.returncode == 0
        and "4 samples planned, 4 already written"
        in (work / "logs" / "sample_combined.log").read_text()
    )

    # what a GPU machine sends back, unpacked here into a fresh WORK: the rest runs from there
    out, here = tmp_path / "out", tmp_path / "here"
    packed = study(work, "pack", str(out))
    assert packed.returncode == 0, packed.stdout + packed.stderr
    manifest = json.loads((out / "pack.json").read_text())
    assert manifest["checkpoints"]["combined"]["parts"] == ["combined.last.ckpt.part00"]
    unpacked = study(here, "unpack", str(out))
    assert unpacked.returncode == 0, unpacked.stdout + unpacked.stderr
    moved = here / last.relative_to(work)
    assert moved.read_bytes() == last.read_bytes()
    assert (here / "logs" / manifest["date"] / "train_combined.log").is_file()
    assert len(list((here / "samples" / "combined_ddim").glob("*.pdb"))) == 4
    # --weights-only: the weights alone travel, and sampling from them draws the same backbones
    slim, fresh = tmp_path / "slim", tmp_path / "fresh"
    assert study(work, "pack", str(slim), "--weights-only").returncode == 0
    assert study(fresh, "unpack", str(slim)).returncode == 0
    weights = torch.load(fresh / "weights" / "combined.ckpt", map_location="cpu",
                         weights_only=True)  # fmt: skip
    assert "optimizer_states" not in weights and "loops" not in weights
    assert weights["global_step"] == record["progress"]["steps"]
    for pdb in (fresh / "samples" / "combined_ddim").glob("*.pdb"):
        pdb.unlink()  # drawn again from the weights
    redrawn = study(fresh, *cpu, "sample")
    assert redrawn.returncode == 0, redrawn.stdout + redrawn.stderr
    for pdb in (work / "samples" / "combined_ddim").glob("*.pdb"):
        again_pdb = fresh / "samples" / "combined_ddim" / pdb.name
        assert coordinates(again_pdb) == coordinates(pdb)
    # the unpacked checkpoint resumes: a second epoch, its minutes capped by --deadline
    more = study(here, *train_keys, "--set", "numEpochs=2", "train", "5", "--deadline", "150")
    assert more.returncode == 0, more.stdout + more.stderr
    assert f"to {record['progress']['minutes'] + 0.5:.1f} training minutes" in more.stdout
    resumed = json.loads((here / "training" / "combined.json").read_text())["progress"]
    assert resumed["epoch"] == 1 and resumed["steps"] == 2 * record["progress"]["steps"]
    work = here

    evaluated = study(work, "eval")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    metrics = json.loads((work / "eval" / "combined_renoise" / "metrics.json").read_text())
    assert [b["label"] for b in metrics["buckets"]] == ["1-12", "13-16"]

    results = tmp_path / "results"  # what a session commits
    recorded = study(work, "record", str(results))
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json")) == [
        "eval/combined_ddim/metrics.json", "eval/combined_renoise/metrics.json",
        "training/combined.json"]  # fmt: skip

    out = tmp_path / "report.json"
    report = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "long_study_report.py"), "--work", str(results),
         "--json", str(out), "--plot", str(tmp_path / "rg.png")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    rows = json.loads(out.read_text())
    assert sorted(rows["lengths"]) == ["12", "16"]
    assert [r["set"] for r in rows["lengths"]["16"]] == ["combined_renoise", "combined_ddim"]
    assert rows["training"][0]["progress"] == resumed
    assert rows["lengths"]["16"][0]["rg_over_fit"] > 0 and (tmp_path / "rg.png").stat().st_size
    assert "### L = 16" in report.stdout and "| combined |" in report.stdout


def test_unknown_arm_is_a_one_line_error(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "long_study.py"), "--work",
               str(tmp_path), "--arms", "today,bogus", "eval"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "bogus" in done.stderr and "Traceback" not in done.stderr


SAMPLER_KEYS = ("samplingStrategy", "skipSteps", "ddimEta", "temperature", "startSignalShare",
                "recentre")  # fmt: skip


def test_every_sample_set_means_the_same_under_any_sample_config(tmp_path):
    """A set's sampler is its own keys: the study's sample config (whose defaults changed with
    the study) and an empty one give the same sampler settings."""
    sys.path.insert(0, str(REPO))
    from benchmarks.long_study import ARMS, SAMPLE_CONFIG, sample_sets
    from genie.config import load_sample_config

    empty = tmp_path / "empty.config"
    empty.write_text("name x\n")
    for _, name, keys in sample_sets(list(ARMS)):
        study_config = load_sample_config(REPO / SAMPLE_CONFIG, keys)
        plain = load_sample_config(empty, keys)
        for key in SAMPLER_KEYS:
            assert getattr(study_config, key) == getattr(plain, key), (name, key)
    today = {name: keys for _, name, keys in sample_sets(["today"])}
    late = load_sample_config(empty, today["today_ddim_late"])
    assert late.startSignalShare == 0.2 and late.recentre
    from_t = load_sample_config(REPO / SAMPLE_CONFIG, today["today_ddim_g06"])
    assert from_t.startSignalShare is None and not from_t.recentre and from_t.temperature == 0.6
