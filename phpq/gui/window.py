"""The main window: folders on the left, the query on top, look-alikes in a grid, status at the bottom.

The window wires its widgets (``layout.WindowLayout``) to controllers, one per concern: indexing,
folders, searching, result actions and models. No library call runs on the GUI thread: every one goes
through the task pool or the indexing thread, and results and exceptions come back as queued signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QMainWindow

from phpq.gui.controller import Controller
from phpq.gui.errors import failure_text, offers_rebuild
from phpq.gui.folders import FoldersController
from phpq.gui.indexing import IndexingController
from phpq.gui.integration import app_icon
from phpq.gui.layout import WindowLayout, ready_text
from phpq.gui.naming import NamingController
from phpq.gui.results import ResultActions
from phpq.gui.searching import SearchController
from phpq.gui.switching import ModelSwitcher
from phpq.gui.workers import TaskRunner
from phpq.library import Library, LibraryStatus
from phpq.locations import data_dir
from phpq.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

APP_TITLE = "PHPQ Search"
SETTINGS_FILE = "window.ini"
CLOSE_WAIT_MS = 5000


def window_settings(folder: Path | None = None) -> QSettings:
    """The window's settings file in ``folder`` (default: the data directory, where the index lives)."""
    return QSettings(str((folder or data_dir()) / SETTINGS_FILE), QSettings.Format.IniFormat)


