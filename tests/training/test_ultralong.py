"""The long-chain entry point train/train_ultralong.py: its defaults, training on concatenated
chains longer than any bundled one (TS50: at most 173 residues), and a torchrun launch on CPU."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from helpers import REPO, TINY_MODEL, torchrun

from genie.config import GenieConfig, load_config
from genie.config.cli import load_with_defaults
from genie.training.run import build_datamodule

ENTRY_POINT = REPO / "train" / "train_ultralong.py"


def _entry_point(monkeypatch):
    """Import train/train_ultralong.py; the environment variable it sets is undone afterwards."""
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    spec = importlib.util.spec_from_file_location("train_ultralong", ENTRY_POINT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config_file(tmp_path: Path, *lines: str) -> Path:
    """A tiny run on 3 bundled chains, cropped (and joined) to 400 residues, 1 epoch on CPU."""
    keys = [item.replace("=", " ", 1) for item in TINY_MODEL] + [
        f"logDirectory {tmp_path / 'runs'}", f"cacheDirectory {tmp_path / 'cache'}",
        "name ultralong", "numWorkers 0", "maximumNumResidues 400", "minimumNumResidues 20",
        "datasetSize 3", "validationFraction 0.2", "numTimesteps 100", "numEpochs 1",
        "logEverySteps 1", "accelerator cpu", "seed 3", *lines,
    ]  # fmt: skip
    path = tmp_path / "tiny.config"
    path.write_text("\n".join(keys) + "\n")
    return path


def test_trains_on_joined_chains_longer_than_any_real_one(tmp_path, monkeypatch, capsys):
    entry = _entry_point(monkeypatch)
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    config = _config_file(tmp_path)
    assert entry.run(["--config", str(config), "--set", "validationSize=2"]) == 0
    assert "entry point: batchSize=1, concatenateChains=True\n" in capsys.readouterr().out
    run_dir = tmp_path / "runs" / "ultralong" / "version_0"
    cfg = load_config(run_dir / "config.resolved")
    assert (cfg.batchSize, cfg.concatenateChains, cfg.validationSize) == (1, True, 2)
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3  # 3 chains, one per step
    module = build_datamodule(cfg)  # the run's batches: one joined chain of exactly 400
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["coords"].shape == (1, 400, 3) and batch["mask"].eq(1).all()
    assert 2 <= int(batch["breaks"].sum()) <= 400 // 79


def test_keys_given_in_the_file_or_on_the_command_line_win(tmp_path):
    defaults = {"batchSize": "1", "concatenateChains": "True", "validationSize": "16"}
    config = _config_file(tmp_path, "batchSize 4")  # the generic default, but written down
    cfg, applied = load_with_defaults(GenieConfig, config, ["validationSize=5"], defaults)
    assert applied == ["concatenateChains=True"]
    assert (cfg.batchSize, cfg.concatenateChains, cfg.validationSize) == (4, True, 5)
    cfg, applied = load_with_defaults(GenieConfig, config, [], {})
    assert applied == [] and not cfg.concatenateChains


def test_torchrun_launch_takes_its_layout_from_the_launcher(tmp_path):
    # devices 2 in the config, one process started by torchrun: the launcher's layout wins
    # (Lightning would refuse devices=2 in a world of 1)
    config = _config_file(tmp_path, "devices 2", "validationSize 1", "useDistributed True",
                          "distributedBackend gloo")  # fmt: skip
    result = torchrun(ENTRY_POINT, "--config", str(config), processes=1, cwd=tmp_path,
                      timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[genie] torchrun: devices=1, numNodes=1 (the launcher's layout" in result.stdout
    assert (tmp_path / "runs" / "ultralong" / "version_0" / "checkpoints" / "last.ckpt").is_file()
