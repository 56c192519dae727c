"""The window's widgets and their arrangement; no behaviour is connected here.

``WindowLayout`` builds the folders panel on the left, the banner, query box and result pages on the
right, and the status-bar widgets, like the ``setupUi`` of a Qt Designer form.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from phpq.gui.style import STYLESHEET
from phpq.gui.widgets import QueryArea, ResultsView
from phpq.library import LibraryStatus

EMPTY_STATE = (
    "<h2>Find look-alikes in your own photos</h2>"
    "<p><b>1.</b> Add a folder of photos: <i>Add folder…</i> on the left, or drop a folder on this window.</p>"
    "<p><b>2.</b> Drop a photo in the box above, paste one (Ctrl+V) or open one (Ctrl+O).</p>"
    "<p>Photos never leave this computer, and are never changed: only small codes are stored.</p>"
)
MODEL_NAME_WIDTH = 220  # pixels: a longer model name is shortened in the status bar
NOTHING_INDEXED = (
    "<h2>No photos to compare with yet</h2><p>Add a folder on the left; results appear as soon as"
    " its first photos are indexed.</p>"
)


def ready_text(photos: int, folders: int) -> str:
    """The empty state once folders are indexed."""
    return (
        "<h2>Drop a photo to find its look-alikes</h2>"
        f"<p>{photos:,} photos in {folders} folder(s) are ready to search.</p>"
    )


class WindowLayout:
    """Builds the widgets of ``window`` and keeps them as attributes."""

    def __init__(self, window: QMainWindow):
        self.splitter = QSplitter()
        self.splitter.addWidget(self._folders_panel())
        self.splitter.addWidget(self._main_panel())
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([260, 900])
        window.setCentralWidget(self.splitter)
        self.status_bar = window.statusBar()
        self._status_widgets()
        window.setStyleSheet(STYLESHEET)
        window.resize(1200, 800)

    def _folders_panel(self) -> QWidget:
        panel = QWidget()
        side = QVBoxLayout(panel)
        side.setContentsMargins(8, 8, 4, 8)
        self.folder_list = QListWidget()
        self.folder_list.setObjectName("folderList")
        self.folder_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.folder_list.setWordWrap(True)
        self.folder_list.setSpacing(3)  # folders of several lines each stay apart
        self.add_button = QPushButton("Add folder…")
        self.rescan_button = QToolButton(text="Re-scan")
        self.remove_button = QToolButton(text="Remove")
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button, 1)
        buttons.addWidget(self.rescan_button)
        buttons.addWidget(self.remove_button)
        side.addWidget(QLabel("<b>Folders</b>"))
        side.addWidget(self.folder_list, 1)
        side.addLayout(buttons)
        return panel

    def _main_panel(self) -> QWidget:
        panel = QWidget()
        column = QVBoxLayout(panel)
        column.setContentsMargins(4, 8, 8, 4)
        column.addLayout(self._banner_row())
        column.addLayout(self._query_row())
        column.addLayout(self._suggestion_row())
        column.addWidget(self._result_pages(), 1)
        return panel

    def _banner_row(self) -> QHBoxLayout:
        self.banner = QLabel(wordWrap=True)
        self.banner.setObjectName("banner")
        self.banner.hide()
        self.rebuild_button = QPushButton("Rebuild index")
        self.rebuild_button.setToolTip(
            "Set the damaged index aside and index your folders again (photos are not touched)"
        )
        self.rebuild_button.hide()
        row = QHBoxLayout()
        row.addWidget(self.banner, 1)
        row.addWidget(self.rebuild_button)
        return row

    def _query_row(self) -> QHBoxLayout:
        self.query_area = QueryArea()
        self.open_button = QPushButton("Open image…")
        self.top_k = QSpinBox(minimum=1, maximum=1000, value=40, suffix=" results")
        self.top_k.setToolTip("How many look-alikes to show")
        self.rank_by = QComboBox()  # filled by ranking.RankByControl
        self.rank_by.setObjectName("rankBy")
        rank_row = QHBoxLayout()
        rank_row.addWidget(QLabel("Rank by"))
        rank_row.addWidget(self.rank_by, 1)
        self.query_info = QLabel(wordWrap=True)
        self.query_info.setObjectName("queryInfo")
        controls = QVBoxLayout()
        controls.addWidget(self.open_button)
        controls.addWidget(self.top_k)
        controls.addLayout(rank_row)
        controls.addWidget(self.query_info)
        controls.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.query_area, 1)
        row.addLayout(controls)
        return row

    def _suggestion_row(self) -> QHBoxLayout:
        self.suggestion = QLabel(wordWrap=True)
        self.suggestion.setObjectName("suggestion")
        self.suggestion.setTextFormat(Qt.TextFormat.RichText)  # escaped by the presenter, the species in bold
        self.suggestion.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.group_by_species = QCheckBox("Group by species")
        self.group_by_species.setToolTip(
            "Show the results in groups of one species each, the group with the most similar photo first;"
            " photos without a species name form their own group"
        )
        row = QHBoxLayout()
        row.addWidget(self.suggestion, 1)
        row.addWidget(self.group_by_species)
        return row

    def _result_pages(self) -> QStackedWidget:
        self.empty_state = QLabel(EMPTY_STATE, wordWrap=True, alignment=Qt.AlignmentFlag.AlignCenter)
        self.empty_state.setObjectName("emptyState")
        self.empty_state.setTextFormat(Qt.TextFormat.RichText)
        self.results_view = ResultsView()
        self.results_view.setObjectName("results")
        self.results_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.empty_state)
        self.pages.addWidget(self.results_view)
        return self.pages

    def _status_widgets(self) -> None:
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(120)
        self.progress_label = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.model_label = QLabel("model: loading…")
        self.model_label.setObjectName("modelLabel")
        self.count_label = QLabel()
        self.time_label = QLabel()
        for widget in self.progress_widgets():
            self.status_bar.addWidget(widget)
            widget.hide()
        for widget in (self.count_label, self.time_label, self.model_label):
            widget.setContentsMargins(8, 0, 8, 0)
            self.status_bar.addPermanentWidget(widget)

    def show_model(self, status: LibraryStatus) -> None:
        """The active model's name and where it runs (CPU or GPU) in the status bar, the detail in its
        tooltip; a long name is shortened in the middle so the status line never runs off the window."""
        gpu = status.provider.startswith("CUDA")
        name = self.model_label.fontMetrics().elidedText(
            status.model.title, Qt.TextElideMode.ElideMiddle, MODEL_NAME_WIDTH
        )
        self.model_label.setText(f"{name} · {'GPU' if gpu else 'CPU'}")
        self.model_label.setToolTip(
            f"model {status.model.title} ({status.bits}-bit codes), id {status.model.id}\n{status.model.path}\n"
            f"search: {status.kind}\nruns on {status.provider}"
        )

    def progress_widgets(self) -> tuple[QWidget, ...]:
        """The status-bar widgets shown only while indexing runs."""
        return (self.progress_label, self.progress, self.cancel_button)

    def show_results_page(self, has_results: bool) -> None:
        """The grid when there are results, else the empty state saying why."""
        if has_results:
            self.pages.setCurrentWidget(self.results_view)
            self.results_view.scrollToTop()
        else:
            self.pages.setCurrentWidget(self.empty_state)
            self.empty_state.setText(NOTHING_INDEXED)
