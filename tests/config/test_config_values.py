"""Every key refuses every bad kind of value with exit code 2 and a message naming it; config
files are UTF-8 (with or without BOM) or a clear error; names are safe path components; values
given in Python code or stored in a checkpoint are held to the same rules."""

from __future__ import annotations

import codecs
import dataclasses
import math
import typing

import pytest

from genie.config import (
    ConfigError,
    GenieConfig,
    SampleConfig,
    config_from_dict,
    load_config,
    load_sample_config,
)
from genie.config.cli import load_with_defaults
from genie.config.fields import _base_type, config_fields
from genie.sampling.run import main as sample_main
from genie.training.run import main as train_main

BAD_NUMBER = "expected a finite number such as 0.25"
NOT_FINITE = "no nan or inf"
BAD_INTEGER = "ASCII digits 0-9"
NAME_RULE = "1-100 characters of letters"
NAMES_OK = ["a", "run-1", "run.v2_final", "R2D2", "x" * 100, "-dash", "_under", "1.0"]
NAMES_BAD = ["", ".", "..", ".hidden", "../../escape", "/abs", "a/b", "a\\b", "a b", "x" * 101,
             "naïve", "a:b", "a*", "~home"]  # fmt: skip

# Bad values that no type rule covers: key -> [(value, expected text of the message)].
SPECIAL: dict[str, list[tuple[str, str]]] = {
    "name": [(name, NAME_RULE) for name in NAMES_BAD if name],  # '' in a file: no value
    "sampleLengths": [
        ("1e3", "cannot read '1e3'"),
        ("٨", "cannot read '٨'"),
        ("64-", "cannot read '64-'"),
        ("64-256:0", "steps from 1"),
        ("2000000", "at most 1000000"),
        ("9" * 5000, "cannot read"),
    ],
    "checkpointModules": [("bogus", "unknown kind(s) bogus")],
}


def _base(annotation):
    """The type of a key's value, or of each item of a list: int, float, bool or str."""
    base, _ = _base_type(annotation)
    return typing.get_args(base)[0] if typing.get_origin(base) is list else base


def _number(value: float, integer: bool) -> str:
    return str(int(value)) if integer else repr(float(value))


def bad_values(cls: type, key: str) -> list[tuple[str, str]]:
    """(value text, a text the error must contain) for every bad kind that applies to ``key``."""
    field, annotation = config_fields(cls)[key]
    base = _base(annotation)
    meta = field.metadata
    cases = list(SPECIAL.get(key, []))
    if base is bool:
        cases += [("maybe", "True/False"), ("1", "True/False"), ("yes", "True/False")]
    if base is str and meta["choices"]:
        cases += [("bogus", "allowed: " + ", ".join(meta["choices"]))]
    if base is float:
        cases += [(v, NOT_FINITE) for v in ("nan", "NaN", "inf", "-inf", "Infinity", "1e999")]
        cases += [("abc", BAD_NUMBER), ("١.٥", BAD_NUMBER), ("1_000.5", BAD_NUMBER)]
    if base is int:
        cases += [
            ("abc", BAD_INTEGER),
            ("1.5", BAD_INTEGER),
            ("٨", BAD_INTEGER),
            ("８", BAD_INTEGER),
            ("1e3", BAD_INTEGER),
            ("1_000", BAD_INTEGER),
            ("+8", BAD_INTEGER),
            ("0x10", BAD_INTEGER),
            ("1e30", BAD_INTEGER),
            ("9" * 25, f"must be <= {meta['max']}"),
            ("9" * 5000, "at most 30 digits"),
        ]
    if base in (int, float):
        integer = base is int
        low, high = meta["min"], meta["max"]
        if low is not None:
            below = low if meta["min_exclusive"] else low - 1
            op = ">" if meta["min_exclusive"] else ">="
            cases.append((_number(below, integer), f"must be {op} {low}"))
        if high is not None:
            cases.append((_number(high + 1, integer), f"must be <= {high}"))
            cases.append((_number(high * 1000, integer), f"must be <= {high}"))
    return cases


def all_keys():
    return [(cls, f.name) for cls in (GenieConfig, SampleConfig) for f in dataclasses.fields(cls)]


@pytest.fixture(autouse=True)
def no_training_or_sampling(monkeypatch):
    """A value that is wrongly accepted ends the command at once (exit code 0, no model)."""

    def accepted(cfg, **_):
        return None

    monkeypatch.setattr("genie.training.run.train", accepted)
    monkeypatch.setattr("genie.sampling.run.sample", accepted)


def run_main(cls: type, argv: list[str]) -> int:
    """The training or sampling command line (both load the config before anything else)."""
    return (train_main if cls is GenieConfig else sample_main)(argv)


