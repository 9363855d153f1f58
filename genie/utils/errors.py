"""Exception types for mistakes in what the user gave (as opposed to bugs in this code).

Every entry point reports these as one line and exit status 2 (:mod:`genie.utils.cli`); a
module that finds such a mistake raises one of them, or :class:`~genie.config.ConfigError` for a
config key, with a message that names the file, key or path and what is allowed.
"""

from __future__ import annotations


class UserInputError(Exception):
    """A mistake in the command line, a path or an input file: reported without a traceback."""


class DataError(UserInputError, ValueError):
    """Input data that cannot be used (no readable structure, too few segments to split, ...).

    Also a ValueError, which the data functions raised for these cases before.
    """
