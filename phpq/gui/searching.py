"""Searching from the window: the query (a file or a pasted image), its search ranked as "Rank by" says,
and the identification of its species, both on the task pool; ``ResultsPresenter`` shows what they return.
A result that belongs to an older query is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import QFileDialog, QWidget

from phpq.fusion import SearchSteps
from phpq.gui.controller import Controller
from phpq.gui.layout import WindowLayout
from phpq.gui.presenter import ResultsPresenter
from phpq.gui.ranking import RankByControl
from phpq.gui.widgets import PHOTO_FILTER, dropped_paths
from phpq.gui.workers import TaskRunner, to_qimage
from phpq.imaging import is_image_path
from phpq.library import Library
from phpq.search import SearchResult
from phpq.species import Identification
from phpq.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

Search = Callable[[Library, int, float | None, SearchSteps | None], SearchResult]  # runs on a worker thread
Identify = Callable[[Library], Identification]  # names the query's species on a worker thread


def qimage_to_pil(image: QImage) -> Image.Image:
    """A copy of ``image`` as a PIL RGB image."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    pixels = bytes(rgb.constBits())
    return Image.frombuffer("RGB", (rgb.width(), rgb.height()), pixels, "raw", "RGB", rgb.bytesPerLine()).copy()


class SearchController(Controller):
    """Runs searches (and identifications) for the query box; the presenter shows their answers."""

    results_shown = Signal(object)  # SearchResult
    identified = Signal(object)  # Identification

    def __init__(self, ui: WindowLayout, tasks: TaskRunner, settings: QSettings, parent: QWidget | None = None):
        super().__init__(ui, tasks, parent)
        self.generation = 0
        self.last_query: Path | Image.Image | None = None
        self.rank_by = RankByControl(ui.rank_by, settings, self)
        self.presenter = ResultsPresenter(ui, tasks, settings, self.rank_by, parent)
        self.query_thumbnails: ThumbnailCache | None = None
        ui.open_button.clicked.connect(self.choose_photo)
        ui.query_area.photo_dropped.connect(self.search_photo)
        ui.query_area.photo_clicked.connect(self.choose_photo)
        ui.top_k.valueChanged.connect(self.repeat)
        self.rank_by.changed.connect(self.repeat)

    def attach(self, thumbnails: ThumbnailCache, owner: QObject) -> None:
        """Thumbnails come from ``thumbnails`` from now on (``owner`` keeps the loader)."""
        self.presenter.attach(thumbnails, owner)
        self.query_thumbnails = thumbnails

    def choose_photo(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.dialog_parent, "Find photos that look like…", "", PHOTO_FILTER)
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
            self.message.emit("The clipboard holds no image or photo file.")

    def search_photo(self, path: Path) -> None:
        """Search with a photo file (dropped, opened, pasted or chosen from the results)."""
        if not is_image_path(path):
            self.message.emit(f"{path.name} is not a photo format PHPQ Search reads.")
            return
        self.last_query = path
        self.ui.query_area.show_query(None, path.name)
        cache = self.query_thumbnails
        if cache is not None:
            self.tasks.start(lambda: to_qimage(cache.load(path)), done=self._show_query_picture, failed=lambda _: None)
        self._run(
            lambda library, k, w, s: library.search(path, top_k=k, weight=w, steps=s),
            lambda library: library.identify(path),
        )

    def search_image(self, image: QImage) -> None:
        """Search with an image from the clipboard."""
        if image.isNull():
            self.message.emit("The clipboard image could not be read.")
            return
        self.last_query = qimage_to_pil(image)
        self.ui.query_area.show_query(QPixmap.fromImage(image), "pasted image")
        self._search_pasted(self.last_query)

    def _search_pasted(self, image: Image.Image) -> None:
        self._run(
            lambda library, k, w, s: library.search_image(image, top_k=k, weight=w, steps=s),
            lambda library: library.identify_image(image),
        )

    def _show_query_picture(self, image: QImage) -> None:
        if isinstance(self.last_query, Path):
            self.ui.query_area.show_query(QPixmap.fromImage(image), self.last_query.name)

    def repeat(self) -> None:
        """Search again with the last query (the number of results, the ranking or a label changed)."""
        if isinstance(self.last_query, Path):
            self.search_photo(self.last_query)
        elif isinstance(self.last_query, Image.Image):
            self._search_pasted(self.last_query)

    def _run(self, search: Search, identify: Identify) -> None:
        if self.library is None:
            self.message.emit("Still loading the model; try again in a moment.")
            return
        self.ui.banner.hide()
        self.generation += 1
        generation = self.generation
        library, top_k = self.library, self.ui.top_k.value()
        weight, steps = self.rank_by.weight(), self.rank_by.steps()
        self.presenter.clear_suggestion()
        self.tasks.start(
            lambda: search(library, top_k, weight, steps),
            done=lambda result: self._show_results(generation, result),
            failed=self.failed(),
        )
        self.tasks.start(
            lambda: identify(library),
            done=lambda identification: self._show_identification(generation, identification),
            failed=lambda error: log.info("no species suggestion: %s", error),  # the search reports the error
        )

    def _show_results(self, generation: int, result: SearchResult) -> None:
        if generation == self.generation:  # else an older query finished after a newer one started
            self.presenter.show(result)
            self.results_shown.emit(result)

    def _show_identification(self, generation: int, identification: Identification) -> None:
        if generation == self.generation:
            self.presenter.show_identification(identification)
            self.identified.emit(identification)
