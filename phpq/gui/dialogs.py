"""Dialogs: installed models (import, metadata, activate), the unreadable files of a folder, and *Add folder…*.

The models dialog reads the library on the task pool, like the window; it never calls it directly.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from phpq.db import ModelRecord
from phpq.gui.errors import failure_text
from phpq.gui.workers import TaskRunner
from phpq.library import Library

SHOWN_METADATA = ("backbone", "input_size", "bits", "n_subspaces", "n_codewords", "dim", "weights", "created")


def describe_model(record: ModelRecord) -> str:
    """The metadata a user can judge a model by, one line each."""
    meta = record.metadata
    lines = [record.summary, ""] if record.summary else []
    lines += [f"name: {record.name}", f"id: {record.id}", f"file: {record.path}"]
    lines += [f"{key}: {meta[key]}" for key in SHOWN_METADATA if key in meta]
    classes = json.loads(meta.get("class_names", "[]"))
    if classes:
        lines.append(
            f"trained on {len(classes)} classes: {', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}"
        )
    training = json.loads(meta.get("training_data", "{}"))
    if training:
        lines.append("training: " + ", ".join(f"{key} {value}" for key, value in training.items()))
    validation = json.loads(meta.get("validation", "{}"))
    if validation:
        lines.append("held-out metrics: " + ", ".join(f"{key} {value:.4f}" for key, value in validation.items()))
    return "\n".join(lines)


def installed_models(library: Library) -> tuple[str, list[ModelRecord]]:
    """The active model's id and every installed model (for a worker thread)."""
    return library.active_model_id, library.models()


class ModelsDialog(QDialog):
    """Lists the installed models with their metadata; imports a new one; asks to activate one."""

    activate_requested = Signal(str)  # model id
    loaded = Signal()  # the list shows the installed models

    def __init__(self, library: Library, tasks: TaskRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.library, self.tasks = library, tasks
        self.active_id: str | None = None
        self.setWindowTitle("Models")
        self.resize(720, 420)
        self.list = QListWidget()
        self.details = QPlainTextEdit(readOnly=True)
        self.message = QLabel(wordWrap=True)
        self.message.setObjectName("modelMessage")
        self.import_button = QPushButton("Import model…")
        self.activate_button = QPushButton("Use this model")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.list, 1)
        row.addWidget(self.details, 2)
        actions = QHBoxLayout()
        actions.addWidget(self.import_button)
        actions.addWidget(self.activate_button)
        actions.addStretch()
        actions.addWidget(buttons)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.message)
        layout.addLayout(actions)
        self.list.currentItemChanged.connect(self._show_details)
        self.import_button.clicked.connect(self._choose_file)
        self.activate_button.clicked.connect(self._activate)
        self.refresh()

    def refresh(self, select: str | None = None) -> None:
        """List the installed models (read in the background), selecting ``select`` or the active one."""
        self.tasks.start(
            installed_models,
            self.library,
            done=lambda found: self._show_models(*found, select=select),
            failed=lambda error: self.message.setText(f"The models could not be listed: {failure_text(error)}"),
        )

    def _show_models(self, active: str, records: list[ModelRecord], select: str | None) -> None:
        self.active_id = active
        self.list.clear()
        for record in records:
            bits = record.metadata.get("bits", "?")
            item = QListWidgetItem(f"{'● ' if record.id == active else ''}{record.title} ({bits} bits)")
            item.setData(Qt.ItemDataRole.UserRole, record)
            self.list.addItem(item)
            if record.id == (select or active):
                self.list.setCurrentItem(item)
        self.loaded.emit()

    def _show_details(self, item: QListWidgetItem | None) -> None:
        record: ModelRecord | None = item.data(Qt.ItemDataRole.UserRole) if item else None
        self.details.setPlainText(describe_model(record) if record else "")
        self.activate_button.setEnabled(record is not None and record.id != self.active_id)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a model exported by phpq-export", "", "ONNX models (*.onnx)"
        )
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> None:
        """Check and install ``path`` in the background; the outcome shows in the dialog."""
        self.message.setText(f"Checking {path.name}…")
        self.import_button.setEnabled(False)
        self.tasks.start(self.library.import_model, path, done=self._imported, failed=self._import_failed)

    def _imported(self, record: ModelRecord) -> None:
        self.import_button.setEnabled(True)
        self.message.setText(f"Imported {record.title}. Select it and choose “Use this model” to switch.")
        self.refresh(select=record.id)

    def _import_failed(self, error: Exception) -> None:
        self.import_button.setEnabled(True)
        self.message.setText(f"This file cannot be used as a model: {failure_text(error)}")

    def _activate(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.activate_requested.emit(item.data(Qt.ItemDataRole.UserRole).id)
            self.accept()


class ProblemsDialog(QDialog):
    """The files of a folder that could not be read, with the reason for each."""

    def __init__(self, folder: Path, problems: list[tuple[Path, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"Unreadable files in {folder.name}")
        self.resize(720, 360)
        text = QPlainTextEdit(readOnly=True)
        text.setPlainText("\n".join(f"{path}: {reason}" for path, reason in problems) or "No unreadable files.")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)


class AddFolderDialog(QFileDialog):
    """*Add folder…*: a folder chooser with a "Name photos by their folders" checkbox (Qt's own dialog: a
    native one takes no extra widget)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, "Add a folder of photos")
        self.setFileMode(QFileDialog.FileMode.Directory)
        self.setOption(QFileDialog.Option.ShowDirsOnly, True)
        self.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self.species_from_folders = QCheckBox("Name photos by their folders")
        self.species_from_folders.setToolTip(
            "Each photo's species is the name of the folder it is in (Birds/Painted Bunting/photo.jpg:"
            " Painted Bunting), now and at every re-scan. Names you give by hand stay. The photos are not touched."
        )
        layout = self.layout()
        if isinstance(layout, QGridLayout):
            layout.addWidget(self.species_from_folders, layout.rowCount(), 0, 1, layout.columnCount())

    def chosen(self) -> Path | None:
        """The folder chosen, once the dialog was accepted."""
        files = self.selectedFiles()
        return Path(files[0]) if files else None
