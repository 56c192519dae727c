"""`python -m app` starts the desktop window (the command line is `phpq`, or `python -m app.cli`)."""

import sys

from app.gui.main import main

sys.exit(main())
