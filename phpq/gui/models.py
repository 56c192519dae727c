"""The result grid's Qt item model: search hits (flat, or under a header per species) with lazily loaded
thumbnails."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractListModel, QMimeData, QModelIndex, QPersistentModelIndex, Qt, QUrl
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap

from phpq.db import PhotoSize
from phpq.gui.captions import group_caption, hit_caption, hit_tooltip, result_folders
from phpq.gui.workers import ThumbnailLoader
from phpq.search import SearchHit
from phpq.species import SpeciesGroup

HIT_ROLE = Qt.ItemDataRole.UserRole + 1
FOLDER_ROLE = Qt.ItemDataRole.UserRole + 2
GROUP_ROLE = Qt.ItemDataRole.UserRole + 3  # the SpeciesGroup of a header row (None for a photo)


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
    """Search hits of the current query, flat or grouped by species (a header row before each group's
    photos). Thumbnails are requested only when the view paints a row, and a thumbnail that arrives for an
    older query (generation) is discarded."""

    def __init__(self, loader: ThumbnailLoader, icon_size: int = 160, memory_items: int = 600):
        super().__init__()
        self.loader = loader
        self.icon_size = icon_size
        self.generation = 0
        self.rows: list[SearchHit | SpeciesGroup] = []
        self.folders: dict[Path, str] = {}  # the folder shown under each name ("" when the name is enough)
        self.sizes: dict[int, PhotoSize] = {}  # by image id, filled in after the results arrive
        self.stale_discarded = 0
        self._row_of: dict[str, int] = {}
        self._requested: set[str] = set()
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._memory_items = memory_items
        self._loading = placeholder(icon_size)
        self._unreadable = placeholder(icon_size, "unreadable")
        loader.loaded.connect(self.on_thumbnail)

    def set_hits(self, hits: list[SearchHit], groups: list[SpeciesGroup] | None = None) -> int:
        """Show a new result list, flat or, with ``groups`` (of the same hits), a header before each group;
        returns its generation."""
        self.beginResetModel()
        self.generation += 1
        self.loader.generation = self.generation
        self.rows = list(hits) if groups is None else [row for group in groups for row in (group, *group.hits)]
        paths = [hit.path for hit in hits]
        self.folders = dict(zip(paths, result_folders(paths), strict=True))
        self.sizes = {}
        self._row_of = {str(hit.path): row for row, hit in enumerate(self.rows) if isinstance(hit, SearchHit)}
        self._requested = set()
        self.endResetModel()
        return self.generation

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        row = self.rows[index.row()]
        if isinstance(row, SpeciesGroup):
            return group_caption(row) if role == Qt.ItemDataRole.DisplayRole else row if role == GROUP_ROLE else None
        if role == Qt.ItemDataRole.DisplayRole:
            return hit_caption(row, self.folders.get(row.path, ""))
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(row.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            return hit_tooltip(row, self.sizes.get(row.image_id))
        if role == HIT_ROLE:
            return row
        return None

    def set_sizes(self, generation: int, sizes: dict[int, PhotoSize]) -> None:
        """Photo sizes for the tooltips; ignored when they belong to an older result list."""
        if generation == self.generation:
            self.sizes = sizes

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        """Photos can be selected and dragged; a group's header is only shown."""
        if index.isValid() and index.row() < len(self.rows) and isinstance(self.rows[index.row()], SpeciesGroup):
            return Qt.ItemFlag.ItemIsEnabled
        flags = super().flags(index)
        return flags | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else flags

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list", "text/plain"]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        """The dragged results as file URLs (a file manager copies them, an image app opens them)."""
        paths = self.paths_of(indexes)
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
        mime.setText("\n".join(str(path) for path in paths))
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    def hits_of(self, indexes: Sequence[QModelIndex]) -> list[SearchHit]:
        """The results at ``indexes`` (not the group headers), in grid order, each once."""
        rows = sorted({index.row() for index in indexes if index.isValid() and index.row() < len(self.rows)})
        return [hit for hit in (self.rows[row] for row in rows) if isinstance(hit, SearchHit)]

    def paths_of(self, indexes: Sequence[QModelIndex]) -> list[Path]:
        """The photos at ``indexes``, in grid order, each once."""
        return [hit.path for hit in self.hits_of(indexes)]

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
