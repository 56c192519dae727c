"""The desktop window under QT_QPA_PLATFORM=offscreen: drop to search, indexing, cancel, thumbnails, models.

The GUI thread (the test's own thread) is forbidden to call the library: a window change that calls it
there raises WrongThreadError and fails these tests. The tests' own library calls run on a helper thread.
"""

import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from PySide6.QtCore import QItemSelectionModel, QMimeData, QPoint, QPointF, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QDrag, QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication, QInputDialog

from phpq.db import REBUILD_HINT, DamagedDatabaseError, ModelRecord
from phpq.gui.captions import is_generic_name, result_folders
from phpq.gui.dialogs import AddFolderDialog, ModelsDialog
from phpq.gui.errors import failure_text, offers_rebuild
from phpq.gui.models import GROUP_ROLE, HIT_ROLE
from phpq.gui.window import MainWindow
from phpq.index import CancelToken
from phpq.library import Library, LibraryError, ReadOnlyError
from phpq.model import ModelError
from phpq.ranking import RANK_CHOICES, choice
from phpq.search import SearchHit
from phpq.species import group_by_species
from phpq.threadguard import WrongThreadError, allow_current_thread, forbid_current_thread
from tests.conftest import synthetic_photo, write_image_folder, write_photo

TIMEOUT_MS = 60_000
T = TypeVar("T")


@pytest.fixture(autouse=True)
def gui_thread_forbidden():
    """Every library call on the GUI thread raises WrongThreadError, until the test and its windows are done."""
    forbid_current_thread()
    yield
    allow_current_thread()


def off_gui(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a library call of the test itself on a helper thread and return its result."""
    with ThreadPoolExecutor(max_workers=1) as helper:
        return helper.submit(function, *args, **kwargs).result()


@pytest.fixture
def settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, tmp_path, tiny_model, settings) -> MainWindow:
    """The window over an empty library in a temporary data directory, the tiny model active."""
    database = tmp_path / "data" / "index.sqlite3"

    def open_library() -> Library:
        library = Library(database, prefer_cuda=False)
        library.activate_model(library.import_model(tiny_model).id)
        return library

    shown = MainWindow(open_library, settings)
    qtbot.addWidget(shown)
    with qtbot.waitSignal(shown.library_ready, timeout=TIMEOUT_MS):
        shown.show()
    return shown


def drop(widget, path) -> None:
    """What a file manager does: drag enters (the widget must accept it), then the drop."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    buttons, modifiers = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    with warnings.catch_warnings():  # PySide6 flags the QPoint constructor, which Qt 6 still documents
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, buttons, modifiers)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted(), "the drop target refused the drag"
    QApplication.sendEvent(widget, QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, buttons, modifiers))


def index_folder(qtbot, window: MainWindow, folder) -> object:
    with qtbot.waitSignal(window.indexing_done, timeout=TIMEOUT_MS) as done:
        window.folders.add([folder])
    return done.args[0]


def test_first_run_explains_the_two_steps(qtbot, window):
    qtbot.waitUntil(lambda: "CPU" in window.ui.model_label.text(), timeout=TIMEOUT_MS)
    assert window.ui.pages.currentWidget() is window.ui.empty_state
    assert "Add a folder" in window.ui.empty_state.text() and "Drop a photo" in window.ui.empty_state.text()
    assert "16-bit codes" in window.ui.model_label.toolTip() and window.ui.model_label.text().endswith(" · CPU")


