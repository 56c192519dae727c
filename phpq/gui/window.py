"""The main window: folders on the left, the query on top, look-alikes in a grid, status at the bottom.

Every library call runs off the GUI thread (a task pool, or the indexing thread); results come back
as queued signals. A search result or a thumbnail that belongs to an older query is dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QByteArray, QMimeData, QModelIndex, QPoint, QSettings, QSize, Qt, QUrl, Signal
from PySide6.QtGui import (
    QAction,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QImage,
    QKeySequence,
    QPixmap,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from phpq.db import REBUILD_HINT, FolderRecord, PhotoSize
from phpq.desktop import reveal_in_file_manager
from phpq.gui.dialogs import ModelsDialog, ProblemsDialog
from phpq.gui.integration import app_icon
from phpq.gui.models import FOLDER_ROLE, HIT_ROLE, ResultsModel, folder_label
from phpq.gui.workers import IndexThread, TaskRunner, ThumbnailLoader, to_qimage
from phpq.imaging import is_image_path
from phpq.index import IndexProgress
from phpq.library import IndexReport, Library, LibraryStatus
from phpq.locations import data_dir
from phpq.search import SearchHit, SearchResult
from phpq.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

APP_TITLE = "PHPQ Search"
SETTINGS_FILE = "window.ini"


def window_settings(folder: Path | None = None) -> QSettings:
    """The window's settings file in ``folder`` (default: the data directory, where the index lives)."""
    return QSettings(str((folder or data_dir()) / SETTINGS_FILE), QSettings.Format.IniFormat)


EMPTY_STATE = (
    "<h2>Find look-alikes in your own photos</h2>"
    "<p><b>1.</b> Add a folder of photos: <i>Add folder…</i> on the left, or drop a folder on this window.</p>"
    "<p><b>2.</b> Drop a photo in the box above, paste one (Ctrl+V) or open one (Ctrl+O).</p>"
    "<p>Photos never leave this computer, and are never changed: only small codes are stored.</p>"
)


def dropped_paths(mime: QMimeData) -> list[Path]:
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


def _prepared(open_library: Callable[[], Library]) -> Callable[[], Library]:
    """``open_library`` followed by getting the library ready to search (for a worker thread)."""

    def open_and_prepare() -> Library:
        library = open_library()
        library.prepare_search()
        return library

    return open_and_prepare


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
        self.caption = QLabel("Drop a photo here", alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)
        self.caption.setObjectName("queryCaption")
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.caption)
        self.show_hint()

    def show_hint(self) -> None:
        self.picture.setText("⤓")
        self.picture.setStyleSheet("font-size: 48px; color: palette(mid);")
        self.caption.setText("Drop a photo here\nor paste (Ctrl+V) · open (Ctrl+O)")

    def show_query(self, pixmap: QPixmap | None, caption: str) -> None:
        self.picture.setStyleSheet("")
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


