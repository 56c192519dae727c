"""The indexing and search engine over SQLite: ranking, incremental indexing, models, errors, cancel."""

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from phpq.cli import main as phpq
from phpq.index import CancelToken, IndexProgress
from phpq.library import Library, LibraryError, ReadOnlyError
from phpq.locations import bundled_models
from phpq.model import ModelError, PHPQModel
from tests.conftest import write_image_folder, write_photo


@pytest.fixture
def library(tmp_path, tiny_model) -> Library:
    """A library in a temporary data directory with the tiny trained model active."""
    with Library(tmp_path / "data" / "index.sqlite3", prefer_cuda=False) as opened:
        opened.activate_model(opened.import_model(tiny_model).id)
        yield opened


def code_of(library: Library, path: Path, model_id: str) -> bytes | None:
    """The stored code of the photo at ``path`` for a model (None without one)."""
    image_id = library.db.image_by_path(path.resolve(), model_id).id
    stored = library.db.load_encodings(model_id)
    codes = {int(i): code.tobytes() for i, code in zip(stored.image_ids, stored.codes, strict=True)}
    return codes.get(image_id)


def folder_of_photos(root: Path, per_class: int = 6) -> Path:
    return write_image_folder(root, n_classes=4, per_class=per_class)


def class_of(path: Path) -> str:
    return path.parent.name


def test_search_ranks_photos_of_the_query_class_first(library, tmp_path):
    photos = folder_of_photos(tmp_path / "photos")
    library.add_folder(photos)
    report = library.index()
    assert (report.added, report.encoded, report.failed) == (24, 24, 0)
    for label in range(4):
        query = write_photo(tmp_path / "queries" / f"q{label}.png", label, index=77)
        result = library.search(query, top_k=6)
        assert result.n_searched == 24 and len(result.hits) == 6
        same = [class_of(hit.path) == f"{label + 1:03d}.class_{label}" for hit in result.hits]
        assert sum(same) >= 5, [hit.path.name for hit in result.hits]
        similarities = [hit.similarity for hit in result.hits]
        # w * ADC / M in [-1, 1] plus (1 - w) * unit(q - m) . (d - m), |d - m| <= 1 + |m| < 2 (centring)
        assert similarities == sorted(similarities, reverse=True) and -2 < similarities[-1] <= similarities[0] < 2
        assert set(result.timings_ms) == {"decode", "encode", "scan", "fetch"}
    # an indexed photo as the query: it is not its own result
    first = sorted((photos / "002.class_1").iterdir())[0]
    by_path = library.search(first, top_k=5)
    assert len(by_path.hits) == 5 and first not in [hit.path for hit in by_path.hits]


def test_incremental_indexing_add_modify_rename_move_delete(library, tmp_path):
    photos = folder_of_photos(tmp_path / "photos", per_class=3)
    other = tmp_path / "other"
    other.mkdir()
    library.add_folder(photos)
    library.add_folder(other)
    assert library.index().encoded == 12
    again = library.index()
    assert (again.encoded, again.unchanged, again.added) == (0, 12, 0)

    model_id = library.active_model_id
    renamed_from = photos / "001.class_0" / "photo_000.jpg"
    code_before = code_of(library, renamed_from, model_id)
    renamed_to = photos / "001.class_0" / "renamed.jpg"
    renamed_from.rename(renamed_to)
    moved_to = other / "moved.jpg"
    (photos / "002.class_1" / "photo_001.jpg").rename(moved_to)
    (photos / "003.class_2" / "photo_002.jpg").unlink()
    modified = photos / "004.class_3" / "photo_000.jpg"
    old_code = code_of(library, modified, model_id)
    write_photo(modified, label=0, index=99)  # different content at the same path
    os.utime(modified, ns=(1, 10**18))
    write_photo(photos / "004.class_3" / "new.png", label=3, index=42)

    report = library.index()
    assert (report.moved, report.removed, report.modified, report.added) == (2, 1, 1, 1)
    assert report.encoded == 2  # the changed file and the new one; moved files keep their codes
    assert code_before is not None and code_of(library, renamed_to, model_id) == code_before
    moved = library.db.image_by_path(moved_to, model_id)
    assert moved is not None and moved.folder_id == library.folder(other).id and moved.has_code
    assert code_of(library, modified, model_id) not in (old_code, None)
    assert library.db.counts(model_id) == {"images": 12, "errors": 0, "indexed": 12, "pending": 0}
    # the in-memory matrix followed every change: the deleted photo is never returned, moves are filtered
    hits = library.search(write_photo(tmp_path / "q.png", 2, 50), top_k=20).hits
    assert all(hit.path.exists() for hit in hits) and len(hits) == 12
    only_other = library.search(write_photo(tmp_path / "q2.png", 1, 51), top_k=5, folders=[other])
    assert [hit.path for hit in only_other.hits] == [moved_to]
    reloaded = Library(library.db.path, prefer_cuda=False)
    assert len(reloaded.matrix()) == len(library.matrix()) == 12
    reloaded.close()