def test_dropping_a_photo_shows_ranked_look_alikes(qtbot, window, tmp_path):
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=6)
    report = index_folder(qtbot, window, photos)
    assert report.encoded == 24
    query = write_photo(tmp_path / "query.png", label=2, index=90)
    window.ui.top_k.setValue(5)
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS) as shown:
        drop(window.ui.query_area, query)
    hits = shown.args[0].hits
    assert [hit.path.parent.name for hit in hits].count("003.class_2") >= 4
    model = window.ui.results_view.model()
    assert model.rowCount() == 5 and window.ui.pages.currentWidget() is window.ui.results_view
    # photo_NNN.jpg repeats in every class folder, so each caption names the folder too; the number is the
    # photo's own similarity to the query in percent
    percent = round(100 * min(max(hits[0].own_similarity, 0.0), 1.0))
    assert model.index(0).data() == f"{hits[0].path.name}\n{percent} % · in {hits[0].path.parent.name}"
    assert "ms" in window.ui.time_label.text() and "24 photos indexed" in window.ui.count_label.text()
    # thumbnails load lazily, off the GUI thread, and land in the grid
    model.index(0).data(Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: str(hits[0].path) in model._pixmaps, timeout=TIMEOUT_MS)
    # a pasted image searches too
    pixels = synthetic_photo(1, 91).tobytes()
    # copy(): the clipboard must own its pixels, not borrow a Python buffer that is freed before exit
    QGuiApplication.clipboard().setImage(QImage(pixels, 96, 96, 3 * 96, QImage.Format.Format_RGB888).copy())
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS) as pasted:
        window.search.paste()
    assert [hit.path.parent.name for hit in pasted.args[0].hits].count("002.class_1") >= 4


def test_indexing_reports_progress_without_blocking_the_event_loop(qtbot, window, tmp_path):
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=60, size=160)
    progress = []
    gaps = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    window.folders.add([photos])
    qtbot.waitUntil(lambda: window.indexing.worker is not None, timeout=TIMEOUT_MS)
    window.indexing.worker.progress.connect(lambda state: progress.append(state))
    last[0] = time.perf_counter()
    timer.start()
    with qtbot.waitSignal(window.indexing_done, timeout=TIMEOUT_MS) as done:
        pass
    timer.stop()
    # the stretch after the last tick counts too, so every moment of the indexing is covered
    # however fast it ran (a fixed tick count failed when the tiny model indexed in 0.18 s)
    gaps.append(time.perf_counter() - last[0])
    assert done.args[0].encoded == 240
    encoding = [state for state in progress if state.phase == "encoding"]
    assert len(encoding) >= 3 and encoding[-1].done == encoding[-1].total == 240
    assert len(gaps) >= 5, "the timer hardly ran while indexing"
    assert max(gaps) < 0.100, f"the GUI thread was blocked for {max(gaps) * 1000:.0f} ms"
    assert window.ui.progress.isHidden() and "Indexed" in window.statusBar().currentMessage()


def test_cancel_stops_indexing_and_keeps_what_was_done(qtbot, window, tmp_path):
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=60)
    window.folders.add([photos])
    qtbot.waitUntil(lambda: window.indexing.worker is not None, timeout=TIMEOUT_MS)
    window.indexing.worker.progress.connect(
        lambda state: state.phase == "encoding" and state.done > 0 and window.ui.cancel_button.click()
    )
    with qtbot.waitSignal(window.indexing_done, timeout=TIMEOUT_MS) as done:
        pass
    report = done.args[0]
    assert report.cancelled and 0 < report.encoded < 240
    assert "Stopped" in window.statusBar().currentMessage() and window.ui.cancel_button.isHidden()
    counts = off_gui(window.library.counts)
    assert counts["indexed"] == report.encoded and counts["pending"] == 240 - report.encoded


def test_the_gui_thread_is_forbidden_to_call_the_library(qtbot, window):
    """The guard is live in these tests: on the GUI thread a library call raises, in a slot too."""
    with pytest.raises(WrongThreadError, match=r"Library\.status"):
        window.library.status()
    with pytest.raises(WrongThreadError, match=r"Library\.active_model_id"):
        _ = window.library.active_model_id
    with qtbot.captureExceptions() as caught:
        QTimer.singleShot(0, lambda: window.library.folders())
        qtbot.wait(50)
    assert [kind for kind, *_ in caught] == [WrongThreadError]  # (type, value, traceback) each
    assert off_gui(window.library.status).indexed == 0  # a worker thread may


