"""The index database: one SQLite file (WAL) holding folders, photos, models, and PQ codes and
descriptors per model.

Photos are never stored, only their paths, change-detection fields, codes and descriptors. All
access goes through ``IndexDatabase``, which serialises use of its one connection with a lock so that
an indexing thread and a searching thread can share it; other processes see committed batches through WAL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils
from sqlite_utils import Migrations

MIGRATIONS = Migrations("phpq-search")


@MIGRATIONS()
def m001_initial(db: sqlite_utils.Database) -> None:
    _execute_statements(
        db,
        """
        CREATE TABLE folders (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            added REAL NOT NULL,
            scanned REAL
        );
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
            path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            hash TEXT NOT NULL,
            width INTEGER,
            height INTEGER,
            error TEXT
        );
        CREATE INDEX images_folder ON images(folder_id);
        CREATE INDEX images_hash ON images(hash);
        CREATE TABLE models (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            metadata TEXT NOT NULL,
            added REAL NOT NULL
        );
        CREATE TABLE codes (
            model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            code BLOB NOT NULL,
            PRIMARY KEY (model_id, image_id)
        ) WITHOUT ROWID;
        CREATE INDEX codes_image ON codes(image_id);
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """,
    )


@MIGRATIONS()
def m002_descriptors(db: sqlite_utils.Database) -> None:
    """Format-2 models: each photo's general-purpose descriptor beside its code (see phpq.descriptor).

    Keyed by image first, so deleting a photo (cascade) and loading a model's descriptors (a lookup per
    code) use the primary key, and no second index costs bytes per photo (bench/storage.py)."""
    _execute_statements(
        db,
        """
        CREATE TABLE descriptors (
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            model_id TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            vector BLOB NOT NULL,
            PRIMARY KEY (image_id, model_id)
        ) WITHOUT ROWID;
        """,
    )


@MIGRATIONS()
def m003_species_labels(db: sqlite_utils.Database) -> None:
    """Species labels, keyed by a photo's content hash (``phpq.index.content_hash``), so a label follows
    its photo through renames and moves (even across runs) and byte-identical copies share it; ``by_hand``
    marks a label a user gave (species "": cleared by hand), which a folder name never overrides. A
    folder remembers whether its sub-folder names are species. One transaction: a crash leaves the
    schema before or after, whole."""
    _execute_statements(
        db,
        """
        CREATE TABLE labels (
            hash TEXT PRIMARY KEY,
            species TEXT NOT NULL,
            by_hand INTEGER NOT NULL
        ) WITHOUT ROWID;
        ALTER TABLE folders ADD COLUMN species_from_folders INTEGER NOT NULL DEFAULT 0;
        """,
    )


SCHEMA_VERSION = len(MIGRATIONS._migrations)


class DatabaseError(Exception):
    """The index database cannot be opened or used; the message says why."""


@dataclass(frozen=True)
class FolderRecord:
    id: int
    path: Path
    n_images: int
    n_errors: int
    scanned: float | None
    species_from_folders: bool = False  # each photo's parent folder name is its species label


@dataclass(frozen=True)
class ImageRecord:
    """What the database knows of one photo file (``has_code`` for the model asked about)."""

    id: int
    folder_id: int
    path: str
    size: int
    mtime_ns: int
    hash: str
    error: str | None
    has_code: bool


@dataclass(frozen=True)
class ModelRecord:
    id: str
    name: str
    path: Path
    metadata: dict[str, str]
    added: float

    @property
    def title(self) -> str:
        """What a user calls the model: the title its export gave it (``phpq-export --title``), else its
        file's name."""
        return self.metadata.get("title") or self.name

    @property
    def summary(self) -> str:
        """What the model is good for, in a user's words (``phpq-export --summary``; may be empty)."""
        return self.metadata.get("summary", "")


@dataclass(frozen=True)
class EncodedImage:
    """An indexing result for one photo: a code (and a format-2 model's descriptor blob), or the reason
    it could not be read."""

    image_id: int
    code: bytes | None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    descriptor: bytes | None = None


@dataclass(frozen=True)
class PhotoSize:
    """A photo's pixel size (None when it could not be read) and its file size in bytes."""

    width: int | None
    height: int | None
    bytes: int


