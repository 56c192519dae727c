"""The files beside an index: its writer lock, and the folder list that ``rebuild`` starts again from.

The folder list is a small JSON file next to the database, kept current by every add and remove, so a
damaged index can be rebuilt with the same folders even when nothing can be read from it any more.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from phpq.db import IndexDatabase
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


def save_folder_list(database: Path, folders: list[Path]) -> None:
    """Write the folder list next to the index (atomically); a failure is logged, not raised."""
    target = folder_list_path(database)
    partial = target.with_suffix(".partial")
    try:
        partial.write_text(json.dumps([str(folder) for folder in folders], indent=1))
        partial.replace(target)
    except OSError as error:
        log.warning("folder list not saved: %s", error)


def remembered_folders(database: Path) -> list[Path]:
    """The folders of an index: from its folder list, else from the (damaged) file if it reads."""
    try:
        return [Path(path) for path in json.loads(folder_list_path(database).read_text())]
    except (OSError, ValueError):
        return IndexDatabase.salvage_folder_paths(database)


def set_aside(database: Path) -> list[Path]:
    """Rename a damaged index (with its WAL files) to ``*.damaged-<time>`` and return its folders.

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
