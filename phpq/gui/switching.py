"""Library > Models…: the models dialog, and switching to another model once its codes are built."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from phpq.gui.controller import Controller
from phpq.gui.dialogs import ModelsDialog
from phpq.gui.indexing import IndexingController
from phpq.gui.layout import WindowLayout
from phpq.gui.workers import TaskRunner
from phpq.library import IndexReport


class ModelSwitcher(Controller):
    """Opens the models dialog and carries out the switch it asks for."""

    switched = Signal()  # another model is active

    def __init__(
        self, ui: WindowLayout, tasks: TaskRunner, indexing: IndexingController, parent: QWidget | None = None
    ):
        super().__init__(ui, tasks, parent)
        self.indexing = indexing

    def show_dialog(self) -> ModelsDialog | None:
        if self.library is None:
            return None
        dialog = ModelsDialog(self.library, self.tasks, self.dialog_parent)
        dialog.activate_requested.connect(self.switch)
        dialog.open()
        return dialog

    def switch(self, model_id: str) -> None:
        """Index every photo with another model, then switch to it; the old codes serve searches meanwhile."""
        if self.library is not None:
            self.tasks.start(
                self.library.counts,
                model_id,
                done=lambda counts: self._confirm(model_id, counts["pending"]),
                failed=self.failed(),
            )

    def _confirm(self, model_id: str, pending: int) -> None:
        if pending == 0:
            self._activate(model_id)
            return
        answer = QMessageBox.question(
            self.dialog_parent,
            "Use another model",
            f"{pending:,} photos must be indexed with this model first. Searches keep using the current model"
            " until that is done. Start now?",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.indexing.start(None, model_id, then=lambda report: self._activate_unless_cancelled(model_id, report))

    def _activate_unless_cancelled(self, model_id: str, report: IndexReport) -> None:
        if not report.cancelled:
            self._activate(model_id)

    def _activate(self, model_id: str) -> None:
        if self.library is not None:
            self.tasks.start(
                self.library.activate_model, model_id, done=lambda _: self.switched.emit(), failed=self.failed()
            )