def test_what_a_failure_shows_depends_on_its_type_not_its_text(qtbot, window):
    damaged = DamagedDatabaseError("the index is damaged (file is not a database)")
    assert offers_rebuild(damaged) and not offers_rebuild(LibraryError(f"damaged? {REBUILD_HINT}"))
    assert failure_text(ModelError("x.onnx is not a PHPQ model\nmore detail")) == "x.onnx is not a PHPQ model"
    assert failure_text(ReadOnlyError("open read-only")) == "open read-only"
    assert "unexpected KeyError" in failure_text(KeyError("bits"))
    window.rebuild_library = lambda: pytest.fail("no rebuild in this test")  # a rebuild is on offer
    with qtbot.waitSignal(window.error_shown, timeout=TIMEOUT_MS) as shown:
        window.indexing.failure.emit(damaged, "Indexing stopped")
    assert shown.args[0] == "Indexing stopped: the index is damaged (file is not a database)"
    assert window.ui.rebuild_button.isVisible()
    window.ui.rebuild_button.hide()
    with qtbot.waitSignal(window.error_shown, timeout=TIMEOUT_MS):
        window.search.failure.emit(LibraryError(f"not damaged, though it mentions {REBUILD_HINT}"), "")
    assert not window.ui.rebuild_button.isVisible()


def test_thumbnails_of_an_older_query_never_paint_over_a_newer_one(qtbot, window, tmp_path):
    model = window.ui.results_view.model()
    old = write_photo(tmp_path / "old.png", 0, 1)
    new = write_photo(tmp_path / "new.png", 1, 2)
    old_generation = model.set_hits([SearchHit(1, old, 0.9)])
    model.set_hits([SearchHit(2, new, 0.8)])
    image = QImage(16, 16, QImage.Format.Format_RGB888)
    model.on_thumbnail(old_generation, str(old), image)
    assert model.stale_discarded == 1 and str(old) not in model._pixmaps
    # a request queued for the old generation is skipped before it decodes anything
    loader = model.loader
    assert loader._load(old_generation, old) is None
    generation, path, loaded = loader._load(model.generation, new)
    assert (generation, path) == (model.generation, str(new)) and not loaded.isNull()


def test_model_import_rejects_a_bad_file_with_a_message(qtbot, window, tmp_path):
    dialog = ModelsDialog(window.library, window.tasks, window)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.loaded, timeout=TIMEOUT_MS):
        pass  # the dialog lists the models from a worker thread
    before = [record.id for record in off_gui(window.library.models)]
    assert dialog.list.count() == len(before)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x00garbage" * 100)
    dialog.import_file(bad)
    qtbot.waitUntil(lambda: "cannot be used as a model" in dialog.message.text(), timeout=TIMEOUT_MS)
    assert [record.id for record in off_gui(window.library.models)] == before
    assert dialog.list.count() == len(before)
    assert "bits" in dialog.details.toPlainText() or dialog.list.currentItem() is not None


def test_the_models_dialog_names_a_model_by_its_title_and_says_what_it_is_good_for(qtbot, window):
    dialog = ModelsDialog(window.library, window.tasks, window)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.loaded, timeout=TIMEOUT_MS):
        pass
    plain = ModelRecord("a" * 64, "phpq-plain", Path("/m/phpq-plain.onnx"), {"bits": "64"}, 0.0)
    meta = {"bits": "64", "title": "Thorough", "summary": "Better on birds from elsewhere; indexes at half the speed."}
    titled = ModelRecord("b" * 64, "phpq-thorough", Path("/m/phpq-thorough.onnx"), meta, 1.0)
    dialog._show_models(plain.id, [plain, titled], select=titled.id)
    assert [dialog.list.item(row).text() for row in range(2)] == ["● phpq-plain (64 bits)", "Thorough (64 bits)"]
    details = dialog.details.toPlainText()
    assert details.startswith(meta["summary"]) and "name: phpq-thorough" in details
    assert dialog.activate_button.isEnabled()


def test_errors_are_shown_in_the_window_and_settings_persist(qtbot, window, tmp_path, settings):
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    with qtbot.waitSignal(window.error_shown, timeout=TIMEOUT_MS) as shown:
        drop(window.ui.query_area, text)
    assert "not a photo format" in shown.args[0] and window.ui.banner.isVisible()
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"not really a jpeg")
    with qtbot.waitSignal(window.error_shown, timeout=TIMEOUT_MS) as shown:
        drop(window.ui.query_area, fake)
    assert "cannot read the query photo" in shown.args[0]
    window.ui.top_k.setValue(17)
    window.close()
    assert int(settings.value("top_k")) == 17


