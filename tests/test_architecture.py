"""The package's layout promises (docs/ARCHITECTURE.md): no import cycle between subpackages,
the model's config read in the builder alone (genie/model/build.py, build_structure.py), and
the key table current."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from helpers import REPO

GENIE = REPO / "genie"


def genie_imports(path: Path, *, ignore: frozenset[str] = frozenset()) -> set[str]:
    """Every ``genie.*`` module a file imports (at any depth of its code), leaving out
    ``from M import X`` lines that import only names in ``ignore``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genie"):
            if not {alias.name for alias in node.names} <= ignore:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("genie")}
    return found


def unit(module: str) -> str:
    """The subpackage (or top-level module) of ``genie.x.y``: ``x``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_no_import_cycle_between_subpackages():
    edges: dict[str, set[str]] = defaultdict(set)
    for path in GENIE.rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        if path.name == "__init__.py" and path.parent == GENIE:
            continue
        for imported in genie_imports(path):
            if unit(imported) != unit(module):
                edges[unit(module)].add(unit(imported))
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges))}"
    assert "training" not in edges["sampling"] and "training" not in edges["checkpoint"]


def test_only_the_builder_of_genie_model_reads_the_config():
    readers = sorted(
        path.relative_to(REPO).as_posix()
        for path in (GENIE / "model").rglob("*.py")
        if any(
            m.startswith("genie.config")
            for m in genie_imports(path, ignore=frozenset({"ConfigError"}))  # an error type
        )
    )
    assert readers == ["genie/model/build.py", "genie/model/build_structure.py"]
    # nothing inside genie/model builds a model from the builder but the package itself, and
    # the builder's structure part serves the builder alone
    users = sorted(
        path.relative_to(REPO).as_posix()
        for path in (GENIE / "model").rglob("*.py")
        if "genie.model.build" in genie_imports(path)
    )
    assert users == ["genie/model/__init__.py"]
    structure_users = sorted(
        path.relative_to(REPO).as_posix()
        for path in GENIE.rglob("*.py")
        if "genie.model.build_structure" in genie_imports(path)
    )
    assert structure_users == ["genie/model/build.py"]


def test_config_reader_table_is_current_and_complete():
    script = REPO / "scripts" / "config_reference.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    table = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    assert "| not read |" not in table
    rows = [line for line in table.splitlines() if line.startswith("| GenieConfig |")]
    model_rows = [line for line in rows if "`genie/model/" in line]
    assert model_rows and all(
        line.count("`genie/")
        == line.count("`genie/model/build.py`") + line.count("`genie/model/build_structure.py`")
        for line in model_rows
    )
