"""``python -m genie.eval``: the ``genie-eval`` command."""

import sys

from genie.eval.cli import main

sys.exit(main())
