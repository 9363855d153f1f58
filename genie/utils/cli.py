"""The one error path of every command-line entry point.

A *user mistake* (:data:`USER_ERRORS`: a config error, a missing or unwritable path, unusable
input data, a non-finite training loss, ...) ends the command with exit status 2 and one line on
stderr, ``PROG: error: MESSAGE``, without a traceback: the message names the file, key or path
and what is allowed. Anything else is a bug: its traceback is printed, then one line asking to
report it, and the status is 1. Ctrl-C ends with one line and status 130. ``SystemExit`` (from
argparse, for example) passes through unchanged.

    def main(argv=None) -> int:
        return run_command(body, argv, prog="genie-eval")

or, where a ``try`` block is already in place::

    try:
        ...
    except BaseException as error:
        return exit_status(error)
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from genie.config import ConfigError
from genie.utils.errors import UserInputError

#: Exceptions that mean the user's input is wrong, not the code. OSError subclasses are listed one
#: by one: an OSError in general (a failing disk, a full pipe) may well be a bug or a crash.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    UserInputError,  # DataError and MissingDependencyError among them
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FileExistsError,
    FloatingPointError,  # a non-finite training loss: the config (learning rate, precision)
)

EXIT_USER_ERROR = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it

REPORT_HINT = (
    "this is a bug in Genie-Long, not a mistake in your input: please report it with the "
    "traceback above and the command line you ran"
)


def program_name() -> str:
    """The name of the running command, as argparse derives it (``train_long.py``)."""
    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "genie"


def describe(error: BaseException) -> str:
    """One line for a user error: the message, or ``PATH: reason`` for an operating-system error
    raised with a file name (``[Errno 20] Not a directory: 'x'`` -> ``x: Not a directory``)."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.filename}: {error.strerror}"
        if error.filename2 is not None:
            text += f" (and {error.filename2})"
    else:
        text = str(error) or type(error).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def exit_status(error: BaseException, *, prog: str | None = None) -> int:
    """Report an exception caught at the top of a command and return the exit status.

    ``SystemExit``, ``GeneratorExit`` and other BaseExceptions but KeyboardInterrupt are raised
    again (call this inside the ``except`` block).
    """
    prog = prog or program_name()
    if isinstance(error, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    if isinstance(error, USER_ERRORS):
        print(f"{prog}: error: {describe(error)}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    if not isinstance(error, Exception):
        raise error
    sys.stdout.flush()
    traceback.print_exception(error, file=sys.stderr)
    print(f"{prog}: internal error: {REPORT_HINT}", file=sys.stderr, flush=True)
    return EXIT_BUG


def run_command(
    body: Callable[..., int | None], *args: Any, prog: str | None = None, **kwargs: Any
) -> int:
    """Run ``body(*args, **kwargs)``; returns its status (None = 0) or, when it raises, the
    status of :func:`exit_status` after reporting the exception."""
    try:
        status = body(*args, **kwargs)
    except BaseException as error:
        return exit_status(error, prog=prog)
    return 0 if status is None else int(status)
