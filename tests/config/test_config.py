"""Config parsing: every error names file, line, key and what is allowed; Genie files load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genie.config import (
    ConfigError,
    GenieConfig,
    SampleConfig,
    config_from_dict,
    config_to_text,
    load_config,
    load_sample_config,
)
from genie.config.cli import load_with_defaults

REPO = Path(__file__).resolve().parents[2]

# A configuration file of the original Genie, verbatim (weights/scope_l_256/configuration).
GENIE_ORIGINAL = """name scope_l_256_p_5
numEpoches 2000
batchSize 4
maximumNumResidues 256
dataDirectory data
datasetNames scope
templateType v1
numPairTransformLayers 5
includeTriangularAttention False
logEverySteps 1000
checkpointEveryEpoches 1000
learningRate 1e-4
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test.config"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), overrides)
    return str(info.value)


def test_defaults_are_genie_architecture():
    cfg = load_config()
    assert (cfg.singleFeatureDimension, cfg.pairFeatureDimension) == (128, 128)
    assert (cfg.numPairTransformLayers, cfg.structureEncoderDepth, cfg.structureEncoderHeads) == (
        5, 5, 12,
    )  # fmt: skip
    assert cfg.includeTriangularAttention is False


def test_comments_blank_lines_and_values(tmp_path):
    text = "# header\n\nbatchSize 3   # trailing comment\nlogDirectory x y\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg.batchSize == 3
    assert cfg.logDirectory == "x y"  # a value may hold spaces (a name may not: test_names)


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    msg = error_of(tmp_path, "batchSize 2\nlerningRate 1e-3\n")
    assert "test.config, line 2" in msg
    assert "lerningRate" in msg and "did you mean 'learningRate'" in msg


@pytest.mark.parametrize("word", ["yes", "1", "on", "Truee", "0"])
def test_booleans_only_true_false(tmp_path, word):
    msg = error_of(tmp_path, f"includeTriangularAttention {word}\n")
    assert "includeTriangularAttention" in msg and word in msg and "True/False" in msg


@pytest.mark.parametrize("word,value", [("True", True), ("false", False), ("FALSE", False)])
def test_booleans_any_case(tmp_path, word, value):
    assert load_config(write(tmp_path, f"splitChainBreaks {word}\n")).splitChainBreaks is value


@pytest.mark.parametrize(
    "line,needle",
    [
        ("batchSize two", "not a valid integer"),
        ("batchSize 2.5", "not a valid integer"),
        ("batchSize 0", "must be >= 1"),
        ("learningRate 0", "must be > 0"),
        ("triangularDropout 1.5", "must be <= 1"),
        ("templateType v3", "allowed: v1, binned"),
        ("batchSize", "expected 'key value'"),
    ],
)
def test_bad_values(tmp_path, line, needle):
    msg = error_of(tmp_path, line + "\n")
    assert needle in msg and "line 1" in msg


def test_duplicate_key(tmp_path):
    assert "already set on line 1" in error_of(tmp_path, "batchSize 2\nbatchSize 3\n")


def test_incompatible_keys_named(tmp_path):
    msg = error_of(tmp_path, "minimumNumResidues 300\nmaximumNumResidues 256\n")
    assert "minimumNumResidues" in msg and "maximumNumResidues" in msg


def test_overrides(tmp_path):
    path = write(tmp_path, "batchSize 2\n")
    cfg = load_config(path, ["batchSize=7", "numEpoches=3"])
    assert (cfg.batchSize, cfg.numEpochs) == (7, 3)
    with pytest.raises(ConfigError, match="--set batchSiz=1: unknown key 'batchSiz'"):
        load_config(path, ["batchSiz=1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(path, ["batchSize"])


def test_original_genie_config_loads_unchanged(tmp_path, caplog):
    cfg = load_config(write(tmp_path, GENIE_ORIGINAL))
    assert cfg.numEpochs == 2000 and cfg.checkpointEveryEpochs == 1000
    assert cfg.templateType == "v1" and cfg.datasetNames == ["scope"]
    assert cfg.learningRate == pytest.approx(1e-4)
    assert "numEpoches" in caplog.text and "numEpochs" in caplog.text


def test_text_round_trip_and_dict_round_trip(tmp_path):
    cfg = load_config(
        None, ["name=round.trip", "logDirectory=round trip", "datasetSize=5", "datasetNames=a,b"]
    )
    again = load_config(write(tmp_path, config_to_text(cfg)))
    assert again == cfg
    from dataclasses import asdict

    assert config_from_dict(GenieConfig, asdict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        config_from_dict(GenieConfig, {"bogus": 1})


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("does/not/exist.config")


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.config")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cls = SampleConfig if path.name.startswith("sample_") else GenieConfig
    cfg = load_sample_config(path) if cls is SampleConfig else load_config(path)
    assert isinstance(cfg, cls)


def test_config_reference_is_current():
    import subprocess
    import sys

    script = REPO / "scripts" / "config_reference.py"
    command = [sys.executable, str(script), "--check"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_key_given_twice_with_set_keeps_the_last_and_says_so(capsys):
    cfg, _ = load_with_defaults(GenieConfig, None, ["batchSize=1", "seed=3", "batchSize=2"])
    assert cfg.batchSize == 2 and cfg.seed == 3
    assert capsys.readouterr().out.splitlines() == [
        "[genie] --set batchSize is given more than once: the last, batchSize=2, counts"
    ]
    load_with_defaults(GenieConfig, None, ["batchSize=1", "seed=3"])
    assert capsys.readouterr().out == ""


def test_hash_starts_a_comment_only_at_a_line_start_or_after_white_space(tmp_path):
    path = tmp_path / "hash.config"
    path.write_text("# a comment line\ndataDirectory data/set#2  # the second set\n"
                    "batchSize 3 #a comment right after white space\n")  # fmt: skip
    cfg = load_config(path)
    assert cfg.dataDirectory == "data/set#2" and cfg.batchSize == 3


@pytest.mark.parametrize(("value", "message"), [
    ("", "dataDirectory is empty: give a path"),
    (" , ", "has an empty entry"),
    ("a,,b", "has an empty entry"),
    ("bundled,/data", "'bundled' (the packaged set) cannot be combined"),
])  # fmt: skip
def test_empty_or_mixed_data_sources_are_errors(value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [f"dataDirectory={value}"])


@pytest.mark.parametrize("key", ["logDirectory", "cacheDirectory"])
def test_empty_output_paths_are_errors(key):
    with pytest.raises(ConfigError, match=f"{key} is empty: give a path"):
        load_config(None, [f"{key}="])
