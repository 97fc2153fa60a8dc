"""``python -m bootemu``: the same as the ``bootemu`` command."""

import sys

from bootemu.cli import main

sys.exit(main())
