"""Schema migrations: an index of the previous schema (before species labels) is migrated with nothing
lost, and a SIGKILL in the middle of the migration leaves it usable (the step is one transaction)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from phpq.db import MIGRATIONS
from phpq.library import Library
from tests.conftest import write_image_folder

LABELS_STEP = "m003_species_labels"
KEPT_TABLES = ("folders", "images", "models", "codes", "descriptors", "settings")


def previous_schema_index(tmp_path: Path, tiny_model: Path) -> tuple[Path, Path]:
    """An indexed folder in an index of the schema before the labels step: made with today's code, then
    the step undone (its table and column dropped, its record removed)."""
    photos = write_image_folder(tmp_path / "photos", n_classes=2, per_class=4)
    database = tmp_path / "data" / "index.sqlite3"
    with Library(database, prefer_cuda=False) as library:
        library.activate_model(library.import_model(tiny_model).id)
        library.add_folder(photos)
        library.index()
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE labels")
        connection.execute("ALTER TABLE folders DROP COLUMN species_from_folders")
        connection.execute("DELETE FROM _sqlite_migrations WHERE name = ?", [LABELS_STEP])
    return database, photos


def contents(database: Path) -> dict[str, list[tuple]]:
    """Every row of the tables the previous schema had, in their previous columns, the schema steps
    and the tables."""
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = {}
        for table in KEPT_TABLES:
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            old = [column for column in columns if column != "species_from_folders"]
            rows[table] = sorted(connection.execute(f"SELECT {', '.join(old)} FROM {table}").fetchall(), key=repr)
        rows["steps"] = [row[0] for row in connection.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        rows["tables"] = sorted(row[0] for row in tables)
    return rows


def test_the_previous_schema_is_what_its_steps_make(tmp_path, tiny_model):
    database, _ = previous_schema_index(tmp_path, tiny_model)
    reference = tmp_path / "reference.sqlite3"
    with sqlite3.connect(reference) as connection:
        MIGRATIONS.apply(sqlite_utils.Database(connection), stop_before=LABELS_STEP)

    def columns(path: Path) -> dict[str, list[str]]:
        with sqlite3.connect(path) as connection:
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {t: [row[1] for row in connection.execute(f"PRAGMA table_info({t})")] for t in sorted(tables)}

    assert columns(database) == columns(reference)


def test_the_labels_migration_keeps_everything_of_an_existing_index(tmp_path, tiny_model):
    database, photos = previous_schema_index(tmp_path, tiny_model)
    before = contents(database)
    assert len(before["codes"]) == 8 and len(before["steps"]) == 2
    with Library(database, prefer_cuda=False) as library:
        assert library.db.schema_version == 3
        assert library.species() == {}
        hits = library.search(photos / "001.class_0" / "photo_000.jpg", top_k=3).hits
        assert len(hits) == 3 and all(hit.species is None for hit in hits)
        assert library.label([photos / "001.class_0"], "Kept Bird") == 4
    after = contents(database)
    assert after["steps"] == [*before["steps"], LABELS_STEP]
    assert {table: after[table] for table in KEPT_TABLES} == {table: before[table] for table in KEPT_TABLES}


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_a_sigkill_during_the_labels_migration_leaves_the_index_usable(tmp_path, tiny_model, tally):
    database, photos = previous_schema_index(tmp_path, tiny_model)
    before = contents(database)
    # The migration's statements run, then it waits inside its transaction to be killed.
    script = (
        "import sys, time\n"
        "from phpq.db import MIGRATIONS, IndexDatabase\n"
        "step = MIGRATIONS._migrations[-1]\n"
        "original = step.fn\n"
        "def slow(db):\n"
        "    original(db)\n"
        "    print('migrating', flush=True)\n"
        "    time.sleep(120)\n"
        "step.fn = slow\n"
        "IndexDatabase(sys.argv[1])\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(database)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "migrating"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    tally["kills"] += 1
    assert contents(database) == before  # the step never happened: the previous schema, whole
    with Library(database, prefer_cuda=False) as library:
        assert library.db.schema_version == 3
        assert len(library.search(photos / "002.class_1" / "photo_001.jpg", top_k=5).hits) == 5
        assert library.label([photos / "002.class_1"], "After Crash") == 4
    after = contents(database)
    assert {table: after[table] for table in KEPT_TABLES} == {table: before[table] for table in KEPT_TABLES}