def test_a_damaged_index_offers_a_rebuild_that_reindexes_the_folders(qtbot, tmp_path, tiny_model, settings):
    photos = write_image_folder(tmp_path / "photos", n_classes=2, per_class=3)
    database = tmp_path / "data" / "index.sqlite3"

    def indexed_once() -> None:
        with Library(database, prefer_cuda=False) as library:
            library.activate_model(library.import_model(tiny_model).id)
            library.add_folder(photos)
            library.index()

    off_gui(indexed_once)
    database.write_bytes(b"this is no longer a database" * 100)
    broken = MainWindow(
        lambda: Library(database, prefer_cuda=False), settings, lambda: Library.rebuild(database, prefer_cuda=False)
    )
    qtbot.addWidget(broken)
    with qtbot.waitSignal(broken.error_shown, timeout=TIMEOUT_MS) as shown:
        broken.show()
    assert "damaged" in shown.args[0] and broken.ui.rebuild_button.isVisible()
    with qtbot.waitSignal(broken.indexing_done, timeout=TIMEOUT_MS) as done:
        broken.ui.rebuild_button.click()
    assert done.args[0].encoded == 6 and broken.library is not None and not broken.ui.rebuild_button.isVisible()


def test_a_second_window_on_the_same_index_is_read_only(qtbot, window, tmp_path, settings):
    second = MainWindow(lambda: Library(window.library.db.path, prefer_cuda=False), settings)
    qtbot.addWidget(second)
    with qtbot.waitSignal(second.library_ready, timeout=TIMEOUT_MS):
        second.show()
    assert second.library.read_only and "is using it" in second.ui.banner.text()
    assert "can search but not add" in second.ui.banner.text()
    assert not second.ui.add_button.isEnabled() and not second.ui.remove_button.isEnabled()
    assert window.ui.add_button.isEnabled()


def test_photos_left_without_a_code_are_indexed_at_start_up(qtbot, tmp_path, tiny_model, settings):
    database = tmp_path / "data" / "index.sqlite3"
    photos = write_image_folder(tmp_path / "photos", n_classes=2, per_class=4)

    def stopped_before_any_code() -> int:
        with Library(database, prefer_cuda=False) as library:
            library.activate_model(library.import_model(tiny_model).id)
            library.add_folder(photos)
            stop = CancelToken()
            stop.cancel()
            library.index(cancel=stop)
            return library.counts()["pending"]

    assert off_gui(stopped_before_any_code) == 8
    window = MainWindow(lambda: Library(database, prefer_cuda=False), settings)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.indexing_done, timeout=TIMEOUT_MS) as done:
        window.show()
    assert done.args[0].encoded == 8 and off_gui(window.library.counts)["pending"] == 0


def test_rank_by_reranks_with_the_table_s_weight_and_is_kept_per_model(qtbot, window, tmp_path, settings):
    box = window.ui.rank_by
    qtbot.waitUntil(box.isEnabled, timeout=TIMEOUT_MS)
    status = off_gui(window.library.status)
    assert [box.itemText(i) for i in range(box.count())] == [rank.label for rank in RANK_CHOICES]
    assert box.currentText() == "balanced" and window.search.rank_by.weight() is None  # the model's own
    adaptive = status.search.adaptive  # the model's own per-query weights, as its metadata gives them
    assert "known species:" in box.toolTip() and f"per photo {adaptive.low} or {adaptive.high}" in box.toolTip()
    assert "any bird w = 0.2 (no query expansion, the 50 best re-ranked by 3 neighbours)" in box.toolTip()
    index_folder(qtbot, window, write_image_folder(tmp_path / "photos", n_classes=4, per_class=4))
    query = write_photo(tmp_path / "query.png", label=1, index=90)
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS):
        drop(window.ui.query_area, query)
    for rank in sorted(RANK_CHOICES, key=lambda rank: rank.weight is None):  # balanced last
        with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS) as shown:
            box.setCurrentIndex(box.findData(rank.key))  # a new choice searches again, off the GUI thread
        top_k = window.ui.top_k.value()
        expected = off_gui(window.library.search, query, top_k=top_k, weight=rank.weight, steps=rank.steps)
        assert [hit.similarity for hit in shown.args[0].hits] == [hit.similarity for hit in expected.hits]
        assert settings.value(f"rank_by/{status.model.id}") == rank.key
    used = shown.args[0].weight  # balanced, last: the weight the model chose for this query, said in words
    assert used in (status.search.adaptive.low, status.search.adaptive.high)
    said = (
        "Looks like a species the model knows"
        if used == status.search.adaptive.high
        else "May be a species the model does not know (Rank by: any bird"
    )
    assert said in window.ui.query_info.text() and f"w = {used:g}" in window.ui.query_info.toolTip()
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS):
        box.setCurrentIndex(box.findData("any"))
    assert "May be" not in window.ui.query_info.text() and "Looks like" not in window.ui.query_info.text()
    assert choice("no such choice").key == "balanced"


