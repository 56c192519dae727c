"""`phpq-app` / `python -m app`: start the desktop window."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

START = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phpq-app", description="PHPQ Search: find look-alikes in your photos.")
    parser.add_argument("--db", type=Path, help="index database (default: the user data directory)")
    parser.add_argument("--cpu", action="store_true", help="do not try CUDA")
    parser.add_argument("--exit-when-ready", action="store_true", help=argparse.SUPPRESS)  # start-up benchmark
    parser.add_argument("photo", type=Path, nargs="?", help="search with this photo once ready")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from PySide6.QtWidgets import QApplication

    from app.gui.window import APP_TITLE, MainWindow
    from app.library import Library

    application = QApplication.instance() or QApplication(sys.argv[:1])
    application.setApplicationName(APP_TITLE)
    application.setOrganizationName("phpq-search")
    window = MainWindow(lambda: Library(args.db, prefer_cuda=not args.cpu))
    if args.photo is not None:
        window.library_ready.connect(lambda: window.search_photo(args.photo.resolve()))
    if args.exit_when_ready:
        window.library_ready.connect(lambda: (print(f"ready {time.perf_counter() - START:.3f}"), window.close()))
    window.show()
    return application.exec()


if __name__ == "__main__":
    sys.exit(main())
