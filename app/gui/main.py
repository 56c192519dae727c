"""`phpq-app` / `python -m app`: start the desktop window."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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

    # Open the library and load the model while Qt and the window are being set up.
    opening = ThreadPoolExecutor(max_workers=1).submit(_open_library, args.db, not args.cpu)

    from PySide6.QtWidgets import QApplication

    from app.gui.window import APP_TITLE, MainWindow, window_settings

    application = QApplication.instance() or QApplication(sys.argv[:1])
    application.setApplicationName(APP_TITLE)
    application.setOrganizationName("phpq-search")
    settings = window_settings(args.db.parent if args.db is not None else None)
    window = MainWindow(opening.result, settings, lambda: _rebuild_library(args.db, not args.cpu))
    if args.photo is not None:
        window.library_ready.connect(lambda: window.search_photo(args.photo.resolve()))
    if args.exit_when_ready:
        window.library_ready.connect(lambda: (print(f"ready {time.perf_counter() - START:.3f}"), window.close()))
    window.show()
    return application.exec()


def _open_library(database: Path | None, prefer_cuda: bool):
    from app.library import Library

    library = Library(database, prefer_cuda=prefer_cuda)
    library.model_for()
    return library


def _rebuild_library(database: Path | None, prefer_cuda: bool):
    from app.library import Library

    return Library.rebuild(database, prefer_cuda=prefer_cuda)


if __name__ == "__main__":
    sys.exit(main())