class MainWindow(QMainWindow):
    """PHPQ Search's window. ``open_library`` runs on a worker thread at start-up."""

    library_ready = Signal()
    results_shown = Signal(object)  # SearchResult
    indexing_done = Signal(object)  # IndexReport
    error_shown = Signal(str)

    def __init__(
        self,
        open_library: Callable[[], Library],
        settings: QSettings | None = None,
        rebuild_library: Callable[[], Library] | None = None,
    ):
        super().__init__()
        self.rebuild_library = rebuild_library
        self.settings = settings or window_settings()
        self.library: Library | None = None
        self.resume_checked = False  # photos left without a code are indexed once, at start-up
        self.tasks = TaskRunner(self, threads=2)
        self.index_thread: IndexThread | None = None
        self.index_queue: list[tuple[list[Path] | None, str | None, Callable[[IndexReport], None] | None]] = []
        self.search_generation = 0
        self.last_query: Path | Image.Image | None = None
        self.weight_key: str | None = None  # settings key of the active model's code weight (fused models)
        self.results_model: ResultsModel | None = None
        self.query_thumbnails: ThumbnailCache | None = None
        self._last_status_refresh = 0.0
        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self._build()
        self._build_actions()
        self._restore_settings()
        self.statusBar().showMessage("Loading the model…")
        self.tasks.start(_prepared(open_library), done=self._on_library, failed=self._on_library_failed)

    # Layout -----------------------------------------------------------------------------------------

    def _build(self) -> None:
        sidebar = QWidget()
        side = QVBoxLayout(sidebar)
        side.setContentsMargins(8, 8, 4, 8)
        title = QLabel("<b>Folders</b>")
        self.folder_list = QListWidget()
        self.folder_list.setObjectName("folderList")
        self.folder_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.folder_list.customContextMenuRequested.connect(self._folder_menu)
        self.folder_list.setWordWrap(True)
        self.add_button = QPushButton("Add folder…")
        self.rescan_button = QToolButton(text="Re-scan")
        self.remove_button = QToolButton(text="Remove")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button, 1)
        buttons.addWidget(self.rescan_button)
        buttons.addWidget(self.remove_button)
        side.addWidget(title)
        side.addWidget(self.folder_list, 1)
        side.addLayout(buttons)

        self.banner = QLabel(wordWrap=True)
        self.banner.setObjectName("banner")
        self.banner.setStyleSheet(
            "QLabel#banner { background: #fdecea; color: #611a15; border: 1px solid #f5c6cb;"
            " border-radius: 4px; padding: 6px; }"
        )
        self.banner.hide()
        self.rebuild_button = QPushButton("Rebuild index")
        self.rebuild_button.setToolTip(
            "Set the damaged index aside and index your folders again (photos are not touched)"
        )
        self.rebuild_button.hide()
        self.rebuild_button.clicked.connect(self.rebuild)
        self.query_area = QueryArea()
        self.open_button = QPushButton("Open image…")
        self.top_k = QSpinBox(minimum=1, maximum=1000, value=40, suffix=" results")
        self.top_k.setToolTip("How many look-alikes to show")
        self.weight = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, decimals=2, prefix="code weight ")
        self.weight.setObjectName("codeWeight")
        self.weight.setEnabled(False)  # until the model is known: codes-only models have no weight to set
        self.query_info = QLabel(wordWrap=True)
        self.query_info.setObjectName("queryInfo")
        controls = QVBoxLayout()
        controls.addWidget(self.open_button)
        controls.addWidget(self.top_k)
        controls.addWidget(self.weight)
        controls.addWidget(self.query_info)
        controls.addStretch(1)
        query_row = QHBoxLayout()
        query_row.addWidget(self.query_area, 1)
        query_row.addLayout(controls)

        self.empty_state = QLabel(EMPTY_STATE, wordWrap=True, alignment=Qt.AlignmentFlag.AlignCenter)
        self.empty_state.setObjectName("emptyState")
        self.empty_state.setTextFormat(Qt.TextFormat.RichText)
        self.results_view = ResultsView()
        self.results_view.setObjectName("results")
        self.results_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.results_view.customContextMenuRequested.connect(self._result_menu)
        self.results_view.activated.connect(self._open_activated)
        copy_paths = QAction("Copy path", self.results_view)
        copy_paths.setShortcut(QKeySequence.StandardKey.Copy)
        copy_paths.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        copy_paths.triggered.connect(self.copy_selected_paths)
        self.results_view.addAction(copy_paths)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.empty_state)
        self.pages.addWidget(self.results_view)

        main = QWidget()
        column = QVBoxLayout(main)
        column.setContentsMargins(4, 8, 8, 4)
        banner_row = QHBoxLayout()
        banner_row.addWidget(self.banner, 1)
        banner_row.addWidget(self.rebuild_button)
        column.addLayout(banner_row)
        column.addLayout(query_row)
        column.addWidget(self.pages, 1)
        self.splitter = QSplitter()
        self.splitter.addWidget(sidebar)
        self.splitter.addWidget(main)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([260, 900])
        self.setCentralWidget(self.splitter)

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.progress_label = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.model_label = QLabel("model: loading…")
        self.model_label.setObjectName("modelLabel")
        self.count_label = QLabel()
        self.time_label = QLabel()
        status = self.statusBar()
        for widget in self._progress_widgets():
            status.addWidget(widget)
            widget.hide()
        for widget in (self.count_label, self.time_label, self.model_label):
            widget.setContentsMargins(8, 0, 8, 0)
            status.addPermanentWidget(widget)

        self.add_button.clicked.connect(self.choose_folder)
        self.rescan_button.clicked.connect(lambda: self.start_indexing(None))
        self.remove_button.clicked.connect(self.remove_selected_folder)
        self.open_button.clicked.connect(self.choose_photo)
        self.cancel_button.clicked.connect(self.cancel_indexing)
        self.query_area.photo_dropped.connect(self.search_photo)
        self.query_area.folders_dropped.connect(self.add_folders)
        self.query_area.photo_clicked.connect(self.choose_photo)
        self.top_k.valueChanged.connect(self._repeat_search)
        self.weight.valueChanged.connect(self._weight_changed)
        self.resize(1200, 800)

    def _build_actions(self) -> None:
        def action(text: str, shortcut: QKeySequence | str, slot: Callable[[], None]) -> QAction:
            item = QAction(text, self)
            item.setShortcut(QKeySequence(shortcut))
            item.triggered.connect(slot)
            self.addAction(item)
            return item

        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(action("&Open image…", QKeySequence.StandardKey.Open, self.choose_photo))
        file_menu.addAction(action("&Paste image", QKeySequence.StandardKey.Paste, self.paste))
        file_menu.addAction(action("&Add folder…", "Ctrl+Shift+O", self.choose_folder))
        file_menu.addSeparator()
        file_menu.addAction(action("&Quit", QKeySequence.StandardKey.Quit, self.close))
        library_menu = self.menuBar().addMenu("&Library")
        library_menu.addAction(action("&Re-scan folders", "F5", lambda: self.start_indexing(None)))
        library_menu.addAction(action("&Remove folder", QKeySequence.StandardKey.Delete, self.remove_selected_folder))
        library_menu.addAction(action("&Models…", "Ctrl+M", self.show_models))

    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        splitter = self.settings.value("splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        self.top_k.setValue(int(self.settings.value("top_k", self.top_k.value())))

    def closeEvent(self, event) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.splitter.saveState())
        self.settings.setValue("top_k", self.top_k.value())
        if self.index_thread is not None:
            self.index_queue.clear()
            self.index_thread.cancel()
            self.index_thread.wait()
        self.tasks.wait(5000)
        if self.results_model is not None:
            self.results_model.loader.runner.wait(5000)
        if self.library is not None:
            self.library.close()
        super().closeEvent(event)

    # Start-up ---------------------------------------------------------------------------------------

    def _on_library(self, library: Library) -> None:
        self.library = library
        cache = ThumbnailCache(library.db.path.parent / "thumbnails")
        self.results_model = ResultsModel(ThumbnailLoader(cache, self), icon_size=160)
        self.results_view.setModel(self.results_model)
        self.query_thumbnails = cache
        self.refresh_library()
        self.statusBar().showMessage("Ready", 3000)
        for button in (self.add_button, self.rescan_button, self.remove_button):
            button.setEnabled(not library.read_only)
        if library.read_only:
            self.show_error(
                f"This index is open read-only because {library.read_only_reason}: this window can search but"
                " not add, remove or re-scan folders."
            )
        self.library_ready.emit()

    def _on_library_failed(self, message: str) -> None:
        self.model_label.setText("model: not loaded")
        self.show_error(f"The photo library could not be opened: {message}")
        self.rebuild_button.setVisible(self.rebuild_library is not None and REBUILD_HINT in message)

    def rebuild(self) -> None:
        """Set a damaged index aside, start a new one with the same folders and index them."""
        if self.rebuild_library is None:
            return
        self.rebuild_button.hide()
        self.clear_error()
        self.statusBar().showMessage("Rebuilding the index…")

        def rebuilt(library: Library) -> None:
            self._on_library(library)
            self.start_indexing(None)

        self.tasks.start(_prepared(self.rebuild_library), done=rebuilt, failed=self._on_library_failed)

    # Messages ---------------------------------------------------------------------------------------

    def show_error(self, message: str) -> None:
        """A readable message in the window (never a modal box that blocks, never a traceback)."""
        self.banner.setText(message)
        self.banner.show()
        self.statusBar().showMessage(message, 8000)
        self.error_shown.emit(message)

    def clear_error(self) -> None:
        self.banner.hide()

    # Folders ----------------------------------------------------------------------------------------

    def refresh_library(self) -> None:
        """Reload folder list and status in the background."""
        if self.library is not None:
            self.tasks.start(self.library.folders, done=self._show_folders, failed=self.show_error)
            self.tasks.start(self.library.status, done=self._show_status, failed=self.show_error)

    def _show_folders(self, folders: list[FolderRecord]) -> None:
        selected = self.selected_folder()
        self.folder_list.clear()
        for folder in folders:
            item = QListWidgetItem(folder_label(folder))
            item.setToolTip(str(folder.path))
            item.setData(FOLDER_ROLE, folder)
            self.folder_list.addItem(item)
            if selected is not None and folder.path == selected.path:
                self.folder_list.setCurrentItem(item)

    def _show_status(self, status: LibraryStatus) -> None:
        provider = "CUDA" if status.provider.startswith("CUDA") else "CPU"
        self.model_label.setText(f"{status.model.name} · {status.bits} bits · {status.kind} · {provider}")
        self.model_label.setToolTip(f"model id {status.model.id}\n{status.model.path}")
        self._show_weight(status)
        pending = f" · {status.pending:,} to index" if status.pending else ""
        self.count_label.setText(f"{status.indexed:,} photos indexed{pending}")
        if not self.resume_checked:
            self.resume_checked = True
            if status.pending and self.library is not None and not self.library.read_only:
                self.start_indexing(None)  # an interrupted run, or an updated default model
        if status.folders and self.pages.currentWidget() is self.empty_state:
            self.empty_state.setText(
                "<h2>Drop a photo to find its look-alikes</h2>"
                f"<p>{status.indexed:,} photos in {len(status.folders)} folder(s) are ready to search.</p>"
            )

    def _show_weight(self, status: LibraryStatus) -> None:
        """The weight control for the active model: its saved value, else the model's own weight."""
        fused = status.descriptor_dim > 0
        self.weight_key = f"code_weight/{status.model.id}" if fused else None
        self.weight.blockSignals(True)
        self.weight.setValue(float(self.settings.value(self.weight_key, status.fusion_weight)) if fused else 1.0)
        self.weight.blockSignals(False)
        self.weight.setEnabled(fused)
        self.weight.setToolTip(
            f"Ranking = w × code similarity + (1 − w) × descriptor similarity; this model's own w is"
            f" {status.fusion_weight:g}"
            if fused
            else "This model gives codes only (format 1): it ranks by code similarity alone"
        )

    def _weight_changed(self, value: float) -> None:
        if self.weight_key is not None:
            self.settings.setValue(self.weight_key, value)
        self._repeat_search()

    def selected_folder(self) -> FolderRecord | None:
        item = self.folder_list.currentItem()
        return item.data(FOLDER_ROLE) if item is not None else None

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of photos")
        if folder:
            self.add_folders([Path(folder)])

    def add_folders(self, folders: list[Path]) -> None:
        if self.library is None:
            self.show_error("Still loading; try again in a moment.")
            return
        for folder in folders:
            self.tasks.start(
                self.library.add_folder,
                folder,
                done=lambda record: (self.refresh_library(), self.start_indexing([record.path])),
                failed=self.show_error,
            )

    def remove_selected_folder(self) -> None:
        folder = self.selected_folder()
        if folder is None or self.library is None:
            return
        answer = QMessageBox.question(
            self,
            "Remove folder",
            f"Stop searching {folder.path}?\n\nIts photos stay where they are; only the index forgets them.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.tasks.start(
                self.library.remove_folder, folder.path, done=lambda _: self.refresh_library(), failed=self.show_error
            )

    def _folder_menu(self, position: QPoint) -> None:
        folder = self.selected_folder()
        if folder is None or self.library is None:
            return
        menu = QMenu(self)
        menu.addAction("Re-scan", lambda: self.start_indexing([folder.path]))
        menu.addAction("Show unreadable files…", lambda: self.show_problems(folder))
        menu.addAction("Open folder", lambda: self.open_photo(folder.path))
        menu.addSeparator()
        menu.addAction("Remove", self.remove_selected_folder)
        menu.exec(self.folder_list.viewport().mapToGlobal(position))

    def show_problems(self, folder: FolderRecord) -> None:
        if self.library is not None:
            self.tasks.start(
                self.library.unreadable,
                folder.path,
                done=lambda problems: ProblemsDialog(folder.path, problems, self).exec(),
                failed=self.show_error,
            )

    # Indexing ---------------------------------------------------------------------------------------

    def start_indexing(
        self,
        folders: list[Path] | None,
        model_id: str | None = None,
        then: Callable[[IndexReport], None] | None = None,
    ) -> None:
        """Index in the background (queued behind a run in progress)."""
        if self.library is None:
            return
        if self.index_thread is not None:
            self.index_queue.append((folders, model_id, then))
            return
        thread = IndexThread(self.library, folders, model_id)
        thread.progress.connect(self._on_progress)
        thread.finished_report.connect(lambda report: self._on_indexed(report, then))
        thread.failed.connect(lambda message: self._on_indexed(None, None, message))
        self.index_thread = thread
        self.progress.setRange(0, 0)
        self.progress_label.setText("Looking for new and changed photos…")
        for widget in self._progress_widgets():
            widget.show()
        self.cancel_button.setEnabled(True)
        thread.start()

    def _progress_widgets(self) -> tuple[QWidget, ...]:
        """The status-bar widgets shown only while indexing runs."""
        return (self.progress_label, self.progress, self.cancel_button)

    def cancel_indexing(self) -> None:
        if self.index_thread is not None:
            self.index_queue.clear()
            self.index_thread.cancel()
            self.cancel_button.setEnabled(False)
            self.progress_label.setText("Stopping after the current batch…")

    def _on_progress(self, state: IndexProgress) -> None:
        if state.phase == "scanning":
            self.progress.setRange(0, 0)
            self.progress_label.setText(f"Scanning {state.folder.name if state.folder else ''}…")
        elif state.phase == "encoding" and self.cancel_button.isEnabled():
            self.progress.setRange(0, max(1, state.total))
            self.progress.setValue(state.done)
            eta = state.eta_seconds
            eta_text = f" · {int(eta) // 60}:{int(eta) % 60:02d} left" if eta is not None else ""
            self.progress_label.setText(
                f"Indexing {state.done:,} / {state.total:,} · {state.photos_per_second:.0f} photos/s{eta_text}"
            )
            if time.monotonic() - self._last_status_refresh > 2.0:  # counts grow while indexing
                self._last_status_refresh = time.monotonic()
                self.tasks.start(self.library.status, done=self._show_status)

    def _on_indexed(
        self, report: IndexReport | None, then: Callable[[IndexReport], None] | None, error: str | None = None
    ) -> None:
        thread, self.index_thread = self.index_thread, None
        if thread is not None:
            thread.wait()
        for widget in self._progress_widgets():
            widget.hide()
        if error is not None:
            self.show_error(f"Indexing stopped: {error}")
        elif report is not None:
            verb = "Stopped" if report.cancelled else "Indexed"
            failed = report.failed + report.unreadable
            unreadable = f", {failed} unreadable" if failed else ""
            self.statusBar().showMessage(
                f"{verb}: {report.encoded:,} photos encoded{unreadable}, {report.removed:,} removed,"
                f" {report.moved:,} moved, in {report.seconds:.1f} s",
                10000,
            )
            if report.problems:
                self.show_error(f"{len(report.problems)} problem(s) while indexing: {report.problems[0]}")
            if then is not None:
                then(report)
            self.indexing_done.emit(report)
        self.refresh_library()
        if self.index_queue:
            self.start_indexing(*self.index_queue.pop(0))

    # Searching --------------------------------------------------------------------------------------

    def choose_photo(self) -> None:
        pattern = "Photos (*.jpg *.jpeg *.png *.webp *.bmp *.gif *.tif *.tiff *.heic *.heif);;All files (*)"
        path, _ = QFileDialog.getOpenFileName(self, "Find photos that look like…", "", pattern)
        if path:
            self.search_photo(Path(path))

    def paste(self) -> None:
        mime = QGuiApplication.clipboard().mimeData()
        files = [path for path in dropped_paths(mime) if path.is_file()] if mime is not None else []
        if files:
            self.search_photo(files[0])
        elif mime is not None and mime.hasImage():
            self.search_image(QImage(mime.imageData()))
        else:
            self.show_error("The clipboard holds no image or photo file.")

    def search_photo(self, path: Path) -> None:
        """Search with a photo file (dropped, opened, pasted or chosen from the results)."""
        if not is_image_path(path):
            self.show_error(f"{path.name} is not a photo format PHPQ Search reads.")
            return
        self.last_query = path
        self.query_area.show_query(None, path.name)
        cache = self.query_thumbnails
        if cache is not None:
            self.tasks.start(lambda: to_qimage(cache.load(path)), done=self._show_query_picture, failed=lambda _: None)
        self._run_search(lambda library, k, w: library.search(path, top_k=k, weight=w))

    def search_image(self, image: QImage) -> None:
        """Search with an image from the clipboard."""
        if image.isNull():
            self.show_error("The clipboard image could not be read.")
            return
        rgb = image.convertToFormat(QImage.Format.Format_RGB888)
        pil = Image.frombuffer(
            "RGB", (rgb.width(), rgb.height()), bytes(rgb.constBits()), "raw", "RGB", rgb.bytesPerLine()
        )
        self.last_query = pil.copy()
        self.query_area.show_query(QPixmap.fromImage(image), "pasted image")
        self._search_pasted(self.last_query)

    def _search_pasted(self, image: Image.Image) -> None:
        self._run_search(lambda library, k, w: library.search_image(image, top_k=k, weight=w))

    def _show_query_picture(self, image: QImage) -> None:
        if isinstance(self.last_query, Path):
            self.query_area.show_query(QPixmap.fromImage(image), self.last_query.name)

    def _repeat_search(self) -> None:
        if isinstance(self.last_query, Path):
            self.search_photo(self.last_query)
        elif isinstance(self.last_query, Image.Image):
            self._search_pasted(self.last_query)

    def _run_search(self, search: Callable[[Library, int, float | None], SearchResult]) -> None:
        if self.library is None:
            self.show_error("Still loading the model; try again in a moment.")
            return
        self.clear_error()
        self.search_generation += 1
        generation = self.search_generation
        library, top_k = self.library, self.top_k.value()
        weight = self.weight.value() if self.weight.isEnabled() else None
        self.tasks.start(
            lambda: search(library, top_k, weight),
            done=lambda result: self._show_results(generation, result),
            failed=self.show_error,
        )

    def _show_results(self, generation: int, result: SearchResult) -> None:
        if generation != self.search_generation or self.results_model is None:
            return  # an older query finished after a newer one started
        hits_generation = self.results_model.set_hits(result.hits)
        if result.hits and self.library is not None:
            self.tasks.start(
                self.library.photo_sizes,
                [hit.image_id for hit in result.hits],
                done=lambda sizes: self._set_sizes(hits_generation, sizes),
                failed=lambda message: log.info("no photo sizes: %s", message),
            )
        total = sum(result.timings_ms.values())
        self.time_label.setText(f"query {total:.0f} ms")
        self.time_label.setToolTip(", ".join(f"{key} {value:.1f} ms" for key, value in result.timings_ms.items()))
        self.query_info.setText(f"{len(result.hits)} of {result.n_searched:,} photos")
        if result.hits:
            self.pages.setCurrentWidget(self.results_view)
            self.results_view.scrollToTop()
        else:
            self.pages.setCurrentWidget(self.empty_state)
            self.empty_state.setText(
                "<h2>No photos to compare with yet</h2><p>Add a folder on the left; results appear as soon as"
                " its first photos are indexed.</p>"
            )
        self.results_shown.emit(result)

    # Results ----------------------------------------------------------------------------------------

    def _set_sizes(self, generation: int, sizes: dict[int, PhotoSize]) -> None:
        if self.results_model is not None:
            self.results_model.set_sizes(generation, sizes)

    def _result_menu(self, position: QPoint) -> None:
        index = self.results_view.indexAt(position)
        if not index.isValid():
            return
        hit: SearchHit = index.data(HIT_ROLE)
        selection = self.results_view.selectionModel()
        if not selection.isSelected(index):
            selection.select(index, selection.SelectionFlag.ClearAndSelect)
        paths = self.results_view.selected_paths()
        several = f" {len(paths)} photos" if len(paths) > 1 else ""
        menu = QMenu(self)
        menu.addAction(f"Open{several}", lambda: self.open_photos(paths))
        menu.addAction("Show in file manager", lambda: self.reveal(hit.path))
        menu.addAction("Find similar to this photo", lambda: self.search_photo(hit.path))
        menu.addAction("Copy paths" if several else "Copy path", lambda: self.copy_paths(paths))
        menu.exec(self.results_view.viewport().mapToGlobal(position))

    def _open_activated(self, index: QModelIndex) -> None:
        """Enter or a double-click: open the selected photos (the activated one when it is not selected)."""
        selected = self.results_view.selectionModel().isSelected(index)
        self.open_photos(self.results_view.selected_paths() if selected else [index.data(HIT_ROLE).path])

    def open_photos(self, paths: list[Path]) -> None:
        for path in paths:
            self.open_photo(path)

    def copy_paths(self, paths: list[Path]) -> None:
        """Paths on the clipboard as text, one a line. (Not as QMimeData with file URLs: PySide6 crashes
        at exit when the clipboard still owns mime data made in Python.)"""
        QGuiApplication.clipboard().setText("\n".join(str(path) for path in paths))

    def copy_selected_paths(self) -> None:
        paths = self.results_view.selected_paths()
        if paths:
            self.copy_paths(paths)

    def open_photo(self, path: Path) -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            self.show_error(f"No application opened {path}")

    def reveal(self, path: Path) -> None:
        def shown(ok: bool) -> None:
            if not ok:
                self.show_error(f"No file manager could show {path}")

        self.tasks.start(reveal_in_file_manager, path, done=shown, failed=self.show_error)

    # Models -----------------------------------------------------------------------------------------

    def show_models(self) -> None:
        if self.library is None:
            return
        dialog = ModelsDialog(self.library, self.tasks, self)
        dialog.activate_requested.connect(self.switch_model)
        dialog.open()

    def switch_model(self, model_id: str) -> None:
        """Index every photo with another model, then switch to it; the old codes serve searches meanwhile."""
        library = self.library
        if library is None:
            return
        pending = library.counts(model_id)["pending"]
        if pending == 0:
            self._activate(model_id)
            return
        answer = QMessageBox.question(
            self,
            "Use another model",
            f"{pending:,} photos must be indexed with this model first. Searches keep using the current model"
            " until that is done. Start now?",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.start_indexing(
                None, model_id, then=lambda report: None if report.cancelled else self._activate(model_id)
            )

    def _activate(self, model_id: str) -> None:
        if self.library is not None:
            self.tasks.start(
                self.library.activate_model, model_id, done=lambda _: self.refresh_library(), failed=self.show_error
            )

    # Drops on the whole window ----------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.source() is self.results_view:
            event.ignore()  # a result let go over the grid is no new query; over the query box it is
            return
        self.query_area.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.query_area.dropEvent(event)
