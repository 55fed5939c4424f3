"""``python -m velox.cli``: the ``velox`` command, as child processes start it."""

import sys

from velox.cli import main

sys.exit(main())
