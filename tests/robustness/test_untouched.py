"""The user's photos are never modified, and the app writes only to its data directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from phpq.library import Library
from phpq.thumbnails import ThumbnailCache
from tests.conftest import write_image_folder, write_photo
from tests.robustness.conftest import snapshot


def test_photos_stay_byte_identical_through_every_operation(tmp_path, tiny_model, tally, monkeypatch):
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=4)
    write_photo(photos / "odd" / "transparent.png", 1, 3)
    (photos / "odd" / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    (photos / "odd" / "link.jpg").symlink_to(photos / "001.class_0" / "photo_000.jpg")
    elsewhere = tmp_path / "elsewhere"  # the working directory and a fake home: nothing may appear there
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HOME", str(elsewhere))
    data = tmp_path / "data"
    before = snapshot(photos)
    tmp_before = sorted(path.name for path in tmp_path.iterdir())

    library = Library(data / "index.sqlite3", prefer_cuda=False)
    library.activate_model(library.import_model(tiny_model).id)
    library.add_folder(photos)
    library.index()
    assert snapshot(photos) == before, "indexing changed the photo folder"
    for query in sorted(photos.rglob("*.jpg"))[:3]:
        library.search(query, top_k=5)
    cache = ThumbnailCache(data / "thumbnails")
    for path in sorted(photos.rglob("photo_*.jpg")):
        cache.load(path)
    assert snapshot(photos) == before, "searching or thumbnailing changed the photo folder"
    library.remove_folder(photos)
    library.close()
    assert snapshot(photos) == before, "removing the folder changed it"
    cli = [sys.executable, "-m", "phpq.cli", "--db", str(data / "index.sqlite3"), "--cpu"]
    subprocess.run([*cli, "add", str(photos)], check=True, capture_output=True)
    subprocess.run([*cli, "search", str(photos / "002.class_1" / "photo_001.jpg")], check=True, capture_output=True)
    shutil.rmtree(data)  # deleting the whole data directory, database included
    assert snapshot(photos) == before, "the command line or deleting the index changed the photo folder"
    assert list(elsewhere.iterdir()) == [], "something was written outside the data directory"
    assert sorted(path.name for path in tmp_path.iterdir()) == tmp_before
    tally["files_verified"] += sum(1 for value in before.values() if value[0] not in ("dir",))


WATCHED: list[str] = []  # folder prefixes whose write attempts are recorded
WRITES: list[tuple[str, str]] = []
WRITE_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.chmod", "os.utime", "os.truncate", "os.chown", "shutil.move"}


def _audit(event: str, arguments: tuple) -> None:
    if not WATCHED or not arguments:
        return
    target = str(arguments[0]) if isinstance(arguments[0], (str, bytes, os.PathLike)) else ""
    if not any(target.startswith(prefix) for prefix in WATCHED):
        return
    if event == "open":
        mode, flags = str(arguments[1] or ""), int(arguments[2] or 0)
        if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC):
            WRITES.append((event, target))
    elif event in WRITE_EVENTS:
        WRITES.append((event, target))


sys.addaudithook(_audit)


def test_no_photo_is_ever_opened_for_writing(tmp_path, tiny_model, tally):
    """Python's audit hooks see every open, rename, remove, chmod and utime: none may aim at the photos."""
    photos = write_image_folder(tmp_path / "photos", n_classes=2, per_class=3)
    WATCHED[:] = [str(photos)]
    WRITES.clear()
    try:
        with Library(tmp_path / "data" / "index.sqlite3", prefer_cuda=False) as library:
            library.activate_model(library.import_model(tiny_model).id)
            library.add_folder(photos)
            assert library.index().encoded == 6
            library.search(next(photos.rglob("*.jpg")))
            ThumbnailCache(tmp_path / "data" / "thumbnails").load(next(photos.rglob("*.jpg")))
            library.remove_folder(photos)
        with (photos / "001.class_0" / "probe.txt").open("w") as probe:  # the hook does see writes
            probe.write("x")
    finally:
        WATCHED.clear()
    assert [("open", str(photos / "001.class_0" / "probe.txt"))] == WRITES
    tally["files_verified"] += 6