def test_the_status_line_fits_a_1024_px_window_while_indexing(qtbot, window):
    qtbot.waitUntil(lambda: "CPU" in window.ui.model_label.text(), timeout=TIMEOUT_MS)
    status = off_gui(window.library.status)
    assert window.ui.model_label.text() == f"{status.model.name} · CPU"  # what a user needs; the rest in the tooltip
    assert status.kind in window.ui.model_label.toolTip()
    long_name = "phpq-my-own-birds-of-the-southern-andes-trained-2026-12-05-64bit"  # shortened in the middle
    window.ui.show_model(replace(status, model=replace(status.model, name=long_name)))
    assert "…" in window.ui.model_label.text() and long_name in window.ui.model_label.toolTip()
    # a library of 100,000 photos being indexed, a slow query: the longest texts these labels get
    window.ui.count_label.setText("100,000 photos indexed")
    window.ui.time_label.setText("query 1234 ms")
    window.ui.progress_label.setText("Indexing 12,345 / 100,000 · 123:45 left")
    for widget in window.ui.progress_widgets():
        widget.show()
    window.resize(1024, 700)
    qtbot.waitUntil(lambda: window.width() == 1024, timeout=5000)
    bar = window.statusBar()
    shown = [*window.ui.progress_widgets(), window.ui.count_label, window.ui.time_label, window.ui.model_label]
    for widget in shown:
        qtbot.waitUntil(widget.isVisible, timeout=5000)
        assert widget.width() >= widget.sizeHint().width(), f"{widget.objectName() or widget} is cut off"
        assert widget.geometry().right() <= bar.width(), f"{widget} runs off the window"


def search_five(qtbot, window: MainWindow, tmp_path) -> list[SearchHit]:
    """Index 4 classes x 6 synthetic photos and show the 5 look-alikes of a photo that is not indexed."""
    index_folder(qtbot, window, write_image_folder(tmp_path / "photos", n_classes=4, per_class=6))
    window.ui.top_k.setValue(5)
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS) as shown:
        drop(window.ui.query_area, write_photo(tmp_path / "query.png", label=2, index=90))
    return shown.args[0].hits


