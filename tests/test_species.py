"""Species labels, suggestions and grouping (issue 27): labels in the index (folder names, by hand,
through moves and renames), the label vote, the model's prototypes, abstention, grouping, the CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from phpq.cli import main as phpq
from phpq.library import Library, LibraryError
from phpq.model import Encoding, PHPQModel
from phpq.prototypes import ClassPrototypes, display_name
from phpq.search import SearchHit
from phpq.species import (
    Identification,
    Suggestion,
    group_by_species,
    identification,
    label_vote,
    model_suggestions,
)
from tests.conftest import write_image_folder, write_photo


def hit(image_id: int, similarity: float, species: str | None, same_photo: bool = False) -> SearchHit:
    return SearchHit(image_id, Path(f"/photos/{image_id}.jpg"), similarity, species, same_photo)


@pytest.fixture
def library(tmp_path, tiny_model) -> Library:
    with Library(tmp_path / "data" / "index.sqlite3", prefer_cuda=False) as opened:
        opened.activate_model(opened.import_model(tiny_model).id)
        yield opened


def test_the_vote_matches_a_hand_computed_example():
    hits = [
        hit(1, 0.95, "A", same_photo=True),  # a copy of the query: never votes
        hit(2, 0.90, "A"),
        hit(3, 0.89, "B"),
        hit(4, 0.885, None),  # unlabelled: no vote
        hit(5, 0.88, "A"),
        hit(6, 0.80, "C"),
        hit(7, 0.79, "B"),
        hit(8, 0.78, "C"),  # the 6th labelled photo: only 5 vote
    ]
    # weights exp((s - 0.90) / 0.02): A 1 + e^-1, B e^-0.5 + e^-5.5, C e^-5
    a, b, c = 1 + math.exp(-1), math.exp(-0.5) + math.exp(-5.5), math.exp(-5)
    votes = label_vote(hits, threshold=0.5)
    assert [v.species for v in votes] == ["A", "B", "C"]
    assert [v.confidence for v in votes] == pytest.approx([a / (a + b + c), b / (a + b + c), c / (a + b + c)])
    assert votes[0].confidence == pytest.approx(0.6890, abs=1e-4)
    assert votes[0].evidence == "2 of the 5 closest labelled photos"
    assert [v.confident for v in votes] == [True, False, False]
    assert label_vote([hit(1, 0.9, None)]) == []


def test_below_the_threshold_it_is_not_sure_and_names_the_two_best():
    votes = label_vote([hit(1, 0.90, "A"), hit(2, 0.90, "B"), hit(3, 0.85, "C")], threshold=0.8)
    assert not any(v.confident for v in votes)
    found = identification(votes, [])
    assert [s.species for s in found.suggestions] == ["A", "B"]
    assert found.summary() == "Not sure: A or B"
    sure = Suggestion("D", "model", 0.93, True, "model: 93 %")
    both = identification(votes, [sure, Suggestion("E", "model", 0.02, False, "model: 2 %")])
    assert both.suggestions[0] == sure and [s.species for s in both.suggestions[1:]] == ["A", "B"]
    assert both.summary() == "Probably D: model: 93 %"
    assert Identification([]).summary() == ""


def test_model_prototypes_name_a_species_only_above_their_threshold():
    vectors = np.eye(3, 4, dtype=np.float32)
    prototypes = ClassPrototypes.from_embeddings(
        np.repeat(vectors, 2, axis=0),
        np.repeat(np.arange(3), 2),
        ["001.Red_Bird", "002.Blue", "003.Green"],
        "descriptor",
        0.1,
        threshold=0.9,
    )
    codes = (np.zeros((1, 2, 2), np.float32), np.zeros((1, 2), np.uint8))
    near = Encoding(*codes, np.array([[1.0, 0.1, 0, 0]], np.float32))
    best, second = model_suggestions(prototypes, near)
    assert (best.species, best.source, best.confident, second.species) == ("Red Bird", "model", True, "Blue")
    logits = np.array([1.0, 0.1, 0.0]) / math.sqrt(1.01) / 0.1
    assert best.confidence == pytest.approx(np.exp(logits[0]) / np.exp(logits).sum(), rel=1e-5)
    between = Encoding(*codes, np.array([[1.0, 1.0, 0, 0]], np.float32))
    assert not model_suggestions(prototypes, between)[0].confident
    names = ["001.Red_Bird", "002.Blue", "003.Green"]
    stored = SimpleNamespace(metadata={"class_prototypes": prototypes.to_metadata(3)}, class_names=names)
    assert ClassPrototypes.from_model(stored).vectors == pytest.approx(prototypes.vectors, abs=1e-3)  # float16
    for damaged in ("{", '{"float16": "AAAA"}', prototypes.to_metadata(3).replace('"descriptor"', '"pixels"')):
        broken = SimpleNamespace(metadata={"class_prototypes": damaged}, class_names=names)
        assert ClassPrototypes.from_model(broken) is None  # no model suggestions, nothing fails


def test_groups_come_best_first_with_the_unlabelled_their_own_group():
    hits = [hit(1, 0.9, "A"), hit(2, 0.88, None), hit(3, 0.87, "B"), hit(4, 0.86, "A"), hit(5, 0.95, None)]
    groups = group_by_species(hits)
    assert [(g.species, [h.image_id for h in g.hits], g.best_similarity) for g in groups] == [
        (None, [2, 5], 0.95),
        ("A", [1, 4], 0.9),
        ("B", [3], 0.87),
    ]


def test_species_from_folders_also_labels_photos_found_later(library, tmp_path):
    photos = write_image_folder(tmp_path / "Birds", n_classes=3, per_class=3)
    library.add_folder(photos, species_from_folders=True)
    library.index()
    assert library.species() == {"class 0": 3, "class 1": 3, "class 2": 3}
    write_photo(photos / "004.Magellanic_Woodpecker" / "new.jpg", 3, 1)
    library.index()  # a re-scan: the folder's choice was kept
    assert library.species()["Magellanic Woodpecker"] == 1
    assert library.folder(photos).species_from_folders
    plain = tmp_path / "Plain"
    for index in range(2):
        write_photo(plain / "Unsorted" / f"{index}.jpg", 5, index)
    library.add_folder(plain)  # without species from folders
    library.index()
    assert sum(library.species().values()) == 10
    shutil.copyfile(photos / "001.class_0" / "photo_000.jpg", plain / "copy.jpg")
    library.index()  # a byte-identical copy is the same photo, with the same label
    assert library.species()["class 0"] == 4


def test_labels_survive_a_move_and_a_rename_and_never_touch_the_photos(library, tmp_path):
    first = write_image_folder(tmp_path / "first", n_classes=2, per_class=3)
    second = tmp_path / "second"
    second.mkdir()
    library.add_folder(first)
    library.add_folder(second)
    library.index()
    renamed, moved = first / "001.class_0" / "photo_000.jpg", first / "002.class_1" / "photo_001.jpg"
    before = renamed.read_bytes()
    assert library.label([renamed], "Rufous Hummingbird") == 1
    assert library.label([first / "002.class_1"], "Blue Jay") == 3  # a folder: every photo under it
    assert renamed.read_bytes() == before
    renamed.rename(renamed.with_name("renamed.jpg"))
    library.index()
    moved.rename(second / "moved.jpg")
    library.index([first])  # the move is seen in two runs: first it vanishes, then it appears
    library.index([second])
    query = write_photo(tmp_path / "query.jpg", 0, 50)
    species = {h.path.name: h.species for h in library.search(query, top_k=10).hits}
    assert species["renamed.jpg"] == "Rufous Hummingbird" and species["moved.jpg"] == "Blue Jay"
    assert library.species() == {"Blue Jay": 3, "Rufous Hummingbird": 1}
    assert library.label([renamed.with_name("renamed.jpg")], None) == 1
    assert library.species() == {"Blue Jay": 3}
    with pytest.raises(LibraryError, match="not in the index"):
        library.label([tmp_path / "nowhere.jpg"], "X")


def test_the_query_photos_own_label_never_counts(library, tmp_path):
    photos = write_image_folder(tmp_path / "photos", n_classes=2, per_class=4)
    library.add_folder(photos, species_from_folders=True)
    library.index()
    query = photos / "001.class_0" / "photo_000.jpg"
    library.label([query], "Lonely Bird")  # its own label, held by no other photo
    copy = shutil.copyfile(query, tmp_path / "copy.jpg")  # a byte-identical copy outside the index
    for photo in (query, copy):
        found = library.identify(photo)
        assert "Lonely Bird" not in {s.species for s in found.suggestions}
        assert found.suggestions[0].species == "class 0" and found.suggestions[0].source == "labels"
    result = library.search(copy, top_k=3)
    assert result.hits[0].same_photo and result.hits[0].species == "Lonely Bird"
    assert not any(h.same_photo for h in result.hits[1:])


def test_identify_json_and_grouped_search(tmp_path, tiny_model, capsys):
    photos = write_image_folder(tmp_path / "photos", n_classes=2, per_class=4)
    db = ["--db", str(tmp_path / "data" / "index.sqlite3"), "--cpu"]
    assert phpq([*db, "models", "import", str(tiny_model), "--activate"]) == 0
    assert phpq([*db, "add", str(photos), "--species-from-folders"]) == 0
    query = write_photo(tmp_path / "q.png", 1, 70)
    capsys.readouterr()
    assert phpq([*db, "identify", str(query), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["suggestions"], found
    for suggestion in found["suggestions"]:
        assert set(suggestion) >= {"species", "source", "confidence", "confident", "evidence"}
        assert suggestion["source"] in ("labels", "model") and 0 <= suggestion["confidence"] <= 1
    assert found["suggestions"][0]["species"] == "class 1"  # the tiny model has no prototypes: labels only
    assert ClassPrototypes.from_model(PHPQModel(tiny_model, prefer_cuda=False).info) is None
    assert {s["source"] for s in found["suggestions"]} == {"labels"}
    assert phpq([*db, "search", str(query), "--group", "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert groups[0]["species"] == "class 1"
    assert [g["best_similarity"] for g in groups] == sorted((g["best_similarity"] for g in groups), reverse=True)
    assert phpq([*db, "label", str(photos / "001.class_0"), "--clear"]) == 0
    assert "4 photo(s)" in capsys.readouterr().out
    assert phpq([*db, "label", str(query)]) == 2  # a path and no name
    assert phpq([*db, "label", str(query), str(query)]) == 2  # two paths and no name: not a species "q.png"


def test_prototypes_written_into_a_model_keep_its_id_and_give_model_suggestions(
    library, tmp_path, tiny_model, synthetic_folder
):
    from phpq_train.export.prototypes import main as write

    output = tmp_path / "with-prototypes.onnx"
    assert write([str(tiny_model), "--photos", str(synthetic_folder), "--threshold", "0.3", "-o", str(output)]) == 0
    with_prototypes = PHPQModel(output, prefer_cuda=False)
    assert with_prototypes.info.model_id == PHPQModel(tiny_model, prefer_cuda=False).info.model_id
    prototypes = ClassPrototypes.from_model(with_prototypes.info)
    assert prototypes.names == ["class 0", "class 1", "class 2", "class 3"] and prototypes.threshold == 0.3
    record = library.import_model(output)
    library.activate_model(record.id)
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=2)
    library.add_folder(photos)
    library.index()
    found = library.identify(write_photo(tmp_path / "q.png", 2, 80))
    assert [s.source for s in found.suggestions] and {s.source for s in found.suggestions} == {"model"}
    assert found.suggestions[0].species == "class 2"


def test_a_rebuilt_index_keeps_its_species_folders_and_the_labels_it_can_read(tmp_path, tiny_model):
    photos = write_image_folder(tmp_path / "photos", n_classes=2, per_class=2)
    plain = write_photo(tmp_path / "plain" / "Unsorted" / "a.jpg", 5, 0).parent.parent
    database = tmp_path / "data" / "index.sqlite3"
    with Library(database, prefer_cuda=False) as library:
        library.add_folder(photos, species_from_folders=True)
        library.add_folder(plain)
        library.index()
        library.label([plain / "Unsorted" / "a.jpg"], "Hand Named")
        library.label([photos / "002.class_1" / "photo_000.jpg"], None)  # cleared by hand stays cleared
    with Library.rebuild(database, prefer_cuda=False) as library:  # a readable index: every label kept
        assert {folder.path.name: folder.species_from_folders for folder in library.folders()} == {
            "photos": True,
            "plain": False,
        }
        library.index()
        assert library.species() == {"class 0": 2, "class 1": 1, "Hand Named": 1}
    database.write_bytes(b"not an index any more")
    with Library.rebuild(database, prefer_cuda=False) as library:  # unreadable: the folder list still says
        library.index()
        assert library.species() == {"class 0": 2, "class 1": 2}


def test_species_names_read_as_names_whatever_the_folder_style():
    assert display_name("015.Lazuli_Bunting") == "Lazuli Bunting"
    assert display_name("ABBOTTS BABBLER") == "Abbotts Babbler"
    assert display_name("Painted Bunting") == "Painted Bunting"
