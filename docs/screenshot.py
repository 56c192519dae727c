"""Make docs/screenshot.png: the real window (run it under Xvfb) after a photo is dropped on an index.

Usage: xvfb-run -s "-screen 0 1400x900x24" python docs/screenshot.py --db INDEX.sqlite3 --photo QUERY.jpg
The index must already hold photos (for example `phpq --db INDEX.sqlite3 add ../shared/data/cub200/train`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from phpq.gui.window import MainWindow
from phpq.library import Library


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("screenshot.png"))
    parser.add_argument("--top", type=int, default=24)
    args = parser.parse_args()
    application = QApplication(sys.argv[:1])
    window = MainWindow(lambda: Library(args.db, prefer_cuda=False))
    window.resize(1360, 860)
    window.move(20, 20)

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
    window.results_shown.connect(lambda _: QTimer.singleShot(4000, capture))
    window.show()
    return application.exec()


if __name__ == "__main__":
    sys.exit(main())
