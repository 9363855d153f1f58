"""The run summary names its data: training prints the sources, the dataset file and its cache
key and the segments and chains of each side, and keeps them in the run folder's data.json (one
entry per start of training, a resume appends its own)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from helpers import tiny_train_config

from genie.data.dataset_file import default_dataset_path
from genie.data.structure_io import write_ca_structure
from genie.training.callbacks import DATA_SUMMARY
from genie.training.run import train

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)


def test_the_run_prints_and_keeps_what_it_trains_on(tmp_path, capsys):
    trainer, _ = train(tiny_train_config(tmp_path, "numEpochs=1"), **QUIET)
    run = Path(trainer.logger.log_dir)
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("[genie] data: "))
    assert line.startswith(f"[genie] data: bundled ({default_dataset_path().resolve()}): 50 ")
    assert "training 16 segments (16 chains" in line  # datasetSize 16
    (entry,) = json.loads((run / DATA_SUMMARY).read_text())
    assert entry["sources"] == "bundled" and entry["resumed_from"] is None
    assert entry["train"]["segments"] == 16 and entry["segments_in_file"] == 50
    assert entry["validation"]["segments"] >= 1
    resumed, _ = train(tiny_train_config(tmp_path, "numEpochs=2"),
                       resume=run / "checkpoints" / "last.ckpt", **QUIET)  # fmt: skip
    first, second = json.loads((run / DATA_SUMMARY).read_text())
    assert first == entry and second["resumed_from"] == str(run / "checkpoints" / "last.ckpt")


def test_the_cache_key_is_named(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i, n in enumerate((40, 48, 56, 64, 72, 80)):  # other lengths: other sequences
        steps = rng.normal(size=(n, 3))
        trace = np.cumsum(3.8 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
        write_ca_structure(tmp_path / "pdb" / f"c{i}.pdb", trace)
    folder = tmp_path / "pdb"
    cfg = tiny_train_config(tmp_path, "numEpochs=1", f"dataDirectory={folder}",
                            "validationFraction=0.3")  # fmt: skip
    trainer, _ = train(cfg, **QUIET)
    (cache,) = (tmp_path / "cache").glob("ca_dataset_*.npz")
    key = cache.stem.removeprefix("ca_dataset_")
    line = next(r for r in capsys.readouterr().out.splitlines() if r.startswith("[genie] data:"))
    assert line.startswith(f"[genie] data: {folder} (cache {cache.resolve()}, key {key}): 6 ")
    (entry,) = json.loads((Path(trainer.logger.log_dir) / DATA_SUMMARY).read_text())
    assert entry["sources"] == [str(folder)] and entry["cache_key"] == key
    assert entry["train"]["chains"] + entry["validation"]["chains"] == 6