def test_results_drag_out_as_file_urls_and_several_open_and_copy_at_once(qtbot, window, tmp_path, monkeypatch):
    hits = search_five(qtbot, window, tmp_path)
    view, model = window.ui.results_view, window.ui.results_view.model()
    first, third = model.index(0), model.index(2)
    assert view.dragEnabled() and model.flags(first) & Qt.ItemFlag.ItemIsDragEnabled
    assert model.supportedDragActions() == Qt.DropAction.CopyAction
    dragged = model.mimeData([third, first])  # what the view hands to QDrag when the selection is dragged
    assert dragged.urls() == [QUrl.fromLocalFile(str(hits[0].path)), QUrl.fromLocalFile(str(hits[2].path))]
    assert all(url.isLocalFile() and Path(url.toLocalFile()).is_file() for url in dragged.urls())
    # a real drag with the mouse: press on a result and move past the drag distance starts a QDrag
    started: list[list[QUrl]] = []
    mime_data = model.mimeData

    def recorded(indexes: list) -> QMimeData:
        mime = mime_data(indexes)
        started.append(mime.urls())
        return mime

    monkeypatch.setattr(model, "mimeData", recorded)
    QTimer.singleShot(1000, QDrag.cancel)  # in case the platform's drag loop waits for a real mouse
    start = view.visualRect(model.index(1)).center()
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for step in range(1, 6):
        qtbot.mouseMove(view.viewport(), start + QPoint(8 * step, 8 * step))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    assert started == [[QUrl.fromLocalFile(str(hits[1].path))]]
    # several results selected: open and copy act on all of them
    selection = view.selectionModel()
    selection.select(first, QItemSelectionModel.SelectionFlag.ClearAndSelect)
    selection.select(third, QItemSelectionModel.SelectionFlag.Select)
    assert view.selected_paths() == [hits[0].path, hits[2].path]
    opened: list[Path] = []
    monkeypatch.setattr(window.results, "open_path", opened.append)
    window.results.open_activated(first)
    assert opened == [hits[0].path, hits[2].path]
    window.results.copy_selected_paths()
    assert QGuiApplication.clipboard().text().splitlines() == [str(hits[0].path), str(hits[2].path)]
    # a double-click on a result outside the selection opens just that one
    opened.clear()
    window.results.open_activated(model.index(4))
    assert opened == [hits[4].path]


def test_result_tooltips_give_path_similarity_and_size_and_copies_say_same_photo(qtbot, window, tmp_path):
    hits = search_five(qtbot, window, tmp_path)
    model = window.ui.results_view.model()
    qtbot.waitUntil(lambda: len(model.sizes) == 5, timeout=TIMEOUT_MS)
    tooltip = model.index(1).data(Qt.ItemDataRole.ToolTipRole).splitlines()
    size = hits[1].path.stat().st_size
    bytes_text = f"{size / 1000:.1f} kB ({size:,} bytes)"
    percent = round(100 * min(max(hits[1].own_similarity, 0.0), 1.0))
    assert tooltip[0] == str(hits[1].path) and tooltip[1].startswith(f"{percent} % alike: ")
    assert tooltip[2].startswith(f"ranking score {hits[1].similarity:.3f}")
    assert tooltip[3] == f"96 × 96 pixels · {bytes_text}"
    # width before height: a landscape photo, found first by searching with a copy of it
    wide = tmp_path / "wide" / "heron at dawn.png"
    wide.parent.mkdir()
    synthetic_photo(3, 50).resize((150, 90)).save(wide)
    index_folder(qtbot, window, wide.parent)
    query = tmp_path / "heron copy.png"
    query.write_bytes(wide.read_bytes())
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS) as shown:
        drop(window.ui.query_area, query)
    copy = shown.args[0].hits[0]  # a byte-identical copy of the query comes first, said in words
    assert copy.path == wide and copy.same_photo
    assert model.index(0).data() == "heron at dawn.png\nSame photo"
    assert " % · in " in model.index(1).data() and not shown.args[0].hits[1].same_photo
    qtbot.waitUntil(lambda: len(model.sizes) == len(shown.args[0].hits), timeout=TIMEOUT_MS)
    assert model.index(0).data(Qt.ItemDataRole.ToolTipRole).splitlines()[1].startswith("Same photo: ")
    assert model.index(0).data(Qt.ItemDataRole.ToolTipRole).splitlines()[3].startswith("150 × 90 pixels · ")
    assert not window.windowIcon().isNull() and window.windowIcon().availableSizes()


def test_the_result_grid_fills_the_width(qtbot, window, tmp_path):
    """As many columns as cells of 184 px fit, and no strip left empty at the right (a 1,180 px window
    once showed three columns and 250 px of nothing: a row that fit exactly was wrapped)."""
    index_folder(qtbot, window, write_image_folder(tmp_path / "photos", n_classes=4, per_class=6))
    window.ui.top_k.setValue(24)
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS):
        drop(window.ui.query_area, write_photo(tmp_path / "query.png", label=2, index=90))
    view, model = window.ui.results_view, window.ui.results_view.model()

    def fills_the_width() -> None:
        viewport = view.viewport().width()
        columns = viewport // 184
        top = view.visualRect(model.index(0)).top()
        first_row = [view.visualRect(model.index(row)) for row in range(model.rowCount())]
        first_row = [rect for rect in first_row if rect.top() == top]
        assert len(first_row) == columns, (viewport, len(first_row), columns)
        assert viewport - columns - 1 <= first_row[-1].right() < viewport, (viewport, first_row[-1])

    for width in (1180, 640, 1000, 1333, 1900, 900, 1024):
        window.resize(width, 700)
        qtbot.waitUntil(fills_the_width, timeout=5000)


