"""Make docs/screenshot.png: the real window (run it under Xvfb) after a photo is dropped on an index.

Usage: xvfb-run -s "-screen 0 1500x960x24" python docs/screenshot.py --db INDEX.sqlite3 --photo QUERY.jpg [--group]
The index must already hold photos (for example `phpq --db INDEX.sqlite3 add ../shared/data/cub200/train
--species-from-folders`). The window's settings go to a temporary file, so a user's are not touched.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from phpq.gui.window import MainWindow, window_settings
from phpq.library import Library


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("screenshot.png"))
    parser.add_argument("--top", type=int, default=24)
    parser.add_argument("--group", action="store_true", help="results grouped by species")
    parser.add_argument("--size", default="1440x900", help="the window's WIDTHxHEIGHT in pixels")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    application = QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as settings_folder:
        window = MainWindow(lambda: Library(args.db, prefer_cuda=False), window_settings(Path(settings_folder)))
        return capture_window(application, window, args, width, height)


def capture_window(
    application: QApplication, window: MainWindow, args: argparse.Namespace, width: int, height: int
) -> int:
    """Drop the photo once the library is ready and again once its results show (the first search after
    start-up also measures the collection's spread, a one-time cost), then save the window a few seconds
    after the second search's results show."""
    window.resize(width, height)
    window.move(20, 20)
    window.ui.group_by_species.setChecked(args.group)

    def drop_photo() -> None:
        window.ui.top_k.setValue(args.top)
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(args.photo.resolve()))])
        event = QDropEvent(
            QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        )
        window.ui.query_area.dropEvent(event)

    def capture() -> None:
        print("query timings (ms):", window.ui.time_label.toolTip())
        window.grab().save(str(args.output))
        print(f"wrote {args.output}")
        application.quit()

    window.library_ready.connect(lambda: QTimer.singleShot(3000, drop_photo))
    searches: list[object] = []

    def shown(result: object) -> None:
        searches.append(result)
        if len(searches) == 1:
            QTimer.singleShot(2000, drop_photo)
        else:
            QTimer.singleShot(4000, capture)

    window.results_shown.connect(shown)
    window.show()
    return application.exec()


if __name__ == "__main__":
    sys.exit(main())
