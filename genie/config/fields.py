"""Typed config fields: how one `key value` line becomes a checked Python value.

A config dataclass declares each key with :func:`option`, which stores the key's type, its
allowed values or range and a one-line help text in the dataclass field's metadata. The parser
(``parser.py``) reads that metadata; nothing else in the package repeats a default. The same
checks run when a config is built in Python code (:func:`check_fields`, from the dataclasses'
``__post_init__``), so a value given directly, by ``dataclasses.replace`` or from a checkpoint is
held to the rules of a config file.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

_TRUE = {"true"}
_FALSE = {"false"}
_NONE = {"none", "null"}

# Text of an integer: ASCII digits with an optional minus sign (int() would also take "1_000",
# "+8", " ٨" and other Unicode digits). A number: the same with a point and/or an exponent.
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
_MAX_DIGITS = 30  # longer integer texts are refused before int() reads them

# Upper bounds of integer keys, chosen far above any real use but below absurd values.
MAX_SEED = 2**32 - 1  # numpy's SeedSequence / pl.seed_everything take 0 ≤ seed < 2**32
MAX_RESIDUES = 1_000_000  # chain lengths, crops, residue-index steps, chunk sizes (residues)
MAX_DIMENSION = 65_536  # feature channels, embedding sizes, neighbour counts
MAX_LAYERS = 1_024  # layer counts, heads, points, ranks, streams, devices, workers
MAX_STEPS = 100_000  # diffusion timesteps and strides over them
MAX_COUNT = 1_000_000  # epochs, batch sizes, samples, stages
MAX_ITEMS = 1_000_000_000  # dataset segments, optimiser steps

# Run and sample names become path components: no separators, no '..', no hidden names.
NAME_PATTERN = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}"
NAME_RULE = (
    "1-100 characters of letters A-Z a-z, digits, '.', '_' and '-', not starting with '.' "
    "(a path component: no '/', no spaces)"
)


class ConfigError(ValueError):
    """A config file, override or combination of values that cannot be used."""


# The choices of ``compileModel`` (training and sampling): off, or a torch.compile mode; auto = the
# entry point's own mode on CUDA, off on the CPU (genie.utils.runtime.resolve_compile_mode).
COMPILE_MODES = ("auto", "off", "default", "reduce-overhead", "max-autotune")


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    pattern: str | None = None,
    rule: str | None = None,
) -> Any:
    """Declare one config key (a dataclass field with validation metadata).

    Args:
        default: the key's default value (the only place it is written).
        help: one line for the config reference: what the key does, with its unit.
        choices: the allowed values, if the key is an enumeration.
        min, max: inclusive bounds for numbers (``min_exclusive`` makes the lower one strict).
        pattern, rule: a regular expression that a text value must match entirely, and the
            words that say what it allows (for messages and the config reference).
    """
    meta = {
        "help": help,
        "choices": choices,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
        "pattern": pattern,
        "rule": rule,
    }
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@functools.cache
def config_fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """``{key: (field, type annotation)}`` of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """Return (type, optional) for annotations such as ``int``, ``int | None``, ``list[int]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def describe_type(annotation: Any) -> str:
    """A human word for a field type, used in error messages and the config reference."""
    base, optional = _base_type(annotation)
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        word = f"comma-separated list of {item.__name__}"
    else:
        word = {bool: "True/False", int: "integer", float: "number", str: "text"}[base]
    return f"{word} or None" if optional else word


def describe_range(meta: Mapping[str, Any], *, ascii_only: bool = False) -> str:
    """The range of a numeric key in words ('≥ 1 and ≤ 1024'), or '' when it has none."""
    ge, gt, le = (">=", ">", "<=") if ascii_only else ("≥", ">", "≤")
    parts = []
    if meta.get("min") is not None:
        parts.append(f"{gt if meta.get('min_exclusive') else ge} {meta['min']}")
    if meta.get("max") is not None:
        parts.append(f"{le} {meta['max']}")
    return " and ".join(parts)


def parse_value(annotation: Any, raw: str) -> Any:
    """Convert the text of a value to the field's type; raise ValueError with a reason."""
    base, optional = _base_type(annotation)
    text = raw.strip()
    if optional and text.lower() in _NONE:
        return None
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return [parse_value(item, p) for p in parts]
    if base is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError("expected True or False")
    if base is int:
        if not _INTEGER.fullmatch(text):
            raise ValueError("expected an integer: ASCII digits 0-9 with an optional '-'")
        if len(text.lstrip("-")) > _MAX_DIGITS:
            raise ValueError(f"expected an integer of at most {_MAX_DIGITS} digits")
        return int(text)
    if base is float:
        number = float(text) if _NUMBER.fullmatch(text) else math.nan
        if not math.isfinite(number):
            raise ValueError("expected a finite number such as 0.25 or 1e-4; no nan or inf")
        return number
    if base is str:
        return text
    raise TypeError(f"unsupported config type {annotation!r}")


def _type_problem(base: Any, value: Any) -> str | None:
    """Why ``value`` is not of type ``base`` (int, float, bool or str), or None."""
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    else:
        ok = isinstance(value, base)
    return None if ok else f"expected {describe_type(base)}, got {type(value).__name__}"


def check_value(field: dataclasses.Field, annotation: Any, value: Any) -> str | None:
    """Return why ``value`` is not allowed for ``field`` (of type ``annotation``), or None."""
    meta = field.metadata
    base, optional = _base_type(annotation)
    if value is None:
        return None if optional else "None is not allowed"
    if typing.get_origin(base) is list:
        if not isinstance(value, list):
            return f"expected {describe_type(base)}, got {type(value).__name__}"
        (base,) = typing.get_args(base)
        values = value
    else:
        values = [value]
    for v in values:
        problem = _type_problem(base, v)
        if problem:
            return problem
        if meta.get("choices") is not None and v not in meta["choices"]:
            return "allowed: " + ", ".join(str(c) for c in meta["choices"])
        if meta.get("pattern") is not None and not re.fullmatch(meta["pattern"], v):
            return f"allowed: {meta['rule']}"
        if base is bool or base is str:
            continue
        if not isinstance(v, numbers.Integral) and not math.isfinite(v):
            return "must be a finite number (nan and inf are not allowed)"
        low, high = meta.get("min"), meta.get("max")
        both = low is not None and high is not None
        span = f" (allowed: {describe_range(meta, ascii_only=True)})" if both else ""
        if low is not None and (v <= low if meta.get("min_exclusive") else v < low):
            return f"must be {'>' if meta.get('min_exclusive') else '>='} {low}{span}"
        if high is not None and v > high:
            return f"must be <= {high}{span}"
    return None


def check_fields(cfg: Any) -> None:
    """Check every field value of the config dataclass ``cfg`` (raise :class:`ConfigError`
    naming the first key whose value is not allowed)."""
    for key, (field, annotation) in config_fields(type(cfg)).items():
        value = getattr(cfg, key)
        problem = check_value(field, annotation, value)
        if problem:
            raise ConfigError(f"{key} = {value!r} is not allowed: {problem}")
