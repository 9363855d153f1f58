"""Read, validate and write Genie's `key value` config files.

Format: one ``key value`` pair per line; ``#`` at a line start or after white space starts a
comment; blank lines are ignored. Every line is checked when the file is loaded: an unknown key
(with the closest known key suggested), a malformed line, a value of the wrong type or out of
range, or a key given twice in the file is a :class:`ConfigError` naming the file, line, key and
value, and what is allowed. Of a key given twice with ``--set``, the last value counts (the
command line says so: :func:`genie.config.cli.load_with_defaults`).
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from genie.config.checks import upgrade_stored_config
from genie.config.fields import (
    ConfigError,
    check_value,
    config_fields,
    describe_range,
    describe_type,
    parse_value,
)
from genie.config.sampling import SampleConfig
from genie.config.schema import ALIASES, GenieConfig

log = logging.getLogger(__name__)
C = TypeVar("C")


def _resolve_key(cls: type, key: str, where: str) -> str:
    fields = config_fields(cls)
    if key in fields:
        return key
    if key in ALIASES and ALIASES[key] in fields:
        log.warning(
            "%s: '%s' is Genie's spelling of '%s'; read as '%s'",
            where,
            key,
            ALIASES[key],
            ALIASES[key],
        )
        return ALIASES[key]
    close = difflib.get_close_matches(key, list(fields) + list(ALIASES), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"{where}: unknown key '{key}'{hint} (configs/README.md lists every key)")


def _convert(cls: type, key: str, raw: str, where: str) -> Any:
    field, annotation = config_fields(cls)[key]
    try:
        value = parse_value(annotation, raw)
    except ValueError as err:
        span = describe_range(field.metadata, ascii_only=True)
        reason = f"{err}; allowed: {span}" if span else str(err)
        raise ConfigError(
            f"{where}: {key} = '{raw}' is not a valid {describe_type(annotation)} ({reason})"
        ) from None
    problem = check_value(field, annotation, value)
    if problem:
        raise ConfigError(f"{where}: {key} = '{raw}' is not allowed: {problem}")
    return value


# ``#`` starts a comment at the start of a line or after white space, so a value such as a path
# may contain ``#`` (``data/set#2``).
COMMENT = re.compile(r"(?:^|\s)#")


def parse_lines(cls: type[C], lines: Iterable[str], *, source: str = "<text>") -> dict[str, Any]:
    """Parse config lines into ``{key: typed value}`` (keys resolved through the aliases)."""
    values: dict[str, Any] = {}
    seen_at: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        text = COMMENT.split(line, 1)[0].strip()
        if not text:
            continue
        where = f"{source}, line {number}"
        parts = text.split(None, 1)
        if len(parts) != 2:
            raise ConfigError(
                f"{where}: expected 'key value', found '{text}' (a key without a value?)"
            )
        key = _resolve_key(cls, parts[0], where)
        if key in seen_at:
            raise ConfigError(f"{where}: '{key}' is already set on line {seen_at[key]}")
        seen_at[key] = number
        values[key] = _convert(cls, key, parts[1], where)
    return values


def parse_overrides(cls: type[C], overrides: Sequence[str]) -> dict[str, Any]:
    """Parse command-line ``key=value`` overrides."""
    return dict(_parsed_overrides(cls, overrides))


def _parsed_overrides(cls: type[C], overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """``(key, value)`` of every override, in order."""
    parsed = []
    for item in overrides:
        where = f"--set {item}"
        if "=" not in item:
            raise ConfigError(f"{where}: expected key=value")
        raw_key, raw = item.split("=", 1)
        key = _resolve_key(cls, raw_key.strip(), where)
        parsed.append((key, _convert(cls, key, raw, where)))
    return parsed


def read_config_lines(path: str | Path) -> list[str]:
    """The lines of a config file: UTF-8 text, with or without a byte-order mark.

    Raises:
        ConfigError: no such file, a directory, an unreadable file, a binary file (NUL bytes)
            or bytes that are not UTF-8 (names the file, the byte offset and the line).
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config path is a directory, not a config file: {path}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    if b"\0" in data:
        offset = data.index(b"\0")
        raise ConfigError(
            f"{path}: a binary file, not a text config (NUL byte at byte offset {offset})"
        )
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        line = data[:offset].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text: byte 0x{data[offset]:02x} at byte offset {offset} "
            f"(line {line}); save the config as UTF-8"
        ) from None
    return text.splitlines()


def _build(cls: type[C], values: Mapping[str, Any], source: str) -> C:
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), *, cls: type[C] = GenieConfig
) -> C:
    """Load a config file (or only defaults when ``path`` is None) and apply overrides.

    Args:
        path: a `.config` file of ``key value`` lines.
        overrides: ``key=value`` strings that replace values of the file.
        cls: the config class (:class:`GenieConfig` or :class:`SampleConfig`).
    """
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        values = parse_lines(cls, read_config_lines(path), source=source)
    values.update(parse_overrides(cls, overrides))
    return _build(cls, values, source)


def load_sample_config(
    path: str | Path | None = None, overrides: Sequence[str] = ()
) -> SampleConfig:
    """Load a sampling config (see :func:`load_config`)."""
    return load_config(path, overrides, cls=SampleConfig)


def config_from_dict(cls: type[C], values: Mapping[str, Any], *, source: str = "checkpoint") -> C:
    """Rebuild and re-validate a config from a plain dict (as stored inside a checkpoint; a
    training config written by an earlier version is read in today's meaning,
    :func:`~genie.config.checks.upgrade_stored_config`)."""
    if cls is GenieConfig:
        values = upgrade_stored_config(values)
    fields = config_fields(cls)
    for key in values:
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{key}' (written by another version?)")
    return _build(cls, values, source)  # the dataclass checks every value (check_fields)


def format_value(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def config_to_text(cfg: Any, *, header: str | None = None) -> str:
    """Render a config as a `.config` file that :func:`load_config` reads back unchanged."""
    lines = [f"# {line}" for line in (header or "").splitlines()]
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if value == [] or value == "":
            lines.append(f"# {field.name} (empty)")
            continue
        lines.append(f"{field.name} {format_value(value)}")
    return "\n".join(lines) + "\n"


def save_config(cfg: Any, path: str | Path, *, header: str | None = None) -> Path:
    """Write the resolved config next to a run's checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_to_text(cfg, header=header))
    return path


def reference_table(cls: type) -> str:
    """A markdown table of every key: type, default, allowed values and help."""
    rows = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for key, (field, annotation) in config_fields(cls).items():
        meta = field.metadata
        default = (
            field.default if field.default is not dataclasses.MISSING else field.default_factory()
        )
        allowed = ", ".join(map(str, meta["choices"])) if meta.get("choices") else ""
        allowed = describe_range(meta) or meta.get("rule") or allowed
        rows.append(
            f"| `{key}` | {describe_type(annotation)} | `{format_value(default)}` | {allowed} | "
            f"{meta['help']} |"
        )
    return "\n".join(rows)
