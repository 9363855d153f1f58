"""The table of docs/ARCHITECTURE.md that names, for every config key, the functions that read
it, found in the code itself (``scripts/config_reference.py`` writes and checks it).

A read is an attribute ``X.key`` where X is a config: a name annotated ``GenieConfig`` or
``SampleConfig`` in its function's signature (or an enclosing function's), ``self.config`` of
the LightningModule or ``.config`` of a trained model (also through ``cfg = self.config``).
Functions that read a config without such an annotation are reported as an error, so the table
cannot silently miss them.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genie.config import GenieConfig, SampleConfig  # noqa: E402
from genie.config.sampling import SAMPLING_MODEL_KEYS  # noqa: E402

CLASSES = {"GenieConfig": GenieConfig, "SampleConfig": SampleConfig}
CONFIG_NAMES = ("cfg", "config")


def _annotated(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, str]:
    """Parameter name -> config class name, for parameters annotated with a config class."""
    found = {}
    args = function.args
    for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
        if arg.annotation is not None:
            text = ast.unparse(arg.annotation)
            for name in CLASSES:
                if name in text:
                    found[arg.arg] = name
    return found


def _owner(node: ast.Attribute, scope: dict[str, str]) -> str | None:
    """The config class whose key ``node`` reads, or None when ``node`` reads no config."""
    value = node.value
    if isinstance(value, ast.Name) and value.id in scope:
        return scope[value.id]
    if isinstance(value, ast.Attribute) and value.attr == "config":
        return "GenieConfig"  # self.config (LightningModule), trained.config (checkpoint)
    if isinstance(value, ast.Name) and value.id in CONFIG_NAMES:
        return "unknown"
    return None


def readers() -> dict[tuple[str, str], set[str]]:
    """(class, key) -> {"module.py: function", ...} over genie/ (the config package aside)."""
    keys = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in CLASSES.items()}
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    problems = []
    for path in sorted((ROOT / "genie").rglob("*.py")):
        if path.parent.name == "config":
            continue
        module = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        for function in functions:
            scope = _annotated(function)
            for node in ast.walk(function):  # cfg = self.config
                if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute)
                        and node.value.attr == "config"):  # fmt: skip
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            scope[target.id] = "GenieConfig"
            inner = {id(n) for f in ast.walk(function) if f is not function
                     and isinstance(f, ast.FunctionDef) for n in ast.walk(f)}  # fmt: skip
            for node in ast.walk(function):
                if not isinstance(node, ast.Attribute) or id(node) in inner:
                    continue
                owner = _owner(node, {**_enclosing_scope(tree, function), **scope})
                if owner is None:
                    continue
                if owner == "unknown":
                    problems.append(f"{module}: {function.name} reads {ast.unparse(node)} "
                                    "from an unannotated config")  # fmt: skip
                elif node.attr in keys[owner]:
                    found[(owner, node.attr)].add(f"`{module}`: `{function.name}`")
    if problems:
        raise SystemExit("\n".join(problems))
    return found


def _enclosing_scope(tree: ast.Module, function: ast.FunctionDef) -> dict[str, str]:
    """Config-annotated parameters of the functions that enclose ``function`` (closures)."""
    scope: dict[str, str] = {}
    for outer in ast.walk(tree):
        if isinstance(outer, ast.FunctionDef) and outer is not function:
            if any(node is function for node in ast.walk(outer)):
                scope.update(_annotated(outer))
    return scope


def table() -> str:
    found = readers()
    rows = ["| config | key | read in (module: function) |", "|---|---|---|"]
    for name, cls in CLASSES.items():
        for field in dataclasses.fields(cls):
            where = sorted(found.get((name, field.name), set()))
            if cls is SampleConfig and field.name in SAMPLING_MODEL_KEYS:
                where = ["`genie/sampling/run.py`: `load_model` (`SampleConfig.model_overrides`: "
                         "replaces the checkpoint's GenieConfig key of the same name)"]  # fmt: skip
            rows.append(f"| {name} | `{field.name}` | {'; '.join(where) or 'not read'} |")
    return "\n".join(rows)
