"""Indexing from the window: one run at a time on its own thread (later requests queue behind it),
with its progress, cancel button and outcome in the status bar."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from phpq.gui.controller import Controller
from phpq.gui.layout import WindowLayout
from phpq.gui.workers import IndexThread, TaskRunner
from phpq.index import IndexProgress
from phpq.library import IndexReport

STATUS_REFRESH_SECONDS = 2.0  # how often the photo counts are refreshed while a run encodes


@dataclass
class IndexRequest:
    folders: list[Path] | None  # None: every folder
    model_id: str | None = None  # None: the active model
    then: Callable[[IndexReport], None] | None = None  # called with the report of a run that finished


def report_text(report: IndexReport) -> str:
    """The status-bar line for a finished (or stopped) run."""
    verb = "Stopped" if report.cancelled else "Indexed"
    failed = report.failed + report.unreadable
    unreadable = f", {failed} unreadable" if failed else ""
    return (
        f"{verb}: {report.encoded:,} photos encoded{unreadable}, {report.removed:,} removed,"
        f" {report.moved:,} moved, in {report.seconds:.1f} s"
    )


class IndexingController(Controller):
    """Starts, queues, shows and cancels indexing runs."""

    finished = Signal(object)  # IndexReport of a run that ended normally (cancelled or not)
    ended = Signal()  # after every run, whether it finished or failed
    counts_stale = Signal()  # photo counts grew while a run encodes

    def __init__(self, ui: WindowLayout, tasks: TaskRunner, parent: QObject | None = None):
        super().__init__(ui, tasks, parent)
        self.worker: IndexThread | None = None
        self.queue: list[IndexRequest] = []
        self._last_refresh = 0.0
        ui.cancel_button.clicked.connect(self.cancel)

    def start(
        self,
        folders: list[Path] | None = None,
        model_id: str | None = None,
        then: Callable[[IndexReport], None] | None = None,
    ) -> None:
        """Index in the background (queued behind a run in progress)."""
        if self.library is None:
            return
        if self.worker is not None:
            self.queue.append(IndexRequest(folders, model_id, then))
            return
        thread = IndexThread(self.library, folders, model_id)
        thread.progress.connect(self._on_progress)
        thread.finished_report.connect(lambda report: self._on_finished(report, then))
        thread.failed.connect(self._on_failed)
        self.worker = thread
        self.ui.progress.setRange(0, 0)
        self.ui.progress_label.setText("Looking for new and changed photos…")
        for widget in self.ui.progress_widgets():
            widget.show()
        self.ui.cancel_button.setEnabled(True)
        thread.start()

    def cancel(self) -> None:
        """Stop after the current batch and drop the queued runs; what was done is kept."""
        if self.worker is not None:
            self.queue.clear()
            self.worker.cancel()
            self.ui.cancel_button.setEnabled(False)
            self.ui.progress_label.setText("Stopping after the current batch…")

    def stop(self) -> None:
        """Cancel and wait for the thread (the window is closing)."""
        if self.worker is not None:
            self.queue.clear()
            self.worker.cancel()
            self.worker.wait()

    def _on_progress(self, state: IndexProgress) -> None:
        if state.phase == "scanning":
            self.ui.progress.setRange(0, 0)
            self.ui.progress_label.setText(f"Scanning {state.folder.name if state.folder else ''}…")
        elif state.phase == "encoding" and self.ui.cancel_button.isEnabled():
            self.ui.progress.setRange(0, max(1, state.total))
            self.ui.progress.setValue(state.done)
            eta = state.eta_seconds
            eta_text = f" · {int(eta) // 60}:{int(eta) % 60:02d} left" if eta is not None else ""
            self.ui.progress_label.setText(f"Indexing {state.done:,} / {state.total:,}{eta_text}")
            self.ui.progress_label.setToolTip(f"{state.photos_per_second:.0f} photos a second" if state.done else "")
            if time.monotonic() - self._last_refresh > STATUS_REFRESH_SECONDS:
                self._last_refresh = time.monotonic()
                self.counts_stale.emit()

    def _on_finished(self, report: IndexReport, then: Callable[[IndexReport], None] | None) -> None:
        self._thread_done()
        self.ui.status_bar.showMessage(report_text(report), 10000)
        if report.problems:
            self.message.emit(f"{len(report.problems)} problem(s) while indexing: {report.problems[0]}")
        if then is not None:
            then(report)
        self.finished.emit(report)
        self._next()

    def _on_failed(self, error: Exception) -> None:
        self._thread_done()
        self.failure.emit(error, "Indexing stopped")
        self._next()

    def _thread_done(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.wait()
        for widget in self.ui.progress_widgets():
            widget.hide()

    def _next(self) -> None:
        self.ended.emit()
        if self.queue:
            request = self.queue.pop(0)
            self.start(request.folders, request.model_id, request.then)
