"""The window's "Rank by" box over ``phpq.ranking``'s choices: the tooltip that explains them, what the
model's per-query weight said about a bird, and the box itself. The choice is kept per model in the
window settings; a codes-only (format 1) model has nothing to choose.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QComboBox

from phpq.fusion import SearchSettings, SearchSteps
from phpq.library import LibraryStatus
from phpq.ranking import DEFAULT_CHOICE, RANK_CHOICES, choice


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
    fixed = ", ".join(
        f"{rank.label} w = {rank.weight:g}{'' if rank.steps is None else f' ({rank.steps.describe()})'}"
        for rank in RANK_CHOICES
        if rank.weight is not None
    )
    lines = [rank.meaning for rank in RANK_CHOICES]
    lines.append(
        f"\nRanking = w × code similarity + (1 − w) × descriptor similarity; {fixed}; balanced: this model's w, {own}"
    )
    if search.gate is not None:
        gate = search.gate
        lines.append(
            f"Balanced, where fewer than {gate.fraction:.1%} of your photos look like a species the model was trained"
            f" on (probability {gate.probability:g} or more): w = {gate.weight:g}, as any bird ranks"
        )
    return "\n".join(lines)


def ranked_as(weight: float | None, search: SearchSettings | None, known_species: bool | None = None) -> str:
    """What the model's own ranking of a query says, in words: how its collection gate judged the collection
    (``known_species``), else what the weight it chose says about the bird ("" when the user fixed the weight
    or the model has neither)."""
    if known_species is False:
        return "Mostly species the model was not trained on: ranked as for any bird"
    adaptive = search.adaptive if search is not None else None
    if weight is None or adaptive is None:
        return ""
    if weight == adaptive.high:
        return "Looks like a species the model knows"
    return "May be a species the model does not know (Rank by: any bird may suit it better)"


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

    def steps(self) -> SearchSteps | None:
        """The steps after the first scan to search with: None for the model's own."""
        return choice(self.box.currentData()).steps if self.box.isEnabled() else None

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

    def explain(self, weight: float | None, known_species: bool | None = None) -> str:
        """What the model's own ranking of a query says (its weight, its gate's choice), when it chose them."""
        return ranked_as(weight, self.search, known_species) if self.weight() is None else ""

    def _chosen(self, _index: int) -> None:
        if self.key is not None:
            self.settings.setValue(self.key, self.box.currentData())
        self.changed.emit()
