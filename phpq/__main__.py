"""`python -m phpq` starts the desktop window (the command line is `phpq`, or `python -m phpq.cli`)."""

import sys

from phpq.gui.main import main

sys.exit(main())
