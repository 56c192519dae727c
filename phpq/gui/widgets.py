"""The window's own widgets: the query drop box and the result grid."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, QModelIndex, QPersistentModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QFont, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QLabel,
    QListView,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from phpq.gui.models import GROUP_ROLE, ResultsModel
from phpq.gui.style import set_style_flag
from phpq.imaging import IMAGE_SUFFIXES
from phpq.search import SearchHit

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
    """The icon grid. Its cells widen to share each row evenly, so no strip is left empty at the right:
    the cell size comes from the view's width through its delegate (``cell_size``), not a fixed grid.

    Several results can be selected (Ctrl/Shift-click, Ctrl+A) and dragged out as files."""

    CELL = QSize(184, 212)  # the smallest cell

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(160, 160))
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWordWrap(True)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setItemDelegate(CellDelegate(self))

    def columns(self) -> int:
        """How many cells of at least ``CELL`` fit side by side."""
        return max(1, self.viewport().width() // self.CELL.width())

    def cell_size(self) -> QSize:
        """The viewport's width shared evenly among the columns (less one pixel: a row that fills the width
        exactly is wrapped by QListView)."""
        return QSize(max((self.viewport().width() - 1) // self.columns(), self.CELL.width() // 2), self.CELL.height())

    def selected_hits(self) -> list[SearchHit]:
        """The selected results in grid order (the current one when nothing is selected)."""
        model = self.model()
        if not isinstance(model, ResultsModel):
            return []
        return model.hits_of(self.selectionModel().selectedIndexes() or [self.currentIndex()])

    def selected_paths(self) -> list[Path]:
        """The selected photos in grid order (the current one when nothing is selected)."""
        return [hit.path for hit in self.selected_hits()]


class CellDelegate(QStyledItemDelegate):
    """Sizes each result as a cell of its view's current width (``ResultsView.cell_size``); a species
    group's header takes a row of its own and is drawn as a heading."""

    HEADER_HEIGHT = 34

    def __init__(self, view: ResultsView):
        super().__init__(view)
        self.view = view

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        if index.data(GROUP_ROLE) is not None:
            return QSize(self.view.viewport().width() - 1, self.HEADER_HEIGHT)
        return self.view.cell_size()

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        if index.data(GROUP_ROLE) is None:
            super().paint(painter, option, index)
            return
        rect = option.rect.adjusted(8, 6, -8, -2)
        painter.save()
        font = QFont(option.font)
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.1)
        painter.setFont(font)
        painter.setPen(option.palette.color(QPalette.ColorRole.WindowText))
        painter.drawText(rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, index.data())
        painter.setPen(option.palette.color(QPalette.ColorRole.Mid))
        painter.drawLine(rect.bottomLeft(), rect.bottomRight())
        painter.restore()