@pytest.mark.parametrize("cls,key", all_keys(), ids=lambda x: getattr(x, "__name__", x))
def test_every_key_refuses_every_bad_value(cls, key, tmp_path, capsys):
    """Through the command line (--set) and through a config file line: exit code 2, the key
    named, what is allowed said, no traceback."""
    base = tmp_path / "base.config"
    base.write_text("# no keys\n")
    line_file = tmp_path / "line.config"
    failures = []
    for value, expected in bad_values(cls, key):
        line_file.write_text(f"{key} {value}\n")
        for route, argv in (
            ("--set", ["--config", str(base), "--set", f"{key}={value}"]),
            ("file", ["--config", str(line_file)]),
        ):
            code = run_main(cls, argv)
            err = capsys.readouterr().err
            message = err.replace(f"--set {key}={value}", "")  # the echo of the argument
            problems = [
                code != 2 and f"exit code {code}",
                key not in message and "key not named",
                expected not in err and f"no {expected!r}",
                "Traceback" in err and "traceback",
            ]
            if any(problems):
                failures.append(f"{route} {key}={value[:40]}: {[p for p in problems if p]}")
    assert not failures, "\n".join(failures)


def test_the_table_covers_every_kind():
    """Every integer key has a range; every key of a typed kind gets bad values."""
    for cls, key in all_keys():
        field, annotation = config_fields(cls)[key]
        base = _base(annotation)
        if base is int:
            assert field.metadata["min"] is not None and field.metadata["max"] is not None, key
        if base in (int, float, bool) or field.metadata["choices"]:
            assert bad_values(cls, key), key
    assert len(bad_values(GenieConfig, "batchSize")) >= 14
    assert len(bad_values(GenieConfig, "learningRate")) >= 10


@pytest.mark.parametrize("cls", [GenieConfig, SampleConfig], ids=lambda c: c.__name__)
def test_seed_range(cls, tmp_path, capsys):
    assert config_fields(cls)["seed"][0].metadata["max"] == 2**32 - 1
    assert load_config(None, ["seed=4294967295"], cls=cls).seed == 4294967295
    assert load_config(None, ["seed=0"], cls=cls).seed == 0
    base = tmp_path / "base.config"
    base.write_text("\n")
    for value in ("4294967296", "1e30", "-1"):
        assert run_main(cls, ["--config", str(base), "--set", f"seed={value}"]) == 2
        err = capsys.readouterr().err
        assert f"seed = '{value}'" in err and "4294967295" in err, err
        assert "Traceback" not in err


@pytest.mark.parametrize(
    "text,value",
    [("8", 8), ("0012", 12), ("1000000", 1_000_000), (" 16 ", 16)],
)
def test_plain_integers_still_read(text, value):
    assert load_config(None, [f"batchSize={text}"]).batchSize == value


@pytest.mark.parametrize(
    "text,value",
    [("1e-4", 1e-4), ("+1e-4", 1e-4), ("0.5", 0.5), (".5", 0.5), ("2.", 2.0), ("3", 3.0)],
)
def test_plain_numbers_still_read(text, value):
    assert load_config(None, [f"learningRate={text}"]).learningRate == value


# --- config files ---------------------------------------------------------------------------


def test_utf8_with_bom_is_read(tmp_path):
    path = tmp_path / "bom.config"
    path.write_bytes(codecs.BOM_UTF8 + "# Å, ≤ 1\nbatchSize 3\nname bom\n".encode())
    cfg = load_config(path)
    assert (cfg.batchSize, cfg.name) == (3, "bom")
    cfg, applied = load_with_defaults(GenieConfig, path, [], {"batchSize": "1", "numWorkers": "0"})
    assert (cfg.batchSize, cfg.numWorkers, applied) == (3, 0, ["numWorkers=0"])
    sample = tmp_path / "sample.config"
    sample.write_bytes(codecs.BOM_UTF8 + b"samplesPerLength 2\n")
    assert load_sample_config(sample).samplesPerLength == 2


def assert_refused(path, needle: str, main, capsys) -> str:
    """``path`` is refused by load_config (message names the file and contains ``needle``) and
    by the command ``main`` (exit code 2, no traceback); returns the message."""
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg and needle in msg, msg
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    return msg


def test_latin1_byte_names_file_offset_and_line(tmp_path, capsys):
    path = tmp_path / "latin1.config"
    path.write_bytes(b"batchSize 3\n# caf\xe9\n")  # 0xe9 at offset 12 + 5 = 17, line 2
    msg = assert_refused(path, "0xe9 at byte offset 17 (line 2)", train_main, capsys)
    assert "not UTF-8" in msg


def test_bad_byte_after_bom_counts_the_bom(tmp_path, capsys):
    path = tmp_path / "bom_latin1.config"
    path.write_bytes(codecs.BOM_UTF8 + b"seed 1\n\xff\n")  # 3 + 7 = 10, line 2
    assert_refused(path, "0xff at byte offset 10 (line 2)", sample_main, capsys)


@pytest.mark.parametrize(
    "data,offset",
    [(b"\x00\x01\x02\xff" * 8, 0), ("batch".encode("utf-16"), 3), (b"batchSize 3\n\x00\n", 12)],
    ids=["binary", "utf16", "nul-in-text"],
)
def test_binary_file_refused(tmp_path, data, offset, capsys):
    path = tmp_path / "blob.config"
    path.write_bytes(data)
    assert_refused(path, f"binary file, not a text config (NUL byte at byte offset {offset})",
                   sample_main, capsys)  # fmt: skip


