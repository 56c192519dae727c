"""Render the application icon's PNG sizes from phpq/gui/icons/phpq-search.svg (run after editing the SVG).

Usage: QT_QPA_PLATFORM=offscreen python docs/make_icons.py
"""

from __future__ import annotations

import sys

from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

from phpq.gui.integration import ICON_DIR, ICON_SIZES, SVG_ICON, png_icon


def main() -> int:
    application = QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(SVG_ICON))
    for size in ICON_SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(0)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        image.save(str(png_icon(size)))
    print(f"wrote {len(ICON_SIZES)} PNGs to {ICON_DIR}")
    del application
    return 0


if __name__ == "__main__":
    sys.exit(main())