def test_captions_name_the_folder_where_names_repeat_or_look_generic():
    assert all(map(is_generic_name, ["IMG_0412.jpg", "1.jpg", "DSC01234.JPG", "PXL_20230512_101010.jpg"]))
    assert all(map(is_generic_name, ["20230512_101010.jpg", "IMG_0412 (2).jpg", "P1010001.JPG"]))
    assert not any(map(is_generic_name, ["Indigo_Bunting_0001_12469.jpg", "robin.jpg", "heron at dawn.jpg"]))
    paths = [Path(p) for p in ["/a/2022/05/1.jpg", "/a/2023/05/1.jpg", "/x/robin.jpg", "/y/robin.jpg"]]
    paths += [Path("/z/Trip/IMG_1.jpg"), Path("/q/Blue_Jay_0001.jpg")]
    assert result_folders(paths) == ["2022/05", "2023/05", "x", "y", "Trip", ""]


def labelled_search(qtbot, window: MainWindow, tmp_path) -> tuple[list[SearchHit], Path]:
    """4 species named by their folders and a folder of unnamed photos; the 12 look-alikes of a photo of
    the third species that is not indexed, and that photo."""
    with qtbot.waitSignal(window.indexing_done, timeout=TIMEOUT_MS):
        window.folders.add([write_image_folder(tmp_path / "named", n_classes=4, per_class=5)], True)
    unnamed = tmp_path / "unnamed"  # other photos (a label follows a photo's content to its copies)
    for label in range(4):
        for index in (50, 51):
            write_photo(unnamed / f"IMG_{label}{index}.jpg", label, index)
    index_folder(qtbot, window, unnamed)
    window.ui.top_k.setValue(12)
    query = write_photo(tmp_path / "query.png", label=2, index=90)
    with (
        qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS) as shown,
        qtbot.waitSignal(window.search.identified, timeout=TIMEOUT_MS),
    ):
        drop(window.ui.query_area, query)
    return shown.args[0].hits, query


def test_the_suggestion_line_and_the_group_view(qtbot, window, tmp_path, settings):
    hits, _ = labelled_search(qtbot, window, tmp_path)
    assert "species named by their folders" in window.ui.folder_list.item(0).text()
    identification = off_gui(window.library.identify, tmp_path / "query.png")
    assert identification.summary() == "Probably class 2: 5 of the 5 closest labelled photos"
    assert window.ui.suggestion.text() == "Probably <b>class 2</b>: 5 of the 5 closest labelled photos"
    assert "from your named photos" in window.ui.suggestion.toolTip()
    model, view = window.ui.results_view.model(), window.ui.results_view
    named = next(row for row in range(model.rowCount()) if model.index(row).data(HIT_ROLE).species)
    assert "\nclass " in model.index(named).data()  # captions carry the species label
    assert model.rowCount() == len(hits) and model.index(0).data(GROUP_ROLE) is None  # flat
    window.ui.group_by_species.setChecked(True)  # shows the same results again, grouped; no new search
    groups = group_by_species(hits)
    headers = [row for row in range(model.rowCount()) if model.index(row).data(GROUP_ROLE) is not None]
    assert [model.index(row).data(GROUP_ROLE) for row in headers] == groups and len(groups) >= 2
    assert {"class 2", None} <= {group.species for group in groups} and groups[0].hits[0] == hits[0]
    assert model.rowCount() == len(hits) + len(groups)
    for row, group in zip(headers, groups, strict=True):
        best = max(round(100 * min(max(hit.own_similarity, 0.0), 1.0)) for hit in group.hits)
        name = group.species or "No species name"
        assert (
            model.index(row).data()
            == f"{name} · {len(group.hits)} photo{'s' if len(group.hits) > 1 else ''} · best {best} %"
        )
        assert [model.index(row + 1 + n).data(HIT_ROLE) for n in range(len(group.hits))] == group.hits
        assert not model.flags(model.index(row)) & Qt.ItemFlag.ItemIsSelectable
    # a header is a row of its own across the grid: its photos start on the next row, at the left
    qtbot.waitUntil(lambda: view.visualRect(model.index(headers[1])).width() >= view.viewport().width() - 2)
    header, first = view.visualRect(model.index(headers[1])), view.visualRect(model.index(headers[1] + 1))
    assert first.top() >= header.bottom() and first.left() == header.left()
    view.selectAll()
    assert view.selected_paths() == [hit.path for group in groups for hit in group.hits]
    assert settings.value("group_by_species", type=bool)
    window.ui.group_by_species.setChecked(False)
    assert model.rowCount() == len(hits) and not settings.value("group_by_species", type=bool)