def _prepared(open_library: Callable[[], Library]) -> Callable[[], Library]:
    """``open_library`` followed by getting the library ready to search (for a worker thread)."""

    def open_and_prepare() -> Library:
        library = open_library()
        library.prepare_search()
        return library

    return open_and_prepare


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
        self.tasks = TaskRunner(self, threads=2)
        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.ui = WindowLayout(self)
        self.indexing = IndexingController(self.ui, self.tasks, self)
        self.folders = FoldersController(self.ui, self.tasks, self.indexing, self)
        self.search = SearchController(self.ui, self.tasks, self.settings, self)
        self.results = ResultActions(self.ui, self.tasks, self)
        self.models = ModelSwitcher(self.ui, self.tasks, self.indexing, self)
        self.naming = NamingController(self.ui, self.tasks, self)
        self._connect()
        self._build_menus()
        self._restore_settings()
        self.statusBar().showMessage("Loading the model…")
        self.tasks.start(_prepared(open_library), done=self._on_library, failed=self._on_library_failed)

    def _controllers(self) -> tuple[Controller, ...]:
        return (self.indexing, self.folders, self.search, self.search.presenter, self.results, self.models, self.naming)

    def _connect(self) -> None:
        for controller in self._controllers():
            controller.message.connect(self.show_error)
            controller.failure.connect(self.report_failure)
        self.indexing.finished.connect(self.indexing_done)
        self.indexing.ended.connect(self.refresh_library)
        self.indexing.counts_stale.connect(self.refresh_status)
        self.folders.changed.connect(self.refresh_library)
        self.models.switched.connect(self.refresh_library)
        self.search.results_shown.connect(self.results_shown)
        self.results.find_similar.connect(self.search.search_photo)
        self.results.name_species.connect(self.naming.ask)
        self.results.clear_species.connect(lambda paths: self.naming.name(paths, None))
        self.naming.labelled.connect(self.search.repeat)
        self.ui.query_area.folders_dropped.connect(self.folders.add)
        self.ui.rebuild_button.clicked.connect(self.rebuild)

    def _build_menus(self) -> None:
        def action(text: str, shortcut: QKeySequence | str, slot: Callable[[], object]) -> QAction:
            item = QAction(text, self)
            item.setShortcut(QKeySequence(shortcut))
            item.triggered.connect(slot)
            self.addAction(item)
            return item

        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(action("&Open image…", QKeySequence.StandardKey.Open, self.search.choose_photo))
        file_menu.addAction(action("&Paste image", QKeySequence.StandardKey.Paste, self.search.paste))
        file_menu.addAction(action("&Add folder…", "Ctrl+Shift+O", self.folders.choose))
        file_menu.addSeparator()
        file_menu.addAction(action("&Quit", QKeySequence.StandardKey.Quit, self.close))
        library_menu = self.menuBar().addMenu("&Library")
        library_menu.addAction(action("&Re-scan folders", "F5", lambda: self.indexing.start(None)))
        library_menu.addAction(action("&Remove folder", QKeySequence.StandardKey.Delete, self.folders.remove_selected))
        library_menu.addAction(action("&Models…", "Ctrl+M", self.models.show_dialog))

    # Settings and closing ---------------------------------------------------------------------------

    def _restore_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        splitter = self.settings.value("splitter")
        if isinstance(splitter, QByteArray):
            self.ui.splitter.restoreState(splitter)
        self.ui.top_k.setValue(int(self.settings.value("top_k", self.ui.top_k.value())))

    def closeEvent(self, event) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("splitter", self.ui.splitter.saveState())
        self.settings.setValue("top_k", self.ui.top_k.value())
        self.indexing.stop()
        self.tasks.wait(CLOSE_WAIT_MS)
        self.search.presenter.wait(CLOSE_WAIT_MS)
        library = self.library
        if library is not None:
            self._set_library(None)
            self.tasks.start(library.close, failed=lambda error: log.warning("closing the index: %s", error))
            self.tasks.wait(CLOSE_WAIT_MS)
        super().closeEvent(event)

    # Start-up ---------------------------------------------------------------------------------------

    def _set_library(self, library: Library | None) -> None:
        self.library = library
        for controller in self._controllers():
            controller.library = library

    def _on_library(self, library: Library, rebuilt: bool = False) -> None:
        self._set_library(library)
        self.search.attach(ThumbnailCache(library.db.path.parent / "thumbnails"), self)
        self.tasks.start(library.folders, done=self.folders.show, failed=self.report_failure)
        resume = not (library.read_only or rebuilt)  # a rebuild indexes everything below anyway
        self.tasks.start(
            library.status, done=lambda status: self._show_first_status(status, resume), failed=self.report_failure
        )
        self.statusBar().showMessage("Ready", 3000)
        self.folders.set_writable(not library.read_only)
        if library.read_only:
            self.show_error(
                f"This index is open read-only because {library.read_only_reason}: this window can search but"
                " not add, remove or re-scan folders."
            )
        elif rebuilt:
            self.indexing.start(None)
        self.library_ready.emit()

    def _show_first_status(self, status: LibraryStatus, resume: bool) -> None:
        """The status at start-up; with ``resume``, the photos left without a code then get indexed (by an
        interrupted run, or for an updated default model)."""
        self._show_status(status)
        if resume and status.pending:
            self.indexing.start(None)

    def _on_library_failed(self, error: Exception) -> None:
        self.ui.model_label.setText("model: not loaded")
        self.show_error(f"The photo library could not be opened: {failure_text(error)}")
        self.ui.rebuild_button.setVisible(self.rebuild_library is not None and offers_rebuild(error))

    def rebuild(self) -> None:
        """Set a damaged index aside, start a new one with the same folders and index them."""
        if self.rebuild_library is None:
            return
        self.ui.rebuild_button.hide()
        self.clear_error()
        self.statusBar().showMessage("Rebuilding the index…")
        self.tasks.start(
            _prepared(self.rebuild_library),
            done=lambda library: self._on_library(library, rebuilt=True),
            failed=self._on_library_failed,
        )

    # Messages ---------------------------------------------------------------------------------------

    def show_error(self, message: str) -> None:
        """A readable message in the window (never a modal box that blocks, never a traceback)."""
        self.ui.banner.setText(message)
        self.ui.banner.show()
        self.statusBar().showMessage(message, 8000)
        self.error_shown.emit(message)

    def report_failure(self, error: Exception, context: str = "") -> None:
        """Show what a worker's exception means; a damaged index also offers the rebuild."""
        text = failure_text(error)
        self.show_error(f"{context}: {text}" if context else text)
        if self.rebuild_library is not None and offers_rebuild(error):
            self.ui.rebuild_button.show()

    def clear_error(self) -> None:
        self.ui.banner.hide()

    # Library state ----------------------------------------------------------------------------------

    def refresh_library(self) -> None:
        """Reload the folder list and the status in the background."""
        if self.library is not None:
            self.tasks.start(self.library.folders, done=self.folders.show, failed=self.report_failure)
            self.refresh_status()

    def refresh_status(self) -> None:
        """Reload the model and the photo counts in the background."""
        if self.library is not None:
            self.tasks.start(self.library.status, done=self._show_status, failed=self.report_failure)

    def _show_status(self, status: LibraryStatus) -> None:
        """Model, counts and ranking choice in the window; it only shows, it starts nothing."""
        self.ui.show_model(status)
        self.search.rank_by.show_model(status)
        waiting = status.pending and self.indexing.worker is None  # while indexing, its progress says it
        pending = f" · {status.pending:,} to index" if waiting else ""
        self.ui.count_label.setText(f"{status.indexed:,} photos indexed{pending}")
        if status.folders and self.ui.pages.currentWidget() is self.ui.empty_state:
            self.ui.empty_state.setText(ready_text(status.indexed, len(status.folders)))

    # Drops on the whole window ----------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.source() is self.ui.results_view:
            event.ignore()  # a result let go over the grid is no new query; over the query box it is
            return
        self.ui.query_area.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.ui.query_area.dropEvent(event)
