"""Damaged, foreign, unwritable and full index databases: detected, reported, rebuildable."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from phpq.cli import main as phpq
from phpq.db import DamagedDatabaseError, DatabaseError
from phpq.instance import WriterLock
from phpq.library import Library, ReadOnlyError
from tests.conftest import write_image_folder
from tests.robustness.conftest import snapshot


@pytest.fixture
def indexed(tmp_path, tiny_model) -> tuple[Path, Path]:
    """(database, photo folder): a small finished index made with the tiny model."""
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=3)
    database = tmp_path / "data" / "index.sqlite3"
    with Library(database, prefer_cuda=False) as library:
        library.activate_model(library.import_model(tiny_model).id)
        library.add_folder(photos)
        assert library.index().encoded == 12
    return database, photos


def damage_random(database: Path) -> None:
    database.write_bytes(np.random.default_rng(0).bytes(database.stat().st_size))


def damage_truncate(database: Path) -> None:
    data = database.read_bytes()
    database.write_bytes(data[: len(data) // 3])


def damage_pages(database: Path) -> None:
    """Keep the header, scribble over the pages behind it."""
    data = bytearray(database.read_bytes())
    data[4096:] = np.random.default_rng(1).bytes(len(data) - 4096)
    database.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [damage_random, damage_truncate, damage_pages])
def test_a_damaged_index_is_reported_and_rebuilt_from_the_folders(indexed, damage, capsys, tally):
    database, photos = indexed
    photos_before = snapshot(photos)
    for suffix in ("-wal", "-shm"):  # the damage is in the main file, after a clean close
        assert not database.with_name(database.name + suffix).exists()
    damage(database)
    with pytest.raises(DamagedDatabaseError, match="phpq rebuild"):
        Library(database, prefer_cuda=False)
    tally["refusals"] += 1
    assert phpq(["--db", str(database), "--cpu", "status"]) == 1
    assert "damaged" in capsys.readouterr().err
    assert phpq(["--db", str(database), "--cpu", "rebuild"]) == 0
    assert "12 encoded" in capsys.readouterr().out
    with Library(database, prefer_cuda=False) as library:
        assert [folder.path for folder in library.folders()] == [photos]
        assert library.counts()["indexed"] == 12
    assert len(list(database.parent.glob("index.sqlite3.damaged-*"))) == 1  # set aside, not deleted
    assert snapshot(photos) == photos_before


def test_a_database_of_another_program_is_refused_and_left_alone(tmp_path, tally):
    foreign = tmp_path / "contacts.sqlite3"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE customers (name TEXT, phone TEXT)")
        connection.execute("INSERT INTO customers VALUES ('Ada', '123')")
    before = hashlib.sha256(foreign.read_bytes()).hexdigest()
    with pytest.raises(DamagedDatabaseError, match="another program"):
        Library(foreign, prefer_cuda=False)
    assert hashlib.sha256(foreign.read_bytes()).hexdigest() == before
    tally["refusals"] += 1


def test_an_unusable_data_directory_gives_a_clear_error(tmp_path, capsys, tally):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the data directory should be")
    with pytest.raises(DatabaseError, match="cannot create or open the index"):
        Library(blocker / "data" / "index.sqlite3", prefer_cuda=False)
    assert phpq(["--db", str(blocker / "index.sqlite3"), "status"]) == 1
    assert "cannot create or open the index" in capsys.readouterr().err
    tally["refusals"] += 1


def test_a_read_only_data_directory_opens_the_index_read_only_with_the_reason(indexed, monkeypatch, tally):
    database, photos = indexed

    def denied(self) -> bool:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(WriterLock, "acquire", denied)  # as when the folder is read-only (root ignores chmod)
    with Library(database, prefer_cuda=False) as library:
        assert library.read_only and library.search(next(photos.rglob("*.jpg"))).n_searched == 12
        with pytest.raises(ReadOnlyError, match=r"cannot be written \(Permission denied\): it can search"):
            library.index()
    tally["refusals"] += 1


def test_a_full_disk_stops_indexing_with_a_message_and_keeps_the_index_sound(indexed, tmp_path, tally):
    database, _ = indexed
    more = write_image_folder(tmp_path / "more", n_classes=4, per_class=60, size=64)
    with Library(database, prefer_cuda=False) as library:
        pages = library.db.db.execute("PRAGMA page_count").fetchone()[0]
        library.db.db.execute(f"PRAGMA max_page_count = {pages + 4}")  # the disk fills after 4 pages
        library.add_folder(more)
        with pytest.raises(DatabaseError, match="full"):
            library.index()
        tally["refusals"] += 1
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Library(database, prefer_cuda=False) as library:  # space again: the next run completes
        report = library.index()
        assert library.counts() == {"images": 252, "errors": 0, "indexed": 252, "pending": 0}
        assert report.encoded + report.unchanged >= 240
