"""The Lightning-free checkpoint reader: the model and schedule of a training checkpoint, the
sampling overrides of chunk sizes, refusals, and sampling where pytorch_lightning cannot be
imported."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch
from helpers import REPO, SPARSE_TINY, denoiser_batch, randomize_
from torch.testing import assert_close

from genie.checkpoint import read_checkpoint
from genie.config import ConfigError, load_config
from genie.model import build_denoiser

STAGE3V2 = REPO / "configs" / "train_stage3v2.config"
T = 8


def save(path, cfg, model):
    """A checkpoint in the trainer's layout: the config, and the weights under ``model.``."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": {"config": dataclasses.asdict(cfg)}, "state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def sparse_checkpoint(tmp_path_factory):
    cfg = load_config(STAGE3V2, SPARSE_TINY + [f"numTimesteps={T}"])
    model = randomize_(build_denoiser(cfg), scale=0.2, seed=1).eval()
    return save(tmp_path_factory.mktemp("ckpt") / "sparse.ckpt", cfg, model), model


def test_reads_the_model_schedule_and_config(sparse_checkpoint):
    path, model = sparse_checkpoint
    trained = read_checkpoint(path)
    assert trained.config.numTimesteps == T and trained.schedule.num_timesteps == T
    assert not trained.model.training
    for (name, a), (_, b) in zip(trained.model.state_dict().items(), model.state_dict().items(),
                                 strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    x, t, mask = denoiser_batch(13, pad_last=2)
    with torch.no_grad():
        assert_close(trained.model(x.float(), t, mask.float()), model(x.float(), t, mask.float()))


def test_sampling_overrides_change_only_the_chunking(sparse_checkpoint):
    path, model = sparse_checkpoint
    plain = read_checkpoint(path).model
    chunked = read_checkpoint(path, overrides={"sparseChunkSize": 3, "knnChunkSize": 4}).model
    stack = chunked.pair_encoder.stack
    assert {layer.chunk_size for layer in stack.layers} == {3}
    assert chunked.pair_encoder.graph_options.chunk_size == 4
    assert {layer.ipa.chunk_size for layer in chunked.structure.layers} == {3}  # local attention
    x, t, mask = denoiser_batch(13, pad_last=2)
    with torch.no_grad():
        assert_close(chunked(x.float(), t, mask.float()), plain(x.float(), t, mask.float()))


def test_foreign_and_mismatched_checkpoints_are_refused(tmp_path, sparse_checkpoint):
    foreign = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1.0}}, foreign)
    with pytest.raises(ConfigError, match="holds no Genie-Long config"):
        read_checkpoint(foreign)
    path, model = sparse_checkpoint
    stored = torch.load(path, weights_only=True)
    stored["hyper_parameters"]["config"]["pairFeatureDimension"] = 12
    torch.save(stored, tmp_path / "wider.ckpt")
    with pytest.raises(ConfigError, match="the weights do not fit the model of its config"):
        read_checkpoint(tmp_path / "wider.ckpt")
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.ckpt")


NO_LIGHTNING = """
import importlib.abc, sys

class NoLightning(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pytorch_lightning", "lightning", "lightning_fabric"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, NoLightning())
try:
    import pytorch_lightning  # noqa: F401
    raise SystemExit("the blocker does not work")
except ImportError:
    pass
from genie.sampling.run import main
code = main(sys.argv[1:])
assert not any(m.split(".")[0] in ("pytorch_lightning", "lightning") for m in sys.modules)
sys.exit(code)
"""


def test_sampling_runs_where_pytorch_lightning_cannot_be_imported(sparse_checkpoint, tmp_path):
    path, _ = sparse_checkpoint
    out = tmp_path / "samples"
    args = ["--config", str(REPO / "configs" / "sample_stage3v2.config")]
    for item in (f"checkpoint={path}", f"outputDirectory={out}", "sampleLengths=9",
                 "samplesPerLength=1", "device=cpu", "saveFragments=False"):  # fmt: skip
        args += ["--set", item]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    result = subprocess.run([sys.executable, "-c", NO_LIGHTNING, *args], capture_output=True,
                            text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(out.glob("*.pdb"))) == 1
