"""The files beside an index: its writer lock, and the folder list that ``rebuild`` starts again from.

The folder list is a small JSON file next to the database, kept current by every add and remove, so a
damaged index can be rebuilt with the same folders even when nothing can be read from it any more.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from phpq.db import FolderRecord, IndexDatabase
from phpq.errors import ReadOnlyError
from phpq.instance import WriterLock

log = logging.getLogger(__name__)

FOLDER_LIST_SUFFIX = ".folders.json"


def folder_list_path(database: Path) -> Path:
    return database.with_name(database.name + FOLDER_LIST_SUFFIX)


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


def take_writer_lock(database: Path) -> tuple[WriterLock, str | None]:
    """The index's writer lock, and None when this process holds it, else why the index is read-only."""
    lock = WriterLock(lock_path(database))
    try:
        if lock.acquire():
            return lock, None
        return lock, "another PHPQ Search (a window or a `phpq` command) is using it"
    except OSError as error:  # a read-only data directory: reading an existing index still works
        return lock, f"its folder {database.parent} cannot be written ({error.strerror or error})"


def has_folder_list(database: Path) -> bool:
    return folder_list_path(database).exists()


def save_folder_list(database: Path, folders: list[FolderRecord]) -> None:
    """Write the folder list next to the index (atomically); a failure is logged, not raised. A folder
    whose sub-folder names are species is an object ``{"path", "species_from_folders"}``, any other its path."""
    target = folder_list_path(database)
    partial = target.with_suffix(".partial")
    entries = [
        {"path": str(folder.path), "species_from_folders": True} if folder.species_from_folders else str(folder.path)
        for folder in folders
    ]
    try:
        partial.write_text(json.dumps(entries, indent=1))
        partial.replace(target)
    except OSError as error:
        log.warning("folder list not saved: %s", error)


def remembered_folders(database: Path) -> list[tuple[Path, bool]]:
    """The folders of an index, each with whether its sub-folder names are species: from its folder
    list, else from the (damaged) file if it reads (no species folders then)."""
    try:
        entries = json.loads(folder_list_path(database).read_text())
        return [_folder_entry(entry) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError):
        return [(path, False) for path in IndexDatabase.salvage_folder_paths(database)]


def _folder_entry(entry: str | dict) -> tuple[Path, bool]:
    """One entry of the folder list: a path, or ``{"path", "species_from_folders"}``."""
    if isinstance(entry, str):
        return Path(entry), False
    return Path(entry["path"]), bool(entry["species_from_folders"])


def set_aside(database: Path) -> list[tuple[Path, bool]]:
    """Rename a damaged index (with its WAL files) to ``*.damaged-<time>`` and return its folders (with
    whether their sub-folder names are species).

    Refused while another PHPQ Search holds the writer lock."""
    lock = WriterLock(lock_path(database))
    if not lock.acquire():
        raise ReadOnlyError(f"{database} is in use by another PHPQ Search; close it, then rebuild")
    try:
        folders = remembered_folders(database)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            damaged = database.with_name(database.name + suffix)
            if damaged.exists():
                damaged.replace(damaged.with_name(f"{damaged.name}.damaged-{stamp}"))
        return folders
    finally:
        lock.release()
