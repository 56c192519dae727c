"""Qt item models: the result grid (with lazily loaded thumbnails) and the folder list."""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractListModel, QMimeData, QModelIndex, QPersistentModelIndex, Qt, QUrl
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap

from phpq.db import FolderRecord, PhotoSize
from phpq.gui.workers import ThumbnailLoader
from phpq.search import SearchHit

HIT_ROLE = Qt.ItemDataRole.UserRole + 1
FOLDER_ROLE = Qt.ItemDataRole.UserRole + 2

# camera and phone file names that say nothing about the photo: IMG_0412, DSC01234, PXL_20230512_..., 1, 0003
_CAMERA_PREFIX = (
    r"(?:img|image|dsc|dscn|dscf|dcim|pxl|mvimg|pict|cimg|gopr|sam|imag|photo|picture|pic|p|_mg|wp|scan|screenshot)"
)
_GENERIC_STEM = re.compile(rf"{_CAMERA_PREFIX}?[\W_]*[\d\W_]*(?:copy|kopie|edited)?[\d\W_]*", re.IGNORECASE)


def is_generic_name(name: str) -> bool:
    """True for names a camera or phone gives (IMG_0412.jpg, DSC01234.JPG, 1.jpg) or very short ones."""
    stem = Path(name).stem
    return len(stem) <= 2 or _GENERIC_STEM.fullmatch(stem) is not None


def result_folders(paths: Sequence[Path]) -> list[str]:
    """For each path, the folder to show beside its name ("" when the name alone tells it apart).

    The folder is shown when the name looks generic or repeats among ``paths``; it is the shortest tail of
    the parent path that tells repeated names apart (``2023/05`` when ``2022/05/1.jpg`` is also listed).
    """
    repeats = Counter(path.name for path in paths)
    folders = []
    for path in paths:
        if repeats[path.name] == 1 and not is_generic_name(path.name):
            folders.append("")
            continue
        same_name = [other.parent.parts for other in paths if other.name == path.name and other != path]
        parts = path.parent.parts
        depth = 1
        while depth < len(parts) and any(other[-depth:] == parts[-depth:] for other in same_name):
            depth += 1
        tail = parts[-depth:] if parts else ()
        folders.append(str(Path(*tail)) if tail else str(path.parent))
    return folders


def file_size_text(size: int) -> str:
    """Bytes as a file manager shows them (decimal units), with the exact count: "2.4 MB (2,412,001 bytes)"."""
    value, unit = float(size), "bytes"
    for larger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({size:,} bytes)"


def similarity_percent(hit: SearchHit) -> int:
    """The hit's own similarity to the query in percent, 0 to 100: the same scale for every query."""
    similarity = hit.similarity if hit.own_similarity is None else hit.own_similarity
    return round(100 * min(max(similarity, 0.0), 1.0))


def similarity_text(hit: SearchHit) -> str:
    """The number beside a result: "Same photo" for a byte-identical copy of the query, else "71 %"."""
    return "Same photo" if hit.same_photo else f"{similarity_percent(hit)} %"


def hit_caption(hit: SearchHit, folder: str) -> str:
    """The name, then the species label (if any), the similarity and the folder (where it is needed)."""
    details = [hit.species] if hit.species else []
    details.append(similarity_text(hit))
    if folder:
        details.append(f"in {folder}")
    return f"{hit.path.name}\n{' · '.join(details)}"


def hit_tooltip(hit: SearchHit, size: PhotoSize | None) -> str:
    """Full path, species, similarity (and what it means), ranking score, and the photo's size once known."""
    lines = [str(hit.path)]
    if hit.species:
        lines.append(f"species: {hit.species}")
    if hit.same_photo:
        lines.append("Same photo: a byte-identical copy of the photo you searched with")
    else:
        lines.append(
            f"{similarity_percent(hit)} % alike: this photo's own similarity to yours, on one scale for every search"
        )
    lines.append(f"ranking score {hit.similarity:.3f} (with its neighbours among the results)")
    if size is not None:
        pixels = f"{size.width:,} × {size.height:,} pixels · " if size.width and size.height else ""
        lines.append(pixels + file_size_text(size.bytes))
    return "\n".join(lines)


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
        self.folders: list[str] = []  # the folder shown under each name ("" when the name is enough)
        self.sizes: dict[int, PhotoSize] = {}  # by image id, filled in after the results arrive
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
        self.folders = result_folders([hit.path for hit in self.hits])
        self.sizes = {}
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
            return hit_caption(hit, self.folders[index.row()])
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(hit.path)
        if role == Qt.ItemDataRole.ToolTipRole:
            return hit_tooltip(hit, self.sizes.get(hit.image_id))
        if role == HIT_ROLE:
            return hit
        return None

    def set_sizes(self, generation: int, sizes: dict[int, PhotoSize]) -> None:
        """Photo sizes for the tooltips; ignored when they belong to an older result list."""
        if generation == self.generation:
            self.sizes = sizes

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
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

    def paths_of(self, indexes: Sequence[QModelIndex]) -> list[Path]:
        """The photos at ``indexes``, in grid order, each once."""
        rows = sorted({index.row() for index in indexes if index.isValid() and index.row() < len(self.hits)})
        return [self.hits[row].path for row in rows]

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
