"""``python -m training`` is ``phpq-train``."""

import sys

from training.cli import train_main

sys.exit(train_main())
