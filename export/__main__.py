"""``python -m export`` is ``phpq-export``."""

import sys

from export.cli import export_main

sys.exit(export_main())