@dataclass(frozen=True)
class StoredEncodings:
    """Every code of one model with its photo's ids, and the descriptor blobs (None where a photo has none)."""

    image_ids: np.ndarray  # [N] int64
    folder_ids: np.ndarray  # [N] int64
    codes: np.ndarray  # [N, M] uint8
    descriptors: list[bytes | None]


class DamagedDatabaseError(DatabaseError):
    """The index file is damaged or is not an index; ``phpq rebuild`` makes a new one from the folders."""


REBUILD_HINT = "run `phpq rebuild` (or Rebuild in the window) to build it again from your folders; no photo is touched"


class IndexDatabase:
    """The SQLite index. Thread-safe: every method holds the connection's lock.

    ``read_only`` opens the file without writing anything (another instance holds the writer lock).
    """

    def __init__(self, path: Path, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self.lock = threading.RLock()
        try:
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            uri = f"{self.path.resolve().as_uri()}?mode={'ro' if read_only else 'rwc'}"
            connection = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10.0, isolation_level=None)
        except (sqlite3.Error, OSError) as error:
            raise DatabaseError(f"cannot create or open the index in {self.path.parent}: {_reason(error)}") from error
        try:
            self.db = sqlite_utils.Database(connection, execute_plugins=False)
            self.db.execute("PRAGMA busy_timeout = 10000")
            self._check_ownership()
            if not read_only:
                self.db.execute("PRAGMA foreign_keys = ON")
                self.db.enable_wal()
                self.db.execute("PRAGMA synchronous = NORMAL")
                self._migrate()
            self._check_integrity()
        except DatabaseError:
            connection.close()
            raise
        except sqlite3.DatabaseError as error:
            connection.close()
            raise self._explained(error) from error

    def _explained(self, error: sqlite3.DatabaseError) -> DatabaseError:
        """SQLite's error as one that says what to do (a damaged file, a full disk, a read-only file)."""
        message = str(error)
        if "not a database" in message or "malformed" in message or "corrupt" in message:
            return DamagedDatabaseError(f"the index {self.path} is damaged ({message}); {REBUILD_HINT}")
        if "full" in message:
            return DatabaseError(f"the disk holding {self.path} is full; the index keeps what was saved before")
        if "readonly" in message or "read-only" in message:
            return DatabaseError(f"the index {self.path} cannot be written: {message}")
        return DatabaseError(f"the index {self.path} failed: {message}")

    def _check_ownership(self) -> None:
        """Refuse a SQLite file of another program rather than adding our tables to it."""
        tables = set(self.db.table_names())
        ours = bool(tables) and Migrations.migrations_table in tables and MIGRATIONS.applied(self.db)
        if tables and not ours:
            raise DamagedDatabaseError(
                f"{self.path} is a database of another program, not a PHPQ Search index; it was not changed."
                " Choose another file with --db, or move it away"
            )

    def _check_integrity(self) -> None:
        problem = self.db.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise DamagedDatabaseError(f"the index {self.path} is damaged ({problem}); {REBUILD_HINT}")

    def _migrate(self) -> None:
        applied = {migration.name for migration in MIGRATIONS.applied(self.db)}
        unknown = applied - {migration.name for migration in MIGRATIONS._migrations}
        if unknown:
            raise DatabaseError(
                f"{self.path} was written by a newer PHPQ Search (schema steps {sorted(unknown)}); update the app"
            )
        MIGRATIONS.apply(self.db)

    @property
    def schema_version(self) -> int:
        with self.lock:
            return len(MIGRATIONS.applied(self.db))

    def close(self) -> None:
        with self.lock:
            self.db.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One atomic write (a batch); nested calls become savepoints. SQLite's errors become
        DatabaseErrors that say what to do (a full disk, a damaged file, a read-only index)."""
        if self.read_only:
            raise DatabaseError(f"{self.path} is open read-only (another PHPQ Search is using it)")
        with self.lock:
            try:
                with self.db.atomic():
                    yield self.db
            except sqlite3.DatabaseError as error:
                raise self._explained(error) from error

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits to this database."""
        with self.lock:
            return self.db.execute("PRAGMA data_version").fetchone()[0]

    # Settings -------------------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db["settings"].upsert({"key": key, "value": value}, pk="key")

    # Folders --------------------------------------------------------------------------------------

    def add_folder(self, path: Path, absorb: Iterable[int] = ()) -> int:
        """Register a folder (idempotent) and move the photos of the folders in ``absorb`` into it."""
        with self.transaction() as db:
            row = db.execute("SELECT id FROM folders WHERE path = ?", [str(path)]).fetchone()
            folder_id = row[0] if row else db["folders"].insert({"path": str(path), "added": time.time()}).last_pk
            for child in absorb:
                db.execute("UPDATE images SET folder_id = ? WHERE folder_id = ?", [folder_id, child])
                db.execute("DELETE FROM folders WHERE id = ?", [child])
            return folder_id

    def remove_folder(self, folder_id: int) -> None:
        """Forget a folder with its photos and their codes (cascade). The files are not touched."""
        with self.transaction() as db:
            db.execute("DELETE FROM folders WHERE id = ?", [folder_id])

    def mark_scanned(self, folder_id: int) -> None:
        with self.transaction() as db:
            db.execute("UPDATE folders SET scanned = ? WHERE id = ?", [time.time(), folder_id])

    def folders(self) -> list[FolderRecord]:
        with self.lock:
            rows = list(
                self.db.query(
                    """
                    SELECT f.id AS id, f.path AS path, COUNT(i.id) AS n_images, COUNT(i.error) AS n_errors,
                           f.scanned AS scanned, f.species_from_folders AS species_from_folders
                    FROM folders f LEFT JOIN images i ON i.folder_id = f.id
                    GROUP BY f.id ORDER BY f.path
                    """
                )
            )
        return [
            FolderRecord(
                **{**row, "path": Path(row["path"]), "species_from_folders": bool(row["species_from_folders"])}
            )
            for row in rows
        ]

    def set_species_from_folders(self, folder_id: int, enabled: bool) -> None:
        with self.transaction() as db:
            db.execute("UPDATE folders SET species_from_folders = ? WHERE id = ?", [int(enabled), folder_id])

    @staticmethod
    def salvage_folder_paths(path: Path) -> list[Path]:
        """The folder paths still readable from an index file that may be damaged; [] when none."""
        return [Path(row[0]) for row in _salvaged_rows(path, "SELECT path FROM folders")]

    @staticmethod
    def salvage_labels(path: Path) -> list[tuple[str, str, bool]]:
        """The species labels (content hash, species, given by hand) still readable from an index file
        that may be damaged; [] when none."""
        return [
            (row[0], row[1], bool(row[2])) for row in _salvaged_rows(path, "SELECT hash, species, by_hand FROM labels")
        ]

    # Images ---------------------------------------------------------------------------------------

    def _image_records(self, where: str, params: list) -> list[ImageRecord]:
        """The rows of ``_IMAGE_SELECT`` + ``where`` as records, built by the SELECT's column names."""
        rows = self.db.query(_IMAGE_SELECT + where, params)
        return [ImageRecord(**{**row, "has_code": bool(row["has_code"])}) for row in rows]

    def images_in_folder(self, folder_id: int, model_id: str) -> dict[str, ImageRecord]:
        with self.lock:
            records = self._image_records(" WHERE i.folder_id = ?", [model_id, folder_id])
        return {record.path: record for record in records}

    def images_with_hash(self, content_hash: str, size: int, model_id: str) -> list[ImageRecord]:
        with self.lock:
            return self._image_records(" WHERE i.hash = ? AND i.size = ?", [model_id, content_hash, size])

    def image_by_path(self, path: Path, model_id: str) -> ImageRecord | None:
        with self.lock:
            records = self._image_records(" WHERE i.path = ?", [model_id, str(path)])
        return records[0] if records else None

    def insert_image(
        self, folder_id: int, path: str, size: int, mtime_ns: int, content_hash: str, error: str | None = None
    ) -> int:
        with self.transaction() as db:
            record = {"folder_id": folder_id, "path": str(path), "size": size, "mtime_ns": mtime_ns}
            return db["images"].insert({**record, "hash": content_hash, "error": error}).last_pk

    def update_file(
        self,
        image_id: int,
        size: int,
        mtime_ns: int,
        content_hash: str,
        content_changed: bool,
        error: str | None = None,
    ) -> None:
        """New size/mtime for a file; when its content changed, its codes are dropped and ``error`` set,
        and its species label goes with it to the new content."""
        with self.transaction() as db:
            if content_changed and content_hash:
                db.execute(
                    "INSERT OR IGNORE INTO labels (hash, species, by_hand) SELECT ?, species, by_hand FROM labels"
                    " WHERE hash = (SELECT hash FROM images WHERE id = ?)",
                    [content_hash, image_id],
                )
            db.execute(
                "UPDATE images SET size = ?, mtime_ns = ?, hash = ? WHERE id = ?",
                [size, mtime_ns, content_hash, image_id],
            )
            if content_changed:
                db.execute("UPDATE images SET error = ?, width = NULL, height = NULL WHERE id = ?", [error, image_id])
                db.execute("DELETE FROM codes WHERE image_id = ?", [image_id])
                db.execute("DELETE FROM descriptors WHERE image_id = ?", [image_id])

    def move_image(self, image_id: int, folder_id: int, path: str, mtime_ns: int) -> None:
        """A renamed or moved file keeps its row, and so its codes."""
        with self.transaction() as db:
            db.execute(
                "UPDATE images SET folder_id = ?, path = ?, mtime_ns = ? WHERE id = ?",
                [folder_id, str(path), mtime_ns, image_id],
            )

    def delete_images(self, image_ids: Iterable[int]) -> None:
        ids = list(image_ids)
        with self.transaction() as db:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                db.execute(f"DELETE FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def store_encoded(self, model_id: str, results: Iterable[EncodedImage]) -> None:
        """Write one batch of indexing results atomically (codes and descriptors together)."""
        results = list(results)
        with self.transaction() as db:
            db.conn.executemany(
                "UPDATE images SET width = ?, height = ?, error = ? WHERE id = ?",
                [(r.width, r.height, r.error, r.image_id) for r in results],
            )
            db.conn.executemany(
                "INSERT OR REPLACE INTO codes (model_id, image_id, code) VALUES (?, ?, ?)",
                [(model_id, r.image_id, r.code) for r in results if r.code is not None],
            )
            db.conn.executemany(
                "INSERT OR REPLACE INTO descriptors (model_id, image_id, vector) VALUES (?, ?, ?)",
                [(model_id, r.image_id, r.descriptor) for r in results if r.descriptor is not None],
            )

    def paths(self, image_ids: Iterable[int]) -> dict[int, Path]:
        return {image_id: Path(path) for image_id, path in self._columns_by_id("path", image_ids)}

    def photo_sizes(self, image_ids: Iterable[int]) -> dict[int, PhotoSize]:
        """Pixel and file sizes by image id (ids not in the index are left out)."""
        return {row[0]: PhotoSize(*row[1:]) for row in self._columns_by_id("width, height, size", image_ids)}

    def folder_ids(self, image_ids: Iterable[int]) -> dict[int, int]:
        return dict(self._columns_by_id("folder_id", image_ids))

    def _columns_by_id(self, column: str, image_ids: Iterable[int]) -> list[tuple]:
        """Rows (id, *columns) of these images, 500 ids a query; ``column`` is a fixed fragment naming
        one or more columns."""
        ids = list(image_ids)
        rows: list[tuple] = []
        with self.lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = f"SELECT id, {column} FROM images WHERE id IN ({','.join('?' * len(chunk))})"
                rows.extend(self.db.execute(query, chunk).fetchall())
        return rows

    def errors(self, folder_id: int | None = None, limit: int | None = None) -> list[tuple[Path, str]]:
        """Files that could not be read and why (of one folder, or of all)."""
        where = "error IS NOT NULL" + ("" if folder_id is None else " AND folder_id = ?")
        parameters = ([] if folder_id is None else [folder_id]) + [limit or -1]
        with self.lock:
            rows = self.db.execute(
                f"SELECT path, error FROM images WHERE {where} ORDER BY path LIMIT ?", parameters
            ).fetchall()
        return [(Path(row[0]), row[1]) for row in rows]

    def counts(self, model_id: str) -> dict[str, int]:
        with self.lock:
            images, errors = self.db.execute("SELECT COUNT(*), COUNT(error) FROM images").fetchone()
            coded = self.db.execute("SELECT COUNT(*) FROM codes WHERE model_id = ?", [model_id]).fetchone()[0]
        return {"images": images, "errors": errors, "indexed": coded, "pending": images - errors - coded}

    def load_encodings(self, model_id: str) -> StoredEncodings:
        """All codes of one model in one query, with each photo's folder and descriptor."""
        with self.lock:
            rows = self.db.execute(
                """
                SELECT c.image_id, i.folder_id, c.code, d.vector
                FROM codes c JOIN images i ON i.id = c.image_id
                LEFT JOIN descriptors d ON d.model_id = c.model_id AND d.image_id = c.image_id
                WHERE c.model_id = ? ORDER BY c.image_id
                """,
                [model_id],
            ).fetchall()
        if not rows:
            return StoredEncodings(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.uint8), [])
        image_ids = np.fromiter((row[0] for row in rows), np.int64, len(rows))
        folder_ids = np.fromiter((row[1] for row in rows), np.int64, len(rows))
        codes = np.frombuffer(b"".join(row[2] for row in rows), np.uint8).reshape(len(rows), -1)
        return StoredEncodings(image_ids, folder_ids, codes, [row[3] for row in rows])

    # Species labels -------------------------------------------------------------------------------

    def set_labels(self, labels: Iterable[tuple[str, str]], by_hand: bool = True) -> None:
        """Label photos, given as (content hash, species) pairs; species "" by hand is a label cleared by
        hand (``labels`` reads it as none), which, like any label given by hand, a folder's label
        (``by_hand`` False) never replaces. An unread photo's empty hash is never labelled."""
        rows = [(digest, species, int(by_hand)) for digest, species in labels if digest != ""]
        if not rows:
            return
        with self.transaction() as db:
            db.conn.executemany(
                """
                INSERT INTO labels (hash, species, by_hand) VALUES (?, ?, ?)
                ON CONFLICT (hash) DO UPDATE SET species = excluded.species, by_hand = excluded.by_hand
                WHERE excluded.by_hand OR NOT labels.by_hand
                """,
                rows,
            )

    def labels(self, image_ids: Iterable[int]) -> dict[int, str]:
        """The species label of each of these photos that has one."""
        rows = self._columns_by_id("(SELECT NULLIF(species, '') FROM labels l WHERE l.hash = images.hash)", image_ids)
        return {image_id: species for image_id, species in rows if species is not None}

    def species_counts(self) -> dict[str, int]:
        """Each species label with the number of indexed photos that carry it, most photos first."""
        with self.lock:
            rows = self.db.execute(
                "SELECT l.species, COUNT(*) AS n FROM images i JOIN labels l ON l.hash = i.hash"
                " WHERE l.species != '' GROUP BY l.species ORDER BY n DESC, l.species"
            ).fetchall()
        return dict(rows)

    def images_under(self, folder: Path) -> list[tuple[str, str]]:
        """(path, content hash) of the known photos anywhere under ``folder``."""
        prefix = str(folder).rstrip("/\\") + os.sep
        with self.lock:
            rows = self.db.execute(
                "SELECT path, hash FROM images WHERE substr(path, 1, ?) = ?", [len(prefix), prefix]
            ).fetchall()
        return [(row[0], row[1]) for row in rows]

    # Models ---------------------------------------------------------------------------------------

    def add_model(self, model_id: str, name: str, path: Path, metadata: dict[str, str]) -> None:
        with self.transaction() as db:
            record = {"id": model_id, "name": name, "path": str(path), "metadata": json.dumps(metadata)}
            db["models"].upsert({**record, "added": time.time()}, pk="id")

    def models(self) -> list[ModelRecord]:
        with self.lock:
            rows = self.db.execute("SELECT id, name, path, metadata, added FROM models ORDER BY added").fetchall()
        return [ModelRecord(row[0], row[1], Path(row[2]), json.loads(row[3]), row[4]) for row in rows]

    def delete_model(self, model_id: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM models WHERE id = ?", [model_id])


def _salvaged_rows(path: Path, query: str) -> list[tuple]:
    """The rows of a fixed query on an index file that may be damaged (opened read-only, without the
    checks of opening an index); [] when they cannot be read."""
    try:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            return connection.execute(query).fetchall()
    except sqlite3.Error:
        return []


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _execute_statements(db: sqlite_utils.Database, script: str) -> None:
    """Run ``;``-separated DDL one statement at a time (``executescript`` would commit the migration)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


_IMAGE_SELECT = """
    SELECT i.id AS id, i.folder_id AS folder_id, i.path AS path, i.size AS size, i.mtime_ns AS mtime_ns,
           i.hash AS hash, i.error AS error,
           EXISTS (SELECT 1 FROM codes c WHERE c.model_id = ? AND c.image_id = i.id) AS has_code
    FROM images i
"""
