"""`phpq-app` / `python -m phpq`: start the desktop window."""

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
    entry = parser.add_mutually_exclusive_group()
    entry.add_argument(
        "--install-desktop-entry",
        action="store_true",
        help="add PHPQ Search to your desktop's application menu (writes only under $XDG_DATA_HOME)",
    )
    entry.add_argument("--uninstall-desktop-entry", action="store_true", help="remove it again")
    parser.add_argument("photo", type=Path, nargs="?", help="search with this photo once ready")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.install_desktop_entry or args.uninstall_desktop_entry:
        return _desktop_entry(install=args.install_desktop_entry)

    from phpq.gui.preflight import platform_problem

    problem = platform_problem()
    if problem is not None:  # Qt would abort with a message that does not say what to do
        print(problem, file=sys.stderr)
        return 1

    # Open the library and load the model while Qt and the window are being set up.
    opening = ThreadPoolExecutor(max_workers=1).submit(_open_library, args.db, not args.cpu)

    from PySide6.QtWidgets import QApplication

    from phpq.gui.integration import APP_ID, app_icon
    from phpq.gui.window import APP_TITLE, MainWindow, window_settings

    application = QApplication.instance() or QApplication(sys.argv[:1])
    application.setApplicationName(APP_TITLE)
    application.setOrganizationName("phpq-search")
    application.setDesktopFileName(APP_ID)
    application.setWindowIcon(app_icon())
    settings = window_settings(args.db.parent if args.db is not None else None)
    window = MainWindow(opening.result, settings, lambda: _rebuild_library(args.db, not args.cpu))
    if args.photo is not None:
        window.library_ready.connect(lambda: window.search.search_photo(args.photo.resolve()))
    if args.exit_when_ready:
        window.library_ready.connect(lambda: (print(f"ready {time.perf_counter() - START:.3f}"), window.close()))
    window.show()
    return application.exec()


def _desktop_entry(install: bool) -> int:
    from phpq.gui.integration import install_desktop_entry, uninstall_desktop_entry, xdg_data_home

    try:
        files = install_desktop_entry() if install else uninstall_desktop_entry()
    except OSError as error:
        print(f"phpq-app: cannot write under {xdg_data_home()}: {error}", file=sys.stderr)
        return 1
    if install:
        print(f"Added PHPQ Search to the application menu: {files[0]} (and its icon, {len(files) - 1} files)")
    else:
        print(f"Removed {len(files)} files" if files else "No desktop entry was installed")
    return 0


def _open_library(database: Path | None, prefer_cuda: bool):
    from phpq.library import Library

    library = Library(database, prefer_cuda=prefer_cuda)
    library.model_for()
    return library


def _rebuild_library(database: Path | None, prefer_cuda: bool):
    from phpq.library import Library

    return Library.rebuild(database, prefer_cuda=prefer_cuda)


if __name__ == "__main__":
    sys.exit(main())
