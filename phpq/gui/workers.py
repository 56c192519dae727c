"""Background work for the window: one-off tasks, the indexing thread and the thumbnail loader.

Results cross back to the GUI thread as queued Qt signals; nothing here touches a widget. A failure
crosses as the exception object itself, so the window decides what to show by its type.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal
from PySide6.QtGui import QImage

from phpq.index import CancelToken, IndexProgress
from phpq.library import Library
from phpq.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)


def readable_error(error: BaseException) -> str:
    """One line a user can read, whatever went wrong."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text


def _detached(error: Exception) -> Exception:
    """``error`` without its traceback, so the frames (and the library objects they hold) can be freed."""
    return error.with_traceback(None)


class TaskSignals(QObject):
    finished = Signal(object)
    failed = Signal(object)  # the exception


class Task(QRunnable):
    """Run ``function(*args)`` on a pool thread; ``signals.finished(result)`` or ``signals.failed(error)``."""

    def __init__(self, function: Callable[..., Any], *args: Any):
        super().__init__()
        self.function, self.args = function, args
        self.signals = TaskSignals()

    def run(self) -> None:
        try:
            result = self.function(*self.args)
        except Exception as error:  # every failure reaches the window as an exception object, never a traceback
            log.exception("background task failed")
            self.signals.failed.emit(_detached(error))
            return
        self.signals.finished.emit(result)


class TaskRunner(QObject):
    """Starts tasks on a thread pool and keeps them alive until they report back."""

    def __init__(self, parent: QObject | None = None, threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._running: set[Task] = set()

    def start(
        self,
        function: Callable[..., Any],
        *args: Any,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[Exception], None] | None = None,
    ) -> Task:
        task = Task(function, *args)
        task.setAutoDelete(False)
        self._running.add(task)
        task.signals.finished.connect(lambda result: self._finish(task, done, result))
        task.signals.failed.connect(lambda error: self._finish(task, failed, error))
        self.pool.start(task)
        return task

    def _finish(self, task: Task, callback: Callable[[Any], None] | None, value: Any) -> None:
        self._running.discard(task)
        if callback is not None:
            callback(value)

    def wait(self, milliseconds: int = 10_000) -> bool:
        return self.pool.waitForDone(milliseconds)


class IndexThread(QThread):
    """Runs ``Library.index`` off the GUI thread, reporting progress and honouring cancel."""

    progress = Signal(object)  # IndexProgress (a copy per batch)
    finished_report = Signal(object)  # IndexReport
    failed = Signal(object)  # the exception that stopped it

    def __init__(self, library: Library, folders: list[Path] | None, model_id: str | None = None):
        super().__init__()
        self.library, self.folders, self.model_id = library, folders, model_id
        self.token = CancelToken()

    def cancel(self) -> None:
        self.token.cancel()

    def run(self) -> None:
        def report(state: IndexProgress) -> None:
            self.progress.emit(copy.copy(state))

        try:
            result = self.library.index(self.folders, self.model_id, progress=report, cancel=self.token)
        except Exception as error:  # shown in the window
            log.exception("indexing failed")
            self.failed.emit(_detached(error))
            return
        self.finished_report.emit(result)


def to_qimage(image: Image.Image) -> QImage:
    """A PIL RGB image as a QImage that owns its pixels (safe to hand to the GUI thread)."""
    rgb = image.convert("RGB")
    data = rgb.tobytes()
    return QImage(data, rgb.width, rgb.height, 3 * rgb.width, QImage.Format.Format_RGB888).copy()


class ThumbnailLoader(QObject):
    """Decodes thumbnails on its own threads and hands back QImages tagged with the query generation.

    Requests of an older generation that have not started yet are skipped, and the receiver drops any
    result whose generation is not current, so a slow old thumbnail never paints over a newer query.
    """

    loaded = Signal(int, str, QImage)  # generation, photo path, image (null when unreadable)

    def __init__(self, cache: ThumbnailCache, parent: QObject | None = None, threads: int = 2):
        super().__init__(parent)
        self.cache = cache
        self.generation = 0
        self.runner = TaskRunner(self, threads)

    def request(self, generation: int, path: Path) -> None:
        self.runner.start(
            self._load,
            generation,
            path,
            done=lambda result: self.loaded.emit(*result) if result is not None else None,
        )

    def _load(self, generation: int, path: Path) -> tuple[int, str, QImage] | None:
        if generation != self.generation:
            return None  # the query changed before this request started
        try:
            image = to_qimage(self.cache.load(path))
        except Exception as error:  # an unreadable photo gets an empty thumbnail, not an error box
            log.info("no thumbnail for %s: %s", path, error)
            image = QImage()
        return generation, str(path), image