def test_models_are_isolated_and_switching_keeps_the_old_codes(library, tmp_path):
    photos = folder_of_photos(tmp_path / "photos", per_class=2)
    library.add_folder(photos)
    library.index()
    tiny_id = library.active_model_id
    default = next(record for record in library.models() if record.id != tiny_id)
    library.activate_model(default.id[:10])
    assert library.active_model_id == default.id
    query = write_photo(tmp_path / "q.png", 0, 60)
    assert library.search(query).hits == [] and library.status().pending == 8
    report = library.index()
    assert report.encoded == 8 and report.unchanged == 8
    assert library.search(query, top_k=3).n_searched == 8
    assert library.db.counts(tiny_id)["indexed"] == 8  # the tiny model's codes are still there
    assert library.db.counts(default.id)["indexed"] == 8
    library.activate_model(tiny_id)
    assert len(library.matrix()) == 8 and library.matrix().n_subspaces == 4
    with pytest.raises(LibraryError):
        library.activate_model("no-such-model")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        library.import_model(bad)
    assert library.active_model_id == tiny_id


def test_touched_files_without_a_code_for_the_active_model_are_encoded(library, tmp_path):
    photos = folder_of_photos(tmp_path / "photos", per_class=2)
    library.add_folder(photos)
    library.index()
    other = next(record for record in library.models() if record.id != library.active_model_id)
    library.activate_model(other.id)
    for path in photos.rglob("*.jpg"):  # same bytes, new mtime (a restored backup, a copied folder)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    report = library.index()
    assert (report.unchanged, report.modified, report.encoded) == (8, 0, 8)
    assert library.status().pending == 0


