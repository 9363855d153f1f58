"""The Lightning-free checkpoint reader: the model and schedule of a training checkpoint, the
sampling overrides of chunk sizes, the checksum of the weights, refusals of every kind of broken
file (in one line, naming the file), and sampling where pytorch_lightning cannot be imported."""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import re
import subprocess
import sys

import pytest
import torch
from checkpoint_cases import CASES, Payload, flip_a_weight_byte, make, sentinel
from helpers import REPO, SPARSE_TINY, denoiser_batch, randomize_
from torch.testing import assert_close

from genie.checkpoint import (
    CHECKSUM_KEY,
    CheckpointError,
    checksum_entry,
    read_checkpoint,
    state_dict_digest,
)
from genie.config import ConfigError, load_config
from genie.model import build_denoiser
from genie.sampling.run import main as sample_main

STAGE3V2 = REPO / "configs" / "train_stage3v2.config"
T = 8


def save(path, cfg, model):
    """A checkpoint in the trainer's layout: the config, the weights under ``model.`` and their
    checksum."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": {"config": dataclasses.asdict(cfg)}, "state_dict": state,
                CHECKSUM_KEY: checksum_entry(state)}, path)  # fmt: skip
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
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.ckpt"):
        read_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="is a folder, not a file"):
        read_checkpoint(tmp_path)


def test_the_checksum_covers_every_name_dtype_shape_and_byte():
    values = torch.arange(6, dtype=torch.float32)
    state = {"w": values.reshape(2, 3), "b": torch.ones(2, dtype=torch.bfloat16),
             "s": torch.tensor(1.5), "none": torch.zeros(0)}  # fmt: skip
    digest = state_dict_digest(state)
    same = {**state, "w": values.reshape(3, 2).t().contiguous().t().reshape(2, 3).clone()}
    assert state_dict_digest(same) == digest and len(digest) == 64
    one_bit = values.clone()
    one_bit.view(torch.uint8)[9] ^= 1
    variants = {
        "renamed": {"v" if k == "w" else k: v for k, v in state.items()},
        "reordered": dict(reversed(state.items())),
        "reshaped": {**state, "w": values.reshape(3, 2)},
        "other dtype, same bytes": {**state, "w": values.reshape(2, 3).view(torch.int32)},
        "one bit of a float32": {**state, "w": one_bit.reshape(2, 3)},
        "a bfloat16 value": {**state, "b": torch.tensor([1.0, 1.0078125], dtype=torch.bfloat16)},
        "a scalar": {**state, "s": torch.tensor(-1.5)},
    }
    for what, variant in variants.items():
        assert state_dict_digest(variant) != digest, what


@pytest.mark.parametrize("case", CASES)
def test_broken_checkpoints_are_refused_in_one_line(case, sparse_checkpoint, tmp_path):
    path, _ = sparse_checkpoint
    bad = make(case, path, tmp_path)
    with pytest.raises(CheckpointError, match=CASES[case]) as caught:
        read_checkpoint(bad)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {bad} ") and "\n" not in message
    assert not sentinel(tmp_path).exists()


def test_a_flipped_byte_loads_without_the_checksum_and_is_caught_with_it(sparse_checkpoint,
                                                                          tmp_path):  # fmt: skip
    path, _ = sparse_checkpoint
    flipped = tmp_path / "flipped.ckpt"
    key, index = flip_a_weight_byte(path, flipped)
    good, bad = torch.load(path, weights_only=True), torch.load(flipped, weights_only=True)
    changed = good["state_dict"][key].reshape(-1) != bad["state_dict"][key].reshape(-1)
    assert changed.nonzero().flatten().tolist() == [index]  # torch itself notices nothing
    assert torch.isfinite(bad["state_dict"][key]).all()
    with pytest.raises(CheckpointError, match="do not match its checksum"):
        read_checkpoint(flipped)
    del bad[CHECKSUM_KEY]  # the same file as written before checksums: read, damage and all
    torch.save(bad, tmp_path / "unverified.ckpt")
    trained = read_checkpoint(tmp_path / "unverified.ckpt")
    assert not torch.equal(trained.model.state_dict()[key.removeprefix("model.")],
                           good["state_dict"][key])  # fmt: skip


def test_the_payload_of_the_malicious_checkpoint_is_live_but_never_runs(sparse_checkpoint,
                                                                       tmp_path):  # fmt: skip
    ran = tmp_path / "unpickled" / "PAYLOAD_RAN"
    ran.parent.mkdir()
    pickle.loads(pickle.dumps(Payload(ran)))  # an unguarded unpickler runs it
    assert ran.read_text() == "the payload ran"
    path, _ = sparse_checkpoint
    bad = make("malicious", path, tmp_path / "case")
    with pytest.raises(CheckpointError, match="was not loaded") as caught:
        read_checkpoint(bad)
    assert "may contain code" in str(caught.value)
    assert not sentinel(tmp_path / "case").exists()


def test_checkpoints_without_a_checksum_are_still_read(sparse_checkpoint, tmp_path, caplog):
    path, model = sparse_checkpoint
    stored = torch.load(path, weights_only=True)
    del stored[CHECKSUM_KEY]
    torch.save(stored, tmp_path / "old.ckpt")
    with caplog.at_level(logging.INFO, logger="genie.checkpoint"):
        trained = read_checkpoint(tmp_path / "old.ckpt")
    assert "has no checksum" in caplog.text
    for name, value in model.state_dict().items():
        assert torch.equal(trained.model.state_dict()[name], value), name


@pytest.mark.parametrize("case", CASES)
def test_the_sampling_command_reports_broken_checkpoints(case, sparse_checkpoint, tmp_path,
                                                         capsys):  # fmt: skip
    path, _ = sparse_checkpoint
    bad = make(case, path, tmp_path / "bad")
    args = ["--config", str(REPO / "configs" / "sample_stage3v2.config")]
    for item in (f"checkpoint={bad}", f"outputDirectory={tmp_path / 'samples'}",
                 "sampleLengths=9", "samplesPerLength=1", "device=cpu"):  # fmt: skip
        args += ["--set", item]
    assert sample_main(args) == 2
    err = capsys.readouterr().err
    assert f"error: checkpoint {bad} " in err and "Traceback" not in err
    assert re.search(CASES[case], err), err
    assert not list((tmp_path / "samples").glob("*.pdb"))
    assert not sentinel(tmp_path / "bad").exists()


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
    # skipSteps: the tiny model has 8 timesteps, below the config's stride of 10
    for item in (f"checkpoint={path}", f"outputDirectory={out}", "sampleLengths=9",
                 "samplesPerLength=1", "device=cpu", "saveFragments=False",
                 "skipSteps=2"):  # fmt: skip
        args += ["--set", item]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    result = subprocess.run([sys.executable, "-c", NO_LIGHTNING, *args], capture_output=True,
                            text=True, env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(out.glob("*.pdb"))) == 1
