"""``python -m phpq_train`` is ``phpq-train``."""

import sys

from phpq_train.cli import train_main

sys.exit(train_main())
