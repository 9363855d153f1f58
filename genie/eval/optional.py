"""Imports of the optional packages of the ``eval`` extra, with a message that says what to do."""

from __future__ import annotations

import importlib
from types import ModuleType

from genie.utils.errors import UserInputError

EVAL_EXTRA_HINT = "pip install 'genie-long[eval]'"


class MissingDependencyError(UserInputError, ImportError):
    """An optional package that an evaluation metric needs is not installed (a user error:
    the message says what to install)."""


def import_optional(module: str, *, package: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install.

    Args:
        module: the module to import, e.g. ``"biotite.structure"``.
        package: the PyPI distribution that provides it, e.g. ``"biotite"``.
        purpose: what needs it, e.g. ``"secondary structure (P-SEA)"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{purpose} needs the package {package!r}, which is not installed: "
            f"run {EVAL_EXTRA_HINT} (or pip install {package})"
        ) from error
