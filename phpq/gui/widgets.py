"""The window's own widgets: the query drop box and the result grid."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QFrame, QLabel, QListView, QVBoxLayout, QWidget

from phpq.gui.models import ResultsModel
from phpq.gui.style import set_style_flag
from phpq.imaging import IMAGE_SUFFIXES

PHOTO_FILTER = f"Photos ({' '.join(f'*{suffix}' for suffix in sorted(IMAGE_SUFFIXES))});;All files (*)"


def dropped_paths(mime: QMimeData) -> list[Path]:
    """The local files and folders in dropped or pasted data."""
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


class QueryArea(QFrame):
    """The drop target for query photos (and folders), showing the current query."""

    photo_dropped = Signal(Path)
    folders_dropped = Signal(list)
    photo_clicked = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("queryArea")
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setMinimumSize(QSize(220, 170))
        self.picture = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.picture.setObjectName("queryPicture")
        self.caption = QLabel("Drop a photo here", alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.caption.setObjectName("queryCaption")
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.caption)
        self.show_hint()

    def show_hint(self) -> None:
        set_style_flag(self.picture, "hint", True)
        self.picture.setText("⤓")
        self.caption.setText("Drop a photo here\nor paste (Ctrl+V) · open (Ctrl+O)")

    def show_query(self, pixmap: QPixmap | None, caption: str) -> None:
        set_style_flag(self.picture, "hint", False)
        if pixmap is None or pixmap.isNull():
            self.picture.setText("…")
        else:
            self.picture.setPixmap(
                pixmap.scaled(150, 130, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            )
        self.caption.setText(caption)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = dropped_paths(event.mimeData())
        folders = [path for path in paths if path.is_dir()]
        photos = [path for path in paths if path.is_file()]
        if folders:
            self.folders_dropped.emit(folders)
        if photos:
            self.photo_dropped.emit(photos[0])
        event.acceptProposedAction()

    def mousePressEvent(self, event) -> None:
        self.photo_clicked.emit()
        super().mousePressEvent(event)


class ResultsView(QListView):
    """The icon grid; cells widen to share the row evenly instead of leaving a gap on the right.

    Several results can be selected (Ctrl/Shift-click, Ctrl+A) and dragged out as files."""

    CELL = QSize(184, 212)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(160, 160))
        self.setGridSize(self.CELL)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setWordWrap(True)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)

    def fit_grid(self) -> None:
        """Share the viewport's width evenly among as many cells as fit."""
        width = self.viewport().width()
        columns = max(1, width // self.CELL.width())
        cell = QSize(max(width // columns, self.CELL.width() // 2), self.CELL.height())
        if cell != self.gridSize():
            self.setGridSize(cell)

    def resizeEvent(self, event) -> None:
        self.fit_grid()
        super().resizeEvent(event)

    def selected_paths(self) -> list[Path]:
        """The selected photos in grid order (the current one when nothing is selected)."""
        model = self.model()
        if not isinstance(model, ResultsModel):
            return []
        indexes = self.selectionModel().selectedIndexes() or [self.currentIndex()]
        return model.paths_of(indexes)
