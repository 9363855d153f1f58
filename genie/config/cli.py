"""The ``--config FILE [--set key=value ...]`` arguments of every entry point, and loading a
config with an entry point's own defaults.

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, what="training")
    args = parser.parse_args()
    cfg, applied = load_with_defaults(GenieConfig, args.config, args.overrides, {"batchSize": "1"})
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from genie.config.parser import load_config, parse_lines, parse_overrides

C = TypeVar("C")


def add_config_arguments(
    parser: argparse.ArgumentParser, *, what: str, required: bool = True
) -> None:
    """Add ``--config FILE`` and the repeatable ``--set KEY=VALUE`` (into ``overrides``)."""
    parser.add_argument("--config", required=required, help=f"{what} .config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )


def announce_repeated_overrides(overrides: Sequence[str]) -> list[str]:
    """Of a key given twice with ``--set``, the last value counts: say so, once per such key.

    Returns:
        the printed notices (one per repeated key).
    """
    last: dict[str, str] = {}
    repeated: list[str] = []
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in last and key not in repeated:
            repeated.append(key)
        last[key] = item
    notices = [f"[genie] --set {key} is given more than once: the last, {last[key]}, counts"
               for key in repeated]  # fmt: skip
    for notice in notices:
        print(notice)
    return notices


def load_with_defaults(
    cls: type[C],
    path: str | Path | None,
    overrides: Sequence[str] = (),
    defaults: Mapping[str, str] | None = None,
) -> tuple[C, list[str]]:
    """Load a config of class ``cls``; ``defaults`` (an entry point's own values, key -> value
    text) fill only the keys that neither the file nor ``overrides`` set.

    Returns:
        The config, and the ``key=value`` defaults that were applied (in ``defaults`` order).
    """
    announce_repeated_overrides(overrides)
    cfg = load_config(path, overrides, cls=cls)  # reports errors of the file and overrides
    if not defaults:
        return cfg, []
    given = set(parse_overrides(cls, overrides))
    if path is not None:
        # load_config above has checked the file (parser.read_config_lines): UTF-8, BOM allowed
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
        given |= set(parse_lines(cls, lines, source=str(path)))
    applied = [f"{key}={value}" for key, value in defaults.items() if key not in given]
    if not applied:
        return cfg, []
    return load_config(path, [*applied, *overrides], cls=cls), applied
