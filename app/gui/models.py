"""Qt item models: the result grid (with lazily loaded thumbnails) and the folder list."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap

from app.db import FolderRecord
from app.gui.workers import ThumbnailLoader
from app.search import SearchHit

HIT_ROLE = Qt.ItemDataRole.UserRole + 1
FOLDER_ROLE = Qt.ItemDataRole.UserRole + 2


def placeholder(size: int, text: str = "") -> QPixmap:
    """A neutral tile shown while a thumbnail loads (or instead of an unreadable one)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(QColor(128, 128, 128, 60))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawRoundedRect(4, 4, size - 8, size - 8, 8, 8)
    if text:
        painter.setPen(QColor(120, 120, 120))
        painter.drawText(pixmap.rect(), Qt.AlignmentFlag.AlignCenter, text)
    painter.end()
    return pixmap


class ResultsModel(QAbstractListModel):
    """Search hits of the current query. Thumbnails are requested only when the view paints a row,
    and a thumbnail that arrives for an older query (generation) is discarded."""

    def __init__(self, loader: ThumbnailLoader, icon_size: int = 160, memory_items: int = 600):
        super().__init__()
        self.loader = loader
        self.icon_size = icon_size
        self.generation = 0
        self.hits: list[SearchHit] = []
        self.stale_discarded = 0
        self._row_of: dict[str, int] = {}
        self._requested: set[str] = set()
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._memory_items = memory_items
        self._loading = placeholder(icon_size)
        self._unreadable = placeholder(icon_size, "unreadable")
        loader.loaded.connect(self.on_thumbnail)

    def set_hits(self, hits: list[SearchHit]) -> int:
        """Show a new result list; returns its generation."""
        self.beginResetModel()
        self.generation += 1
        self.loader.generation = self.generation
        self.hits = list(hits)
        self._row_of = {str(hit.path): row for row, hit in enumerate(self.hits)}
        self._requested = set()
        self.endResetModel()
        return self.generation

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.hits)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.hits):
            return None
        hit = self.hits[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{hit.path.name}\n{hit.similarity:.2f}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(hit.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{hit.path}\nsimilarity {hit.similarity:.3f}"
        if role == HIT_ROLE:
            return hit
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(self.icon_size + 24, self.icon_size + 48)
        return None

    def _thumbnail(self, path: Path) -> QPixmap:
        key = str(path)
        pixmap = self._pixmaps.get(key)
        if pixmap is not None:
            self._pixmaps.move_to_end(key)
            return pixmap
        if key not in self._requested:
            self._requested.add(key)
            self.loader.request(self.generation, path)
        return self._loading

    def _tile(self, image: QImage) -> QPixmap:
        """The thumbnail centred on a square tile, so every caption in the grid lines up."""
        scaled = QPixmap.fromImage(image).scaled(
            self.icon_size,
            self.icon_size,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        tile = QPixmap(self.icon_size, self.icon_size)
        tile.fill(QColor(0, 0, 0, 0))
        painter = QPainter(tile)
        painter.drawPixmap((self.icon_size - scaled.width()) // 2, (self.icon_size - scaled.height()) // 2, scaled)
        painter.end()
        return tile

    def on_thumbnail(self, generation: int, path: str, image: QImage) -> None:
        """A thumbnail arrived (GUI thread): keep it if it belongs to the current results."""
        if generation != self.generation:
            self.stale_discarded += 1
            return
        pixmap = self._unreadable if image.isNull() else self._tile(image)
        self._pixmaps[path] = pixmap
        while len(self._pixmaps) > self._memory_items:
            self._pixmaps.popitem(last=False)
        row = self._row_of.get(path)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


def folder_label(folder: FolderRecord) -> str:
    problems = f" · {folder.n_errors:,} unreadable" if folder.n_errors else ""
    missing = "" if folder.path.is_dir() else " · not found"
    return f"{folder.path.name or folder.path}\n{folder.n_images:,} photos{problems}{missing}"
