"""Showing a query's answer: the look-alikes in the grid (flat or grouped by species), the species
suggestion line above them, and the result count and query time.

The presenter only shows what a search or an identification returned; ``SearchController`` runs them.
"""

from __future__ import annotations

import html
import logging

from PySide6.QtCore import QObject, QSettings
from PySide6.QtWidgets import QWidget

from phpq.db import PhotoSize
from phpq.gui.controller import Controller
from phpq.gui.layout import WindowLayout
from phpq.gui.models import ResultsModel
from phpq.gui.ranking import RankByControl
from phpq.gui.style import set_style_flag
from phpq.gui.workers import TaskRunner, ThumbnailLoader
from phpq.search import SearchResult
from phpq.species import Identification, Suggestion, group_by_species
from phpq.thumbnails import ThumbnailCache

log = logging.getLogger(__name__)

GROUP_SETTING = "group_by_species"
NO_SUGGESTION = (
    "No species to suggest yet: name some photos (right-click › Name species…), or add a folder with"
    " “Name photos by their folders”"
)


def suggestion_tooltip(identification: Identification) -> str:
    """Every suggestion with where it comes from, its confidence and its evidence."""
    sources = {"labels": "your named photos", "model": "the model"}
    return "\n".join(
        f"{suggestion.species}: {suggestion.evidence} (from {sources.get(suggestion.source, suggestion.source)},"
        f" {round(100 * suggestion.confidence)} %{'' if suggestion.confident else ', not sure'})"
        for suggestion in identification.suggestions
    )


def best_suggestion(identification: Identification) -> Suggestion | None:
    """The suggestion the line leads with: the first confident one, else none."""
    return next((suggestion for suggestion in identification.suggestions if suggestion.confident), None)


class ResultsPresenter(Controller):
    """Shows results and suggestions; remembers the last result so the group toggle can show it again."""

    def __init__(
        self,
        ui: WindowLayout,
        tasks: TaskRunner,
        settings: QSettings,
        rank_by: RankByControl,
        parent: QWidget | None = None,
    ):
        super().__init__(ui, tasks, parent)
        self.settings, self.rank_by = settings, rank_by
        self.model: ResultsModel | None = None
        self.shown: SearchResult | None = None
        ui.group_by_species.setChecked(settings.value(GROUP_SETTING, False, type=bool))
        ui.group_by_species.toggled.connect(self._group_toggled)

    def attach(self, thumbnails: ThumbnailCache, owner: QObject) -> None:
        """Thumbnails come from ``thumbnails`` from now on (``owner`` keeps the loader)."""
        self.model = ResultsModel(ThumbnailLoader(thumbnails, owner), icon_size=160)
        self.ui.results_view.setModel(self.model)

    def wait(self, milliseconds: int) -> None:
        """Wait for the thumbnail loader's threads (the window is closing)."""
        if self.model is not None:
            self.model.loader.runner.wait(milliseconds)

    def clear_suggestion(self) -> None:
        """A new query: the previous photo's suggestion no longer applies."""
        self.ui.suggestion.clear()
        self.ui.suggestion.setToolTip("")

    def show_identification(self, identification: Identification) -> None:
        """The suggestion line: "Probably X: evidence", "Not sure: X or Y", or how to get suggestions."""
        summary = identification.summary()
        set_style_flag(self.ui.suggestion, "hint", not summary)
        best = best_suggestion(identification)
        text = html.escape(summary or NO_SUGGESTION)
        if best is not None:  # the species in bold, the evidence after it
            name = html.escape(best.species)
            text = text.replace(name, f"<b>{name}</b>", 1)
        self.ui.suggestion.setText(text)
        self.ui.suggestion.setToolTip(suggestion_tooltip(identification))

    def show(self, result: SearchResult) -> None:
        """A search's results in the grid, with the count and the time it took."""
        self.shown = result
        self._fill_grid()
        total = sum(result.timings_ms.values())
        self.ui.time_label.setText(f"query {total:.0f} ms")
        self.ui.time_label.setToolTip(", ".join(f"{key} {value:.1f} ms" for key, value in result.timings_ms.items()))
        ranked_as = self.rank_by.explain(result.weight, result.known_species)
        count = f"{len(result.hits)} of {result.n_searched:,} photos"
        self.ui.query_info.setText(f"{count}\n{ranked_as}" if ranked_as else count)
        self.ui.query_info.setToolTip("" if result.weight is None else f"ranked with code weight w = {result.weight:g}")
        self.ui.show_results_page(bool(result.hits))

    def _fill_grid(self) -> None:
        """The shown result's hits, grouped by species when the toggle is on; their sizes fetched after."""
        result, model, library = self.shown, self.model, self.library
        if result is None or model is None:
            return
        groups = group_by_species(result.hits) if self.ui.group_by_species.isChecked() else None
        generation = model.set_hits(result.hits, groups)
        if result.hits and library is not None:
            self.tasks.start(
                library.photo_sizes,
                [hit.image_id for hit in result.hits],
                done=lambda sizes: self._set_sizes(generation, sizes),
                failed=lambda error: log.info("no photo sizes: %s", error),
            )

    def _set_sizes(self, generation: int, sizes: dict[int, PhotoSize]) -> None:
        if self.model is not None:
            self.model.set_sizes(generation, sizes)

    def _group_toggled(self, grouped: bool) -> None:
        self.settings.setValue(GROUP_SETTING, grouped)
        self._fill_grid()
        self.ui.results_view.scrollToTop()
