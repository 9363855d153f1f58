"""Typed, validated configuration: `.config` files of `key value` lines."""

from genie.config.fields import ConfigError
from genie.config.parser import (
    config_from_dict,
    config_to_text,
    load_config,
    load_sample_config,
    save_config,
)
from genie.config.sampling import SampleConfig
from genie.config.schema import ALIASES, GenieConfig

__all__ = [
    "ALIASES",
    "ConfigError",
    "GenieConfig",
    "SampleConfig",
    "config_from_dict",
    "config_to_text",
    "load_config",
    "load_sample_config",
    "save_config",
]
