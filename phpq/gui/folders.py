"""The folders panel: the folder list, adding, removing, re-scanning and the unreadable files."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, Signal
from PySide6.QtWidgets import QListWidgetItem, QMenu, QMessageBox, QWidget

from phpq.db import FolderRecord
from phpq.gui.captions import folder_label
from phpq.gui.controller import Controller
from phpq.gui.dialogs import AddFolderDialog, ProblemsDialog
from phpq.gui.indexing import IndexingController
from phpq.gui.layout import WindowLayout
from phpq.gui.models import FOLDER_ROLE
from phpq.gui.workers import TaskRunner


class FoldersController(Controller):
    """Keeps the folder list and carries out what its buttons and menu ask for."""

    changed = Signal()  # a folder was added or removed

    def __init__(
        self, ui: WindowLayout, tasks: TaskRunner, indexing: IndexingController, parent: QWidget | None = None
    ):
        super().__init__(ui, tasks, parent)
        self.indexing = indexing
        ui.folder_list.customContextMenuRequested.connect(self._menu)
        ui.add_button.clicked.connect(self.choose)
        ui.rescan_button.clicked.connect(lambda: self.indexing.start(None))
        ui.remove_button.clicked.connect(self.remove_selected)

    def set_writable(self, writable: bool) -> None:
        """A read-only index can be searched but its folders not changed."""
        for button in (self.ui.add_button, self.ui.rescan_button, self.ui.remove_button):
            button.setEnabled(writable)

    def show(self, folders: list[FolderRecord]) -> None:
        """Fill the list, keeping the selection."""
        selected = self.selected()
        self.ui.folder_list.clear()
        for folder in folders:
            item = QListWidgetItem(folder_label(folder))
            item.setToolTip(str(folder.path))
            item.setData(FOLDER_ROLE, folder)
            self.ui.folder_list.addItem(item)
            if selected is not None and folder.path == selected.path:
                self.ui.folder_list.setCurrentItem(item)

    def selected(self) -> FolderRecord | None:
        item = self.ui.folder_list.currentItem()
        return item.data(FOLDER_ROLE) if item is not None else None

    def choose(self) -> None:
        dialog = AddFolderDialog(self.dialog_parent)
        folder = dialog.chosen() if dialog.exec() else None
        if folder is not None:
            self.add([folder], dialog.species_from_folders.isChecked())

    def add(self, folders: list[Path], species_from_folders: bool = False) -> None:
        """Register ``folders`` and index them, in the background; with ``species_from_folders`` each
        photo's folder name is its species."""
        if self.library is None:
            self.message.emit("Still loading; try again in a moment.")
            return
        for folder in folders:
            self.tasks.start(
                self.library.add_folder, folder, species_from_folders, done=self._added, failed=self.failed()
            )

    def _added(self, record: FolderRecord) -> None:
        self.changed.emit()
        self.indexing.start([record.path])

    def remove_selected(self) -> None:
        folder = self.selected()
        if folder is None or self.library is None:
            return
        answer = QMessageBox.question(
            self.dialog_parent,
            "Remove folder",
            f"Stop searching {folder.path}?\n\nIts photos stay where they are; only the index forgets them.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.tasks.start(
                self.library.remove_folder, folder.path, done=lambda _: self.changed.emit(), failed=self.failed()
            )

    def _menu(self, position: QPoint) -> None:
        folder = self.selected()
        if folder is None or self.library is None:
            return
        menu = QMenu(self.dialog_parent)
        menu.addAction("Re-scan", lambda: self.indexing.start([folder.path]))
        menu.addAction("Show unreadable files…", lambda: self.show_problems(folder))
        menu.addAction("Open folder", lambda: self.open_path(folder.path))
        menu.addSeparator()
        menu.addAction("Remove", self.remove_selected)
        menu.exec(self.ui.folder_list.viewport().mapToGlobal(position))

    def show_problems(self, folder: FolderRecord) -> None:
        if self.library is not None:
            self.tasks.start(
                self.library.unreadable,
                folder.path,
                done=lambda problems: ProblemsDialog(folder.path, problems, self.dialog_parent).exec(),
                failed=self.failed(),
            )
