"""The base of the window's controllers: the open library, the task pool, the widgets and two signals
that carry what went wrong to the window's banner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QWidget

from phpq.gui.layout import WindowLayout
from phpq.gui.workers import TaskRunner
from phpq.library import Library


class Controller(QObject):
    """One concern of the window. Library calls go through ``tasks``; results come back to slots."""

    message = Signal(str)  # a readable message for the banner
    failure = Signal(object, str)  # an exception from a worker, and what was being done ("" if it says)

    def __init__(self, ui: WindowLayout, tasks: TaskRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.ui, self.tasks = ui, tasks
        self.dialog_parent = parent  # the window: dialogs and menus open over it
        self.library: Library | None = None  # set by the window once the library is open

    def failed(self, context: str = "") -> Callable[[Exception], None]:
        """A task's ``failed`` callback that reports the exception under ``context``."""
        return lambda error: self.failure.emit(error, context)

    def open_path(self, path: Path) -> None:
        """Open a photo or folder in the desktop's application for it."""
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            self.message.emit(f"No application opened {path}")
