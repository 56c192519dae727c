"""``python -m phpq_train.export`` is ``phpq-export``."""

import sys

from phpq_train.export.cli import export_main

sys.exit(export_main())
