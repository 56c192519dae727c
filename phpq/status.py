"""What ``Library.status`` reports: the index, the active model and the kind of search it gives."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from phpq.db import FolderRecord, ModelRecord
from phpq.fusion import SearchSettings
from phpq.zoom import Zoom


@dataclass(frozen=True)
class LibraryStatus:
    """The index file, its folders and counts, and the active model with how it ranks."""

    database: Path
    schema_version: int
    model: ModelRecord
    provider: str
    bits: int
    folders: list[FolderRecord]
    images: int
    indexed: int
    pending: int
    errors: int
    search: SearchSettings  # how the active model ranks
    zoom: Zoom | None = None  # when the active model encodes a photo again around a small bird

    @property
    def kind(self) -> str:
        """Which kind of search the active model gives, in words."""
        parts = [self.search.describe()]
        general = json.loads(self.model.metadata.get("general_descriptor") or "{}")
        if general.get("from") == "trained_head":  # phpq_train.general.HeadGeneralDescriptor
            parts.append("with a general view of each photo, learned from the untrained network")
        elif general:
            parts.append("with the untrained network's view of each photo")
        if self.zoom is not None and self.zoom.max_side >= 1.0:
            parts.append("every photo encoded whole and around the bird")
        elif self.zoom is not None:
            parts.append(f"zooms in on small birds (up to {self.zoom.max_side:.0%} of the frame)")
        return "; ".join(parts)