def test_naming_a_selection_by_hand_and_clearing_it(qtbot, window, tmp_path, monkeypatch):
    hits, query = labelled_search(qtbot, window, tmp_path)
    unnamed = [hit.path for hit in hits if hit.species is None][:2]
    assert len(unnamed) == 2
    asked: list[list[str]] = []

    def answer(parent, title, label, names, current, editable):
        asked.append(names)
        return "Great Blue Heron", True

    monkeypatch.setattr(QInputDialog, "getItem", answer)
    view, model = window.ui.results_view, window.ui.results_view.model()
    rows = [row for row in range(model.rowCount()) if model.index(row).data(HIT_ROLE).path in unnamed]
    view.selectionModel().select(model.index(rows[0]), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    view.selectionModel().select(model.index(rows[1]), QItemSelectionModel.SelectionFlag.Select)
    menu = window.results.context_menu(view.visualRect(model.index(rows[0])).center())  # a right-click there
    offered = [action.text() for action in menu.actions()]
    assert "Name species 2 photos…" in offered and "Clear species name" not in offered  # none is named yet
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS) as shown:  # the search runs again
        window.results.name_species.emit(unnamed, None)  # what the menu's "Name species 2 photos…" does
    assert sorted(asked[0][1:]) == ["class 0", "class 1", "class 2", "class 3"]  # names in use offered
    species = {hit.path: hit.species for hit in shown.args[0].hits}
    assert [species[path] for path in unnamed] == ["Great Blue Heron"] * 2
    assert "2 photos named Great Blue Heron" in window.statusBar().currentMessage()
    row = next(row for row in range(model.rowCount()) if model.index(row).data(HIT_ROLE).path == unnamed[0])
    assert "Great Blue Heron · " in model.index(row).data()
    view.selectionModel().select(model.index(row), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    offered = [
        action.text() for action in window.results.context_menu(view.visualRect(model.index(row)).center()).actions()
    ]
    assert "Name species…" in offered and "Clear species name" in offered
    assert off_gui(window.library.species)["Great Blue Heron"] == 2
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT_MS) as shown:
        window.results.clear_species.emit(unnamed)
    species = {hit.path: hit.species for hit in shown.args[0].hits}
    assert [species[path] for path in unnamed] == [None, None] and query.is_file()


def test_add_folder_offers_naming_photos_by_their_folders(qtbot, window):
    dialog = AddFolderDialog(window)
    qtbot.addWidget(dialog)
    assert dialog.species_from_folders.text() == "Name photos by their folders"
    assert dialog.species_from_folders.parent() is not None and not dialog.species_from_folders.isChecked()
    assert "folder it is in" in dialog.species_from_folders.toolTip()


def test_without_names_the_suggestion_line_says_how_to_get_them(qtbot, window, tmp_path):
    search_five(qtbot, window, tmp_path)
    qtbot.waitUntil(lambda: window.ui.suggestion.text() != "", timeout=TIMEOUT_MS)
    assert "Name species" in window.ui.suggestion.text() and window.ui.suggestion.property("hint")