def test_directory_refused(tmp_path, capsys):
    assert_refused(tmp_path, "is a directory", train_main, capsys)


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [GenieConfig, SampleConfig], ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", NAMES_OK)
def test_good_names(cls, name):
    assert load_config(None, [f"name={name}"], cls=cls).name == name
    assert cls(name=name).name == name


@pytest.mark.parametrize("cls", [GenieConfig, SampleConfig], ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", NAMES_BAD)
def test_bad_names(cls, name, tmp_path):
    with pytest.raises(ConfigError, match="name = .* not allowed: allowed: 1-100 characters"):
        load_config(None, [f"name={name}"], cls=cls)
    with pytest.raises(ConfigError, match="name = .* not allowed: allowed: 1-100 characters"):
        cls(name=name)
    path = tmp_path / "name.config"
    path.write_text(f"name {name}\n")
    with pytest.raises(ConfigError, match="name"):  # an empty name: a key without a value
        load_config(path, cls=cls)


# --- values given in Python code or stored in a checkpoint ----------------------------------


@pytest.mark.parametrize(
    "cls,changes,expected",
    [
        (GenieConfig, {"learningRate": math.nan}, "learningRate = nan is not allowed: must be a "
         "finite number"),
        (GenieConfig, {"gradientClipVal": math.inf}, "gradientClipVal = inf"),
        (GenieConfig, {"warmupEpochs": -math.inf}, "warmupEpochs = -inf"),
        (GenieConfig, {"mhcWeights": [0.1, math.nan, 0.1]}, "mhcWeights = [0.1, nan, 0.1]"),
        (GenieConfig, {"maxTrainingMinutes": math.nan}, "maxTrainingMinutes = nan"),
        (GenieConfig, {"seed": 2**32}, "seed = 4294967296 is not allowed: must be <= 4294967295"),
        (GenieConfig, {"batchSize": 0}, "batchSize = 0 is not allowed: must be >= 1"),
        (GenieConfig, {"batchSize": 4.0}, "batchSize = 4.0 is not allowed: expected integer"),
        (GenieConfig, {"batchSize": True}, "batchSize = True is not allowed: expected integer"),
        (GenieConfig, {"batchSize": "4"}, "batchSize = '4' is not allowed: expected integer"),
        (GenieConfig, {"learningRate": "1e-4"}, "learningRate = '1e-4' is not allowed"),
        (GenieConfig, {"useFlashMode": 1}, "useFlashMode = 1 is not allowed: expected True/False"),
        (GenieConfig, {"templateType": "v3"}, "templateType = 'v3' is not allowed: allowed: v1"),
        (GenieConfig, {"datasetNames": "scope"}, "datasetNames = 'scope' is not allowed"),
        (GenieConfig, {"name": "../escape"}, "name = '../escape' is not allowed"),
        (SampleConfig, {"temperature": math.inf}, "temperature = inf is not allowed"),
        (SampleConfig, {"temperature": math.nan}, "temperature = nan is not allowed"),
        (SampleConfig, {"seed": -1}, "seed = -1 is not allowed: must be >= 0"),
        (SampleConfig, {"batchSize": 10**30}, "batchSize = 10000000000000000000000000000"),
    ],
)  # fmt: skip
def test_python_values_are_checked(cls, changes, expected):
    with pytest.raises(ConfigError) as info:
        cls(**changes)
    assert expected in str(info.value)
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(cls(), **changes)
    assert expected in str(info.value)
    stored = {**dataclasses.asdict(cls()), **changes}
    with pytest.raises(ConfigError) as info:
        config_from_dict(cls, stored, source="run/last.ckpt")
    assert str(info.value).startswith("run/last.ckpt: ") and expected in str(info.value)


def test_python_values_that_stay_allowed():
    assert GenieConfig(learningRate=1).learningRate == 1  # an integer for a number
    assert GenieConfig(maxTrainingMinutes=None, datasetSize=None).datasetSize is None
    assert SampleConfig(seed=2**32 - 1).seed == 2**32 - 1
    cfg = GenieConfig(learningRate=3e-4)
    assert config_from_dict(GenieConfig, dataclasses.asdict(cfg)) == cfg


def test_checkpoint_dict_with_nan_refused_on_resume(tmp_path):
    """--resume reads the stored config through config_from_dict: a NaN there is refused
    (train() runs the check; the command-line stub of this module replaces train())."""
    import torch

    from genie.training.from_checkpoint import check_resume

    stored = {**dataclasses.asdict(GenieConfig()), "learningRate": math.nan}
    ckpt = tmp_path / "nan.ckpt"
    torch.save({"hyper_parameters": {"config": stored}, "state_dict": {}}, ckpt)
    with pytest.raises(ConfigError, match="learningRate = nan is not allowed"):
        check_resume(GenieConfig(), ckpt)
