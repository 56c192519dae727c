"""The window's "Rank by" choice: what a user picks, in words, and the code weight each one searches with.

``RANK_CHOICES`` is the one table from choice to weight (the lead re-tunes the weights here). The
choice is kept per model in the window settings; a codes-only (format 1) model has nothing to choose.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QComboBox

from phpq.fusion import SearchSettings
from phpq.library import LibraryStatus


@dataclass(frozen=True)
class RankChoice:
    key: str  # kept in the settings
    label: str  # shown in the "Rank by" box
    weight: float | None  # the code weight w it searches with; None: the model's own
    meaning: str  # one plain sentence for the tooltip


RANK_CHOICES = (
    RankChoice(
        "known",
        "known species",
        0.8,
        "known species: trusts what the model learned about the species it was trained on (the 200 CUB"
        " species for the bundled model); best when most of your birds are among them",
    ),
    RankChoice(
        "balanced",
        "balanced",
        None,
        "balanced: the model's own settings (Standard's decide per photo whether it knows the species)",
    ),
    RankChoice(
        "any",
        "any bird",
        0.3,
        "any bird: trusts the general look of the bird more than the species the model knows; best for"
        " birds from elsewhere (the Thorough model, in Library > Models…, is better at them still)",
    ),
)
DEFAULT_CHOICE = "balanced"


def choice(key: str) -> RankChoice:
    """The choice saved as ``key`` (the default one for a key this version does not know)."""
    by_key = {rank.key: rank for rank in RANK_CHOICES}
    return by_key.get(key, by_key[DEFAULT_CHOICE])


def rank_tooltip(search: SearchSettings) -> str:
    """What the choices mean, then the technical detail for the active model."""
    if not search.fused:
        return "This model gives codes only (format 1): it ranks by its codes alone, so there is nothing to choose"
    adaptive = search.adaptive
    own = (
        f"per photo {adaptive.low:g} or {adaptive.high:g}, by how far the code and the descriptor agree on it"
        if adaptive is not None
        else f"{search.fusion_weight:g}"
    )
    fixed = ", ".join(f"{rank.label} w = {rank.weight:g}" for rank in RANK_CHOICES if rank.weight is not None)
    lines = [rank.meaning for rank in RANK_CHOICES]
    lines.append(
        f"\nRanking = w × code similarity + (1 − w) × descriptor similarity; {fixed}; balanced: this model's w, {own}"
    )
    return "\n".join(lines)


def ranked_as(weight: float | None, search: SearchSettings | None) -> str:
    """What the weight the model chose for a query says about the bird, in words ("" when the user fixed
    the weight or the model has no per-query weight)."""
    adaptive = search.adaptive if search is not None else None
    if weight is None or adaptive is None:
        return ""
    if weight == adaptive.high:
        return "Looks like a species the model knows"
    return "May be a species the model does not know"


class RankByControl(QObject):
    """The "Rank by" box: filled from ``RANK_CHOICES``, kept per model, says when the user changes it."""

    changed = Signal()

    def __init__(self, box: QComboBox, settings: QSettings, parent: QObject | None = None):
        super().__init__(parent)
        self.box, self.settings = box, settings
        self.key: str | None = None  # settings key of the active model's choice (fused models)
        self.search: SearchSettings | None = None  # how the active model ranks
        for rank in RANK_CHOICES:
            box.addItem(rank.label, rank.key)
        box.setCurrentIndex(box.findData(DEFAULT_CHOICE))
        box.setEnabled(False)  # until the model is known
        box.currentIndexChanged.connect(self._chosen)

    def weight(self) -> float | None:
        """The weight to search with: None for the model's own (balanced, or a codes-only model)."""
        return choice(self.box.currentData()).weight if self.box.isEnabled() else None

    def show_model(self, status: LibraryStatus) -> None:
        """The saved choice of the active model (balanced when none), and what it means."""
        search = self.search = status.search
        self.key = f"rank_by/{status.model.id}" if search.fused else None
        saved = str(self.settings.value(self.key, DEFAULT_CHOICE)) if self.key else DEFAULT_CHOICE
        self.box.blockSignals(True)
        self.box.setCurrentIndex(self.box.findData(choice(saved).key))
        self.box.blockSignals(False)
        self.box.setEnabled(search.fused)
        self.box.setToolTip(rank_tooltip(search))

    def explain(self, weight: float | None) -> str:
        """What the weight a query was ranked with says, when the model chose it for the query."""
        return ranked_as(weight, self.search) if self.weight() is None else ""

    def _chosen(self, _index: int) -> None:
        if self.key is not None:
            self.settings.setValue(self.key, self.box.currentData())
        self.changed.emit()
