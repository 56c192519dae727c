"""Naming species by hand: *Name species…* and *Clear species name* on a photo or a selection.

The names already in the index are offered in the dialog (fetched off the GUI thread); the label is
written by a worker, and the search shown is run again so its captions, groups and suggestion follow.
The photos themselves are never touched.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QInputDialog

from phpq.gui.captions import photos_text
from phpq.gui.controller import Controller


class NamingController(Controller):
    """Asks for a species name and labels (or clears) photos with it."""

    labelled = Signal(int)  # photos labelled or cleared; the results shown should be fetched again

    def ask(self, paths: list[Path], current: str | None = None) -> None:
        """Fetch the names in use, then ask which species these photos show."""
        if self.library is None or not paths:
            return
        self.tasks.start(
            self.library.species,
            done=lambda counts: self._ask(paths, current, list(counts)),
            failed=self.failed("Name species"),
        )

    def _ask(self, paths: list[Path], current: str | None, names: list[str]) -> None:
        choices = sorted(names, key=str.casefold)
        position = choices.index(current) if current in choices else -1
        if position < 0:
            choices.insert(0, current or "")
            position = 0
        name, accepted = QInputDialog.getItem(
            self.dialog_parent,
            "Name species",
            f"Which species do {'these' if len(paths) > 1 else 'this'} {photos_text(len(paths))} show?",
            choices,
            position,
            True,
        )
        if accepted and name.strip():
            self.name(paths, name.strip())

    def name(self, paths: list[Path], species: str | None) -> None:
        """Label the photos ``species`` (None: clear their labels) on a worker thread."""
        if self.library is None:
            return

        def done(count: int) -> None:
            what = f"named {species}" if species is not None else "no longer named"
            self.ui.status_bar.showMessage(f"{photos_text(count)} {what}", 8000)
            self.labelled.emit(count)

        self.tasks.start(self.library.label, paths, species, done=done, failed=self.failed("Name species"))
