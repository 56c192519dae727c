"""Species labels in the index: from folder names (a folder added with ``species_from_folders``) and by
hand. Labels are rows of the index keyed by each photo's content hash (``phpq.db``); the photos
themselves are never touched."""

from __future__ import annotations

import logging
from pathlib import Path

from phpq.db import EncodedImage, FolderRecord, IndexDatabase
from phpq.errors import LibraryError
from phpq.index import FolderChanges, IndexListener
from phpq.prototypes import display_name

log = logging.getLogger(__name__)


def apply_folder_labels(db: IndexDatabase, folders: list[FolderRecord]) -> int:
    """Label every known photo of the folders that take species from folder names with its parent
    folder's name (labels given by hand stay); returns the photos labelled."""
    labels = [
        (digest, display_name(Path(path).parent.name))
        for folder in folders
        if folder.species_from_folders
        for path, digest in db.images_under(folder.path)
    ]
    db.set_labels(labels, by_hand=False)
    return len(labels)


class FolderLabeller:
    """An indexing run's listener that labels a species folder's photos as soon as the folder is synced
    (before they are encoded), and passes every change on to ``listener``."""

    def __init__(self, db: IndexDatabase, folders: list[FolderRecord], listener: IndexListener):
        self.db = db
        self.folders = {folder.id: folder for folder in folders}
        self.listener = listener

    def folder_synced(self, changes: FolderChanges) -> None:
        self.listener.folder_synced(changes)
        apply_folder_labels(self.db, [self.folders[changes.folder_id]])

    def images_removed(self, image_ids: list[int]) -> None:
        self.listener.images_removed(image_ids)

    def encoded_stored(self, model_id: str, results: list[EncodedImage]) -> None:
        self.listener.encoded_stored(model_id, results)


def restore_labels(db: IndexDatabase, labels: list[tuple[str, str, bool]]) -> None:
    """Put back labels salvaged from another index (``IndexDatabase.salvage_labels``)."""
    for by_hand in (False, True):
        db.set_labels([(digest, species) for digest, species, hand in labels if hand == by_hand], by_hand)


def label_paths(db: IndexDatabase, paths: list[Path], species: str | None, model_id: str) -> int:
    """Label (``species`` None: clear) the indexed photos at these paths, a folder meaning every photo
    under it; returns the photos labelled. Paths that are not indexed are logged and skipped; when none
    is, a LibraryError says so."""
    if species is not None and not species.strip():
        raise LibraryError("a species name cannot be empty")
    digests: list[str] = []
    unknown: list[Path] = []
    for path in paths:
        resolved = Path(path).expanduser().resolve()
        record = None if resolved.is_dir() else db.image_by_path(resolved, model_id)
        found = [record.hash] if record is not None else [digest for _, digest in db.images_under(resolved)]
        digests.extend(digest for digest in found if digest)
        if not found:
            unknown.append(Path(path))
    if unknown:
        message = f"not in the index (add its folder first): {', '.join(str(path) for path in unknown)}"
        if not digests:
            raise LibraryError(message)
        log.warning(message)
    name = "" if species is None else species.strip()  # "" by hand: cleared, and no folder name comes back
    db.set_labels([(digest, name) for digest in digests], by_hand=True)
    return len(digests)
