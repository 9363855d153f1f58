"""The keys of the noise scale, prediction target and re-noising sampler: validated at load time,
and configs stored before them read as what those checkpoints were trained with."""

from __future__ import annotations

import dataclasses

import pytest

from genie.config import ConfigError, GenieConfig, config_from_dict, load_config, load_sample_config
from genie.model.build import build_parametrisation


def test_defaults_are_genie():
    cfg = GenieConfig()
    par = build_parametrisation(cfg)
    assert (par.noise.kind, par.target) == ("unit", "epsilon")
    assert not cfg.selfConditioning and cfg.randomNeighbors == 0


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="noiseScale"):
        load_config(None, ["noiseScale=rg"])
    with pytest.raises(ConfigError, match="noiseSigma"):
        load_config(None, ["noiseScale=fixed", "noiseSigma=0"])
    with pytest.raises(ConfigError, match="predictionTarget"):
        load_config(None, ["predictionTarget=v"])
    with pytest.raises(ConfigError, match="randomNeighbors"):
        load_config(None, ["randomNeighbors=-1"])


def test_a_stored_config_without_the_keys_is_unit_noise_even_if_defaults_change(monkeypatch):
    stored = dataclasses.asdict(GenieConfig())
    for key in ("noiseScale", "noiseSigma", "predictionTarget", "selfConditioning",
                "selfConditionGraph", "randomNeighbors"):  # fmt: skip
        del stored[key]
    fields = {f.name: f for f in dataclasses.fields(GenieConfig)}
    monkeypatch.setattr(fields["noiseScale"], "default", "length")  # a later default
    cfg = config_from_dict(GenieConfig, stored)
    assert cfg.noiseScale == "unit" and cfg.predictionTarget == "epsilon"
    assert cfg.selfConditioning is False and cfg.randomNeighbors == 0


def test_renoise_sampling_keys():
    cfg = load_sample_config(None, ["samplingStrategy=renoise", "skipSteps=2", "recentre=True"])
    assert cfg.recentre and cfg.skipSteps == 2
    with pytest.raises(ConfigError, match="ddimEta"):
        load_sample_config(None, ["samplingStrategy=renoise", "ddimEta=0.5"])