def test_unreadable_files_are_recorded_and_never_stop_the_run(library, tmp_path):
    photos = folder_of_photos(tmp_path / "photos", per_class=2)
    broken = photos / "broken"
    broken.mkdir()
    (broken / "empty.jpg").write_bytes(b"")
    (broken / "text.png").write_text("this is not a picture")
    good = write_photo(broken / "good.jpg", 1, 5)
    (broken / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    for suffix in (".webp", ".bmp", ".gif", ".tiff"):
        write_photo(broken / f"format{suffix}", 2, 7)
    Image.open(good).convert("RGB").save(broken / "iphone.heic")
    (broken / "notes.txt").write_text("ignored: not a photo suffix")
    library.add_folder(photos)
    report = library.index()
    assert report.failed == 3 and report.encoded == 8 + 1 + 4 + 1
    errors = dict(library.db.errors())
    assert set(errors) == {broken / "empty.jpg", broken / "text.png", broken / "truncated.jpg"}
    assert all(isinstance(reason, str) and reason for reason in errors.values())
    assert library.status().errors == 3
    assert library.index().encoded == 0  # recorded failures are not retried until the file changes
    with pytest.raises(LibraryError, match="cannot read the query photo"):
        library.search(broken / "text.png")


def test_cancel_keeps_a_consistent_database_that_the_next_run_completes(library, tmp_path):
    photos = folder_of_photos(tmp_path / "photos", per_class=10)
    library.add_folder(photos)
    cancel = CancelToken()
    seen: list[IndexProgress] = []

    def progress(state: IndexProgress) -> None:
        seen.append(IndexProgress(**vars(state)))
        if state.phase == "encoding" and state.done >= 8:
            cancel.cancel()

    report = library.index(progress=progress, cancel=cancel, batch_size=8)
    assert report.cancelled and report.encoded == 8
    assert seen[0].phase == "scanning" and seen[-1].phase == "done"
    encoding = [s for s in seen if s.phase == "encoding"]
    assert encoding[0].done == 0 and encoding[0].total == 40  # announced before the first batch
    assert encoding[1].done == 8 and encoding[1].photos_per_second > 0
    with sqlite3.connect(library.db.path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert library.db.counts(library.active_model_id) == {"images": 40, "errors": 0, "indexed": 8, "pending": 32}
    assert len(library.matrix()) == 8
    finish = library.index()
    assert not finish.cancelled and finish.encoded == 32 and len(library.matrix()) == 40


def test_a_second_instance_is_read_only_and_sees_what_the_writer_commits(library, tmp_path):
    photos = folder_of_photos(tmp_path / "photos", per_class=2)
    library.add_folder(photos)
    library.index()
    query = write_photo(tmp_path / "q.png", 0, 61)
    reader = Library(library.db.path, prefer_cuda=False)  # another instance: the writer lock is taken
    assert reader.read_only and not library.read_only
    assert reader.search(query, top_k=50).n_searched == 8
    for change in (lambda: reader.index(), lambda: reader.add_folder(tmp_path), lambda: reader.remove_folder(photos)):
        with pytest.raises(ReadOnlyError, match="can search but not change it"):
            change()
    write_photo(photos / "001.class_0" / "late.jpg", 0, 62)
    assert library.index().encoded == 1
    assert reader.search(query, top_k=50).n_searched == 9  # the writer's commit is noticed and loaded
    reader.close()
    library.close()
    writer = Library(library.db.path, prefer_cuda=False)  # the lock is free again
    assert not writer.read_only
    writer.close()


def test_removing_a_folder_forgets_it_and_keeps_the_files(library, tmp_path):
    photos = folder_of_photos(tmp_path / "photos", per_class=2)
    library.add_folder(photos)
    library.index()
    before = sorted(p for p in photos.rglob("*") if p.is_file())
    library.remove_folder(photos)
    assert library.folders() == [] and len(library.matrix()) == 0
    assert library.db.counts(library.active_model_id)["images"] == 0
    assert sorted(p for p in photos.rglob("*") if p.is_file()) == before
    with pytest.raises(LibraryError):
        library.remove_folder(photos)
    with pytest.raises(LibraryError):
        library.add_folder(tmp_path / "missing")


def test_phpq_command_line(tmp_path, tiny_model, capsys):
    photos = folder_of_photos(tmp_path / "photos", per_class=3)
    db = ["--db", str(tmp_path / "data" / "index.sqlite3"), "--cpu"]
    assert phpq([*db, "models", "import", str(tiny_model), "--activate"]) == 0
    assert phpq([*db, "add", str(photos)]) == 0
    assert "12 encoded" in capsys.readouterr().out
    query = write_photo(tmp_path / "q.png", 3, 70)
    assert phpq([*db, "search", str(query), "--top", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["results"]) == 3 and result["searched"] == 12
    adaptive = PHPQModel(tiny_model, prefer_cuda=False).info.search.adaptive
    assert result["code_weight"] in (adaptive.low, adaptive.high)  # the weight chosen for this query
    assert phpq([*db, "search", str(query), "--top", "3", "--weight", "0.25", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["code_weight"] == 0.25
    assert all(class_of(Path(hit["path"])) == "004.class_3" for hit in result["results"])
    assert phpq([*db, "search", str(query), "--folder", str(photos / "001.class_0"), "--json"]) == 2
    assert "not an indexed folder" in capsys.readouterr().err
    assert phpq([*db, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["images"], status["indexed"], status["errors"], status["bits"]) == (12, 12, 0, 16)
    assert status["provider"] == "CPUExecutionProvider"
    assert status["folders"][0]["scanned"] > 0  # when the folder was last compared with the disk
    (tmp_path / "later").mkdir()
    assert phpq([*db, "add", str(tmp_path / "later"), "--no-index"]) == 0
    assert phpq([*db, "status"]) == 0
    folder_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("folder ")]
    assert "(0 photos, 0 unreadable, not scanned yet)" in folder_lines[0]
    assert "(12 photos, 0 unreadable, scanned 2" in folder_lines[1]
    assert phpq([*db, "models"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if re.match(r"[* ] [0-9a-f]{12}  ", line)]
    assert len(listed) == len(bundled_models()) + 1  # the bundled models (each with its summary) and the tiny one
    assert phpq([*db, "search", str(tmp_path / "missing.jpg")]) == 2
    assert phpq([*db, "remove", str(tmp_path / "nowhere")]) == 2
    assert phpq([*db, "models", "activate", "zzz"]) == 2
    assert phpq([*db, "remove", str(photos)]) == 0
    with pytest.raises(SystemExit) as usage:
        phpq([*db, "search"])
    assert usage.value.code == 2
    shutil.rmtree(photos)


def test_the_default_data_directory_follows_phpq_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PHPQ_DATA_DIR", str(tmp_path / "elsewhere"))
    with Library(prefer_cuda=False) as library:
        assert library.db.path == tmp_path / "elsewhere" / "index.sqlite3"
        record = library.model_record(library.active_model_id)
        assert record.path.name == "phpq-cub200-lite0-64bit.onnx" and record.path.is_file()
        assert np.array_equal(library.model_for().codebooks.shape, (8, 256, 128))


def test_nested_folders_are_never_indexed_twice(library, tmp_path):
    photos = folder_of_photos(tmp_path / "photos", per_class=2)
    library.add_folder(photos / "001.class_0")
    assert library.index().encoded == 2
    parent = library.add_folder(photos)  # takes over the sub-folder with its codes
    assert [record.path for record in library.folders()] == [parent.path] and parent.n_images == 2
    report = library.index()
    assert (report.encoded, report.unchanged) == (6, 2)
    with pytest.raises(LibraryError, match="already indexed as part of"):
        library.add_folder(photos / "002.class_1")
    assert library.search(write_photo(tmp_path / "q.png", 0, 63), top_k=50).n_searched == 8


def test_byte_identical_copies_of_the_query_come_first(library, tmp_path):
    first, second = tmp_path / "photos_a", tmp_path / "photos_b"
    write_image_folder(first, n_classes=4, per_class=5)
    write_image_folder(second, n_classes=4, per_class=5)
    query = write_photo(tmp_path / "elsewhere" / "query.jpg", 1, index=90)
    # Re-encoded versions of the same picture: other bytes, but (as the assert below checks) the same
    # code and score as the copies, and they are indexed before them.
    for quality in (85, 88, 90, 95):
        Image.open(query).save(first / "002.class_1" / f"a_variant_{quality}.jpg", quality=quality)
    shutil.copy(query, first / "002.class_1" / "z_copy.jpg")
    shutil.copy(query, second / "003.class_2" / "z_copy.jpg")
    library.add_folder(first)
    library.add_folder(second)
    library.index()
    model_id = library.active_model_id
    codes = {path.name: code_of(library, path, model_id) for path in (first / "002.class_1").glob("[az]_*.jpg")}
    assert sum(code == codes["z_copy.jpg"] for code in codes.values()) >= 2, "no variant ties with the copy"

    hits = library.search(query, top_k=6).hits
    assert [hit.path for hit in hits[:2]] == [
        first / "002.class_1" / "z_copy.jpg",
        second / "003.class_2" / "z_copy.jpg",
    ]
    similarities = [hit.similarity for hit in hits]
    # the copies show their similarity to the query itself, above every other photo's (under collection
    # centring and whitening the descriptor term of an identical photo is |W(q - m)|, under 1: 0.85 with
    # this 16-d descriptor at whitening 0.1); the rest follow in the (expanded) ranking
    assert similarities[0] == similarities[1] > max(0.8, *similarities[2:])
    assert similarities[2:] == sorted(similarities[2:], reverse=True)
    # the folder filter holds for copies too, and an indexed copy finds its twin but not itself
    only_second = library.search(query, top_k=3, folders=[second]).hits
    assert only_second[0].path == second / "003.class_2" / "z_copy.jpg"
    assert all(hit.path.is_relative_to(second) for hit in only_second)
    from_copy = library.search(first / "002.class_1" / "z_copy.jpg", top_k=3).hits
    assert from_copy[0].path == second / "003.class_2" / "z_copy.jpg"
    assert first / "002.class_1" / "z_copy.jpg" not in [hit.path for hit in from_copy]


def write_other_model(source: Path, target: Path, axis: int = 1, **metadata: str) -> str:
    """``source`` with its codebooks reversed along ``axis`` (so another model id) and these ``phpq.*``
    metadata props, written to ``target``; returns the new model id."""
    model = onnx.load(str(source))
    for initializer in model.graph.initializer:
        if initializer.name == "phpq_codebooks":
            codebooks = np.flip(numpy_helper.to_array(initializer), axis=axis).copy()
            initializer.CopyFrom(numpy_helper.from_array(codebooks, "phpq_codebooks"))
    model_id = hashlib.sha256(model.graph.SerializeToString()).hexdigest()
    props = {entry.key: entry.value for entry in model.metadata_props} | {"phpq.model_id": model_id}
    onnx.helper.set_model_props(model, props | {f"phpq.{key}": value for key, value in metadata.items()})
    onnx.save(model, str(target))
    return model_id


def test_a_second_bundled_model_is_offered_beside_the_default_and_never_replaces_it(
    tmp_path, tiny_model, monkeypatch, capsys
):
    """Two bundled models (the default and the thorough one): a new index starts with the first; the
    other is listed by its title, can be switched to (its codes built first) and back, and stays."""
    package = tmp_path / "package"
    package.mkdir()
    default, thorough = package / "phpq-default.onnx", package / "phpq-default-thorough.onnx"
    shutil.copyfile(tiny_model, default)
    thorough_id = write_other_model(tiny_model, thorough, title="Thorough", summary="Better on other birds.")
    monkeypatch.setattr("phpq.registry.bundled_models", lambda: [default, thorough])
    database = tmp_path / "data" / "index.sqlite3"
    with Library(database, prefer_cuda=False) as library:
        default_id = library.active_model_id
        assert default_id == PHPQModel(default).info.model_id != thorough_id
        assert list(library._registry._models) == [default_id]  # the other one loads only when used
        assert [(record.title, record.summary) for record in library.models()] == [
            ("phpq-default", ""),
            ("Thorough", "Better on other birds."),
        ]
        library.add_folder(folder_of_photos(tmp_path / "photos", per_class=2))
        assert library.index().encoded == 8
        assert library.counts(thorough_id)["pending"] == 8
        assert library.index(model_id=thorough_id).encoded == 8
        library.activate_model(thorough_id)
        assert library.status().model.title == "Thorough" and library.status().pending == 0
    with Library(database, prefer_cuda=False) as library:  # reopened: both models, the user's choice kept
        assert library.active_model_id == thorough_id and len(library.models()) == 2
        library.activate_model(default_id)
        assert library.status().pending == 0  # the default's codes stayed
    assert phpq(["--db", str(database), "--cpu", "models"]) == 0
    listed = capsys.readouterr().out
    assert "Thorough" in listed and "Better on other birds." in listed and f"* {default_id[:12]}" in listed


def test_an_upgraded_second_bundled_model_stays_the_user_s_choice_and_the_default_keeps_its_codes(
    tmp_path, tiny_model, monkeypatch, caplog
):
    """Thorough in use, then a new version of it ships (another model id in the same file name): the index
    switches to the new one and encodes the photos with it; the default and its codes are untouched."""
    package = tmp_path / "package"
    package.mkdir()
    default, thorough = package / "phpq-default.onnx", package / "phpq-default-thorough.onnx"
    shutil.copyfile(tiny_model, default)
    old_id = write_other_model(tiny_model, thorough, title="Thorough")
    monkeypatch.setattr("phpq.registry.bundled_models", lambda: [default, thorough])
    database = tmp_path / "data" / "index.sqlite3"
    with Library(database, prefer_cuda=False) as library:
        default_id = library.active_model_id
        library.add_folder(folder_of_photos(tmp_path / "photos", per_class=2))
        assert library.index().encoded == 8 and library.index(model_id=old_id).encoded == 8
        library.activate_model(old_id)
    new_id = write_other_model(tiny_model, thorough, axis=0, title="Thorough", summary="Faster.")
    with Library(database, prefer_cuda=False) as library:
        assert library.active_model_id == new_id != old_id
        assert [record.id for record in library.models()] == [default_id, new_id]
        assert library.status().pending == 8 and library.counts(default_id)["pending"] == 0
        assert library.index().encoded == 8 and library.status().model.summary == "Faster."
    assert "the bundled model Thorough was updated" in caplog.text


def test_an_upgraded_bundled_model_takes_over_and_the_photos_are_encoded_again(tmp_path, tiny_model, monkeypatch):
    bundled = tmp_path / "package" / "default.onnx"
    bundled.parent.mkdir()
    shutil.copyfile(tiny_model, bundled)
    monkeypatch.setattr("phpq.registry.bundled_models", lambda: [bundled])
    photos = folder_of_photos(tmp_path / "photos", per_class=2)
    database = tmp_path / "data" / "index.sqlite3"
    with Library(database, prefer_cuda=False) as library:
        old_id = library.active_model_id
        library.add_folder(photos)
        assert library.index().encoded == 8
    # the upgrade: the same file name now holds another model (here: the tiny model with other codebooks)
    new_id = write_other_model(tiny_model, bundled)
    with Library(database, prefer_cuda=False) as library:
        assert library.active_model_id == new_id != old_id
        assert [record.id for record in library.models()] == [new_id]  # the old model and its codes are gone
        assert library.status().pending == 8
        assert library.index().encoded == 8
        assert library.search(write_photo(tmp_path / "q.png", 0, 60), top_k=3).n_searched == 8
    with Library(database, prefer_cuda=False) as library:  # unchanged file: nothing is loaded at open
        assert library._registry._models == {} and library.active_model_id == new_id
    # a new install location with the first model again: it replaces the one at the old location
    moved = tmp_path / "new-install" / "default.onnx"
    moved.parent.mkdir()
    shutil.copyfile(tiny_model, moved)
    monkeypatch.setattr("phpq.registry.bundled_models", lambda: [moved])
    with Library(database, prefer_cuda=False) as library:
        assert library.active_model_id == old_id and [record.path for record in library.models()] == [moved]
        assert library.index().encoded == 8


def test_a_bundled_model_with_new_search_settings_keeps_its_codes(tmp_path, tiny_model, monkeypatch):
    """Re-exporting the same weights with other search metadata (a per-query weight, say) keeps the model
    id: the index takes the new settings without encoding a photo again."""
    bundled = tmp_path / "package" / "default.onnx"
    bundled.parent.mkdir()
    shutil.copyfile(tiny_model, bundled)
    monkeypatch.setattr("phpq.registry.bundled_models", lambda: [bundled])
    database = tmp_path / "data" / "index.sqlite3"
    with Library(database, prefer_cuda=False) as library:
        model_id = library.active_model_id
        library.add_folder(folder_of_photos(tmp_path / "photos", per_class=2))
        assert library.index().encoded == 8
        assert "by query" in library.status().kind
    reexported = onnx.load(str(tiny_model))
    props = {entry.key: entry.value for entry in reexported.metadata_props}
    onnx.helper.set_model_props(reexported, {**props, "phpq.adaptive_weight": "{}", "phpq.created": "later"})
    onnx.save(reexported, str(bundled))
    with Library(database, prefer_cuda=False) as library:
        assert library.active_model_id == model_id and library.status().pending == 0
        assert (
            library.status().kind.startswith("codes + descriptor (fused, w=")
            and "by query" not in library.status().kind
        )
        assert library.models()[0].metadata["adaptive_weight"] == "{}"
        assert library.search(write_photo(tmp_path / "q.png", 0, 60), top_k=3).n_searched == 8


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`phpq status | head -1`: the pipe closes before phpq writes; phpq exits quietly with status 1."""
    command = [sys.executable, "-m", "phpq.cli", "--db", str(tmp_path / "index.sqlite3"), "--cpu", "status"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    process.stdout.close()  # the reader is gone before the first line
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr.decode()
