"""Regenerate the generated tables of the docs: the key reference of configs/README.md (from the
config schema) and the table of docs/ARCHITECTURE.md that names where each key is read (from the
code, :mod:`config_readers`).

python scripts/config_reference.py          # rewrite the tables in place
python scripts/config_reference.py --check  # exit 1 if any is out of date (used by tests)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config_readers import table as readers_table  # noqa: E402

from genie.config import GenieConfig, SampleConfig  # noqa: E402
from genie.config.parser import reference_table  # noqa: E402

# file -> {block name: function that renders the block}
BLOCKS: dict[Path, dict[str, Callable[[], str]]] = {
    ROOT / "configs" / "README.md": {
        "training-keys": lambda: reference_table(GenieConfig),
        "sampling-keys": lambda: reference_table(SampleConfig),
    },
    ROOT / "docs" / "ARCHITECTURE.md": {"config-readers": readers_table},
}


def render(text: str, blocks: dict[str, Callable[[], str]]) -> str:
    for name, make in blocks.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{make()}\n{end}{tail}"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for path, blocks in BLOCKS.items():
        current = path.read_text()
        wanted = render(current, blocks)
        if wanted != current:
            stale.append(path.relative_to(ROOT).as_posix())
            if not args.check:
                path.write_text(wanted)
    if args.check and stale:
        print(f"{', '.join(stale)} out of date: run python scripts/config_reference.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
