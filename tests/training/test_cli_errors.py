"""User mistakes of the training command: unwritable folders (checked before any work), unusable
data and a GPU accelerator without a GPU are exit 2 and one line naming the key or path."""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest
import torch
from helpers import TINY_MODEL, helix_trace

from genie.data.structure_io import write_ca_structure
from genie.training import run as training_run
from genie.training.run import main

SETTINGS = ["name=test", "numWorkers=0", "maximumNumResidues=32", "minimumNumResidues=20",
            "batchSize=8", "numTimesteps=100", "numEpochs=1",
            "logSamplesEveryEpochs=0"]  # fmt: skip


def train(tmp_path, *overrides: str) -> int:
    config = tmp_path / "tiny.config"
    config.write_text("".join(f"{k} {v}\n" for k, v in (o.split("=", 1) for o in
                                                          TINY_MODEL + SETTINGS)))  # fmt: skip
    given = [f"logDirectory={tmp_path / 'runs'}", f"cacheDirectory={tmp_path / 'cache'}",
             *overrides]  # fmt: skip
    return main(["--config", str(config), *(a for o in given for a in ("--set", o))])


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    line = captured.err.strip().splitlines()[-1]  # after Lightning's notes, if any
    assert ": error: " in line and "error" not in captured.err.replace(line, "")
    return line.split(": error: ", 1)[1]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the model or the data module is built (the checks come first)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the path checks")

    monkeypatch.setattr(training_run, "GenieModule", forbidden)
    monkeypatch.setattr(training_run, "build_datamodule", forbidden)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["logDirectory={file}"], "logDirectory {file} is a file, not a folder"),
        (["logDirectory={file}/sub"],
         "logDirectory {file}/sub cannot be written: {file} is a file"),
        (["cacheDirectory={file}", "dataDirectory={tmp}/pdb"],
         "cacheDirectory {file} is a file, not a folder"),
    ],
)  # fmt: skip
def test_a_folder_that_is_a_file_is_refused_before_any_work(
    tmp_path, capsys, no_work, overrides, message
):
    (tmp_path / "file").write_text("x")
    (tmp_path / "pdb").mkdir()
    where = dict(file=tmp_path / "file", tmp=tmp_path)
    assert train(tmp_path, *(o.format(**where) for o in overrides)) == 2
    assert message.format(**where) in one_line_error(capsys)


def test_the_bundled_data_needs_no_cache_folder(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    seen = []
    monkeypatch.setattr(training_run, "GenieModule", lambda cfg: seen.append(cfg) or 1 / 0)
    # cacheDirectory is a file but unused: the run gets past the checks (to the stub's bug)
    assert train(tmp_path, f"cacheDirectory={tmp_path / 'file'}") == 1
    assert len(seen) == 1


def test_a_full_disk_is_refused(tmp_path, capsys, no_work, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 512, 512))
    assert train(tmp_path) == 2
    assert one_line_error(capsys).startswith(f"logDirectory {tmp_path / 'runs'}: only 512 B free")


def _write_chain(path, n: int, seed: int) -> None:
    write_ca_structure(path, helix_trace(n, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "no PDB/mmCIF files (.pdb/.ent/.cif/.mmcif[.gz]) in ['{data}']"),
        ("unusable", "no usable Cα segment in ['{data}']"),
        ("one usable", "(from ['{data}']) has 1 segments of >= 20 residues; a train/val split "
                       "needs at least 2"),
        ("/etc/passwd", "no usable Cα segment in ['/etc/passwd']"),
    ],
)  # fmt: skip
def test_unusable_data_is_a_user_error(tmp_path, capsys, case, message):
    data = tmp_path / "data"
    data.mkdir()
    if case == "unusable":
        (data / "a.pdb").write_text("not a structure\n")
        _write_chain(data / "short.pdb", 10, 0)  # below minimumNumResidues
    elif case == "one usable":
        _write_chain(data / "one.pdb", 40, 0)
    elif case == "/etc/passwd":
        data = "/etc/passwd"
    assert train(tmp_path, f"dataDirectory={data}") == 2
    assert message.format(data=data) in one_line_error(capsys)


def test_a_dataset_file_that_is_not_one_is_a_user_error(tmp_path, capsys):
    (tmp_path / "x.npz").write_text("text, not an archive")
    assert train(tmp_path, f"dataDirectory={tmp_path / 'x.npz'}") == 2
    assert f"{tmp_path / 'x.npz'} is not a Cα dataset file" in one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_a_gpu_accelerator_without_a_gpu_is_a_config_error(tmp_path, capsys, accelerator):
    assert train(tmp_path, f"accelerator={accelerator}") == 2
    assert one_line_error(capsys) == (
        f"accelerator {accelerator}: no CUDA device is available; use auto or cpu"
    )
