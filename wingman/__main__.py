"""``python -m wingman`` runs the ``wingman`` command."""

import sys

from wingman.cli import main

sys.exit(main())
