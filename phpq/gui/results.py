"""What a user does with results: open them, show them in the file manager, copy their paths, or
search with one of them."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, QPoint, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QMenu, QWidget

from phpq.desktop import reveal_in_file_manager
from phpq.gui.controller import Controller
from phpq.gui.layout import WindowLayout
from phpq.gui.models import HIT_ROLE
from phpq.gui.workers import TaskRunner
from phpq.search import SearchHit


class ResultActions(Controller):
    """The result grid's context menu, double-click (Enter) and Ctrl+C."""

    find_similar = Signal(Path)  # search with this result
    name_species = Signal(list, object)  # these photos' species should be asked for (the current name or None)
    clear_species = Signal(list)  # these photos' species names should be cleared

    def __init__(self, ui: WindowLayout, tasks: TaskRunner, parent: QWidget | None = None):
        super().__init__(ui, tasks, parent)
        self.view = ui.results_view
        self.view.customContextMenuRequested.connect(self._menu)
        self.view.activated.connect(self.open_activated)
        copy_paths = QAction("Copy path", self.view)
        copy_paths.setShortcut(QKeySequence.StandardKey.Copy)
        copy_paths.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        copy_paths.triggered.connect(self.copy_selected_paths)
        self.view.addAction(copy_paths)

    def _menu(self, position: QPoint) -> None:
        menu = self.context_menu(position)
        if menu is not None:
            menu.exec(self.view.viewport().mapToGlobal(position))

    def context_menu(self, position: QPoint) -> QMenu | None:
        """The menu for a right-click at ``position`` in the grid (None over no photo), acting on the
        selection when the photo there is part of it, else on that photo alone."""
        index = self.view.indexAt(position)
        hit: SearchHit | None = index.data(HIT_ROLE) if index.isValid() else None
        if hit is None:  # no result there, or a species group's header
            return None
        selection = self.view.selectionModel()
        if not selection.isSelected(index):
            selection.select(index, selection.SelectionFlag.ClearAndSelect)
        paths = self.view.selected_paths()
        several = f" {len(paths)} photos" if len(paths) > 1 else ""
        menu = QMenu(self.dialog_parent)
        menu.addAction(f"Open{several}", lambda: self.open_photos(paths))
        menu.addAction("Show in file manager", lambda: self.reveal(hit.path))
        menu.addAction("Find similar to this photo", lambda: self.find_similar.emit(hit.path))
        menu.addAction("Copy paths" if several else "Copy path", lambda: self.copy_paths(paths))
        menu.addSeparator()
        menu.addAction(f"Name species{several}…", lambda: self.name_species.emit(paths, hit.species))
        if any(selected.species for selected in self.view.selected_hits()):
            menu.addAction("Clear species name", lambda: self.clear_species.emit(paths))
        return menu

    def open_activated(self, index: QModelIndex) -> None:
        """Enter or a double-click: open the selected photos (the activated one when it is not selected)."""
        hit: SearchHit | None = index.data(HIT_ROLE)
        if hit is None:  # a species group's header
            return
        selected = self.view.selectionModel().isSelected(index)
        self.open_photos(self.view.selected_paths() if selected else [hit.path])

    def open_photos(self, paths: list[Path]) -> None:
        for path in paths:
            self.open_path(path)

    def copy_paths(self, paths: list[Path]) -> None:
        """Paths on the clipboard as text, one a line. (Not as QMimeData with file URLs: PySide6 crashes
        at exit when the clipboard still owns mime data made in Python.)"""
        QGuiApplication.clipboard().setText("\n".join(str(path) for path in paths))

    def copy_selected_paths(self) -> None:
        paths = self.view.selected_paths()
        if paths:
            self.copy_paths(paths)

    def reveal(self, path: Path) -> None:
        def shown(ok: bool) -> None:
            if not ok:
                self.message.emit(f"No file manager could show {path}")

        self.tasks.start(reveal_in_file_manager, path, done=shown, failed=self.failed())
