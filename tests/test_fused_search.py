"""Fused search end to end: format-1 and format-2 models, the schema migration, the weight, eval = search."""

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from phpq import search
from phpq.cli import main as phpq
from phpq.db import SCHEMA_VERSION, IndexDatabase, ModelRecord
from phpq.descriptor import dequantize, from_blobs, quantize
from phpq.fusion import (
    WHITENING_SAMPLE,
    AdaptiveWeight,
    CollectionCentring,
    NeighbourRerank,
    SearchSettings,
    SearchSteps,
)
from phpq.library import Library, LibraryError
from phpq.model import OUTPUTS_OF_FORMAT, ModelError, PHPQModel
from phpq.pq import decode, lookup_tables
from phpq.ranking import choice
from phpq.status import LibraryStatus
from phpq.zoom import Zoom
from phpq_train.evaluate import evaluate_exported_model, search_rankings
from tests.conftest import write_image_folder, write_photo


def rewritten_model(
    source: Path, target: Path, format_version: str, keep_descriptor: bool, settings: dict[str, str] | None = None
) -> Path:
    """The tiny model with the outputs of a format (its descriptor dropped, or kept), its metadata set to it and,
    when given, other search settings (``phpq.``-less metadata keys: "query_expansion": "0",
    "adaptive_weight": "{}", ...)."""
    model = onnx.load(str(source))
    wanted = set(OUTPUTS_OF_FORMAT[format_version]) - {"descriptor"} | ({"descriptor"} if keep_descriptor else set())
    outputs = [output for output in model.graph.output if output.name in wanted]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    props = {entry.key: entry.value for entry in model.metadata_props}
    props["phpq.format_version"] = format_version
    props["phpq.model_id"] = f"{props['phpq.model_id'][:50]}-format{format_version}-{keep_descriptor}"
    for key, value in (settings or {}).items():
        props[f"phpq.{key}"] = value
        props["phpq.model_id"] += f"-{key}={value}"
    if format_version == "1":
        for name in SEARCH_METADATA:
            props.pop(f"phpq.{name}")
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(target))
    return target


SEARCH_METADATA = (
    "descriptor_dim",
    "fusion_weight",
    "query_expansion",
    "adaptive_weight",
    "neighbour_rerank",
    "collection_centring",
)


def reference_centring(collection: np.ndarray, centring: CollectionCentring) -> tuple[np.ndarray, np.ndarray]:
    """The collection's shrunk mean m and whitening W (by eigendecomposition): a photo's descriptor term
    is unit(W (q - m)) . W (d - m)."""
    mean = collection.sum(axis=0) / (len(collection) + centring.prior)
    covariance = (collection - mean).T @ (collection - mean) / len(collection)  # every photo of a small one
    level = np.trace(covariance) / len(mean)
    shrunk = centring.whitening * covariance + (1 - centring.whitening) * level * np.eye(len(mean))
    values, vectors = np.linalg.eigh(shrunk)
    return mean, vectors @ np.diag(np.sqrt(level / values)) @ vectors.T


def reference_agreement(code: np.ndarray, descriptor: np.ndarray, k: int) -> float:
    """How many of the k best photos by code (ties: descriptor, then position) are among the k best by
    descriptor (ties: position), over k: the per-query weight's signal, written independently."""
    photos = range(len(code))
    by_code = sorted(photos, key=lambda i: (-code[i], -descriptor[i], i))[:k]
    by_descriptor = sorted(photos, key=lambda i: (-descriptor[i], i))[:k]
    return len(set(by_code) & set(by_descriptor)) / k


@pytest.fixture
def format1_model(tmp_path, tiny_model) -> Path:
    return rewritten_model(tiny_model, tmp_path / "codes-only.onnx", "1", keep_descriptor=False)


def stored(library: Library, model_id: str) -> dict[int, tuple[np.ndarray, bytes | None]]:
    """Each indexed photo's stored code and descriptor blob for a model, by image id."""
    encodings = library.db.load_encodings(model_id)
    rows = zip(encodings.image_ids.tolist(), encodings.codes, encodings.descriptors, strict=True)
    return {image_id: (code, blob) for image_id, code, blob in rows}


def open_library(tmp_path: Path, model: Path) -> Library:
    library = Library(tmp_path / "data" / "index.sqlite3", prefer_cuda=False)
    library.activate_model(library.import_model(model).id)
    return library


def test_a_format_1_model_still_searches_with_codes_alone(tmp_path, tiny_model, format1_model):
    codes_only = PHPQModel(format1_model, prefer_cuda=False)
    assert not codes_only.info.has_descriptor and codes_only.info.search.fusion_weight == 1.0
    assert codes_only.encode(np.zeros((2, 3, 64, 64), np.float32)).descriptors is None
    # a file whose outputs disagree with its format is refused, both ways
    for version, keep in (("2", False), ("1", True)):
        with pytest.raises(ModelError, match=f"format-{version}"):
            PHPQModel(rewritten_model(tiny_model, tmp_path / f"bad{version}.onnx", version, keep), prefer_cuda=False)

    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=4)
    with open_library(tmp_path, format1_model) as library:
        library.add_folder(photos)
        assert library.index().encoded == 16
        assert library.db.db.execute("SELECT COUNT(*) FROM descriptors").fetchone()[0] == 0
        assert library.status().kind == "codes only (format 1)"
        query = write_photo(tmp_path / "q.png", 2, index=50)
        hits = library.search(query, top_k=16).hits
        assert library.search(query, top_k=16, weight=0.0).hits == hits  # no descriptor: the weight cannot apply
        table = lookup_tables(codes_only.encode_paths([query]).subvectors, codes_only.codebooks)[0]
        codes = stored(library, library.active_model_id)
        for hit in hits:
            code = codes[hit.image_id][0]
            assert hit.similarity == pytest.approx(table[np.arange(len(code)), code].sum() / len(code), abs=1e-5)


def test_a_version_1_index_keeps_folders_and_codes_and_gains_descriptors(tmp_path, tiny_model, format1_model):
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=3)
    database = tmp_path / "data" / "index.sqlite3"
    with open_library(tmp_path, format1_model) as library:
        library.add_folder(photos)
        assert library.index().encoded == 12
        old_model = library.active_model_id
        old_codes = library.db.load_encodings(old_model).codes.copy()
    # turn the file into what the previous app version wrote: schema step 1 only
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TABLE descriptors")
        connection.execute("DROP TABLE labels")  # and the later steps
        connection.execute("ALTER TABLE folders DROP COLUMN species_from_folders")
        connection.execute("DELETE FROM _sqlite_migrations WHERE name IN ('m002_descriptors', 'm003_species_labels')")
    with sqlite3.connect(database) as connection:
        assert "descriptors" not in {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}

    with Library(database, prefer_cuda=False) as library:
        assert library.db.schema_version == 3
        assert [folder.path for folder in library.folders()] == [photos.resolve()]
        np.testing.assert_array_equal(library.db.load_encodings(old_model).codes, old_codes)
        assert library.status().indexed == 12  # the old model still searches with its codes
        new_model = library.import_model(tiny_model).id
        library.activate_model(new_model)
        assert library.status().pending == 12
        assert library.index().encoded == 12
        stored = library.db.load_encodings(new_model)
        assert len(stored.image_ids) == 12 and all(blob is not None for blob in stored.descriptors)
        dim = library.model_for().info.descriptor_dim
        assert {len(blob) for blob in stored.descriptors} == {dim + 4}
        np.testing.assert_array_equal(library.db.load_encodings(old_model).codes, old_codes)
        assert library.status().kind.startswith("codes + descriptor (fused, w=")


def test_the_weight_decides_between_codes_and_descriptor(tmp_path, tiny_model):
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=4)
    query = write_photo(tmp_path / "q.png", 1, index=60)
    one_weight = {
        "query_expansion": "0",
        "adaptive_weight": "{}",
        "neighbour_rerank": "{}",
        "collection_centring": "{}",
    }
    single_scan = rewritten_model(tiny_model, tmp_path / "single-scan.onnx", "2", True, one_weight)
    with open_library(tmp_path, single_scan) as library:
        library.add_folder(photos)
        library.index()
        model = library.model_for()
        encoding = model.encode_paths([query])
        table = lookup_tables(encoding.subvectors, model.codebooks)[0]
        forms = stored(library, library.active_model_id)

        def parts(image_id: int) -> tuple[float, float]:
            code, blob = forms[image_id]
            descriptor = dequantize(*from_blobs([blob], model.info.descriptor_dim))
            return table[np.arange(len(code)), code].sum() / len(code), float(descriptor[0] @ encoding.descriptors[0])

        weight = model.info.search.fusion_weight
        for override in (None, 0.0, 1.0, 0.25):
            w = weight if override is None else override
            hits = library.search(query, top_k=16, weight=override).hits
            for hit in hits:
                code_part, descriptor_part = parts(hit.image_id)
                assert hit.similarity == pytest.approx(w * code_part + (1 - w) * descriptor_part, abs=1e-5)
        # ties inside a class are broken by the descriptor: the fused list has (almost) no equal scores
        fused = [hit.similarity for hit in library.search(query, top_k=16).hits]
        assert len(set(fused)) == len(fused)
        with pytest.raises(LibraryError, match="weight"):
            library.search(query, weight=1.5)
    database = tmp_path / "data" / "index.sqlite3"
    assert phpq(["--db", str(database), "--cpu", "search", str(query), "--weight", "0", "--json"]) == 0
    assert phpq(["--db", str(database), "--cpu", "search", str(query), "--weight", "2"]) == 2


def test_query_expansion_ranks_by_the_mean_similarity_to_the_query_and_its_best_photos(
    tmp_path, tiny_model, monkeypatch
):
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=5)
    query = write_photo(tmp_path / "q.png", 2, index=70)
    with open_library(tmp_path, tiny_model) as library:
        library.add_folder(photos)
        library.index()
        model = library.model_for()
        depth, adaptive, centring = (
            model.info.search.query_expansion,
            model.info.search.adaptive,
            model.info.search.centring,
        )
        assert depth == 3 and adaptive is not None and centring is not None
        model_id = library.active_model_id
        ids = [hit.image_id for hit in library.search(query, top_k=100, weight=1.0).hits]
        forms = stored(library, model_id)
        codes = np.stack([forms[i][0] for i in ids])
        descriptors = dequantize(*from_blobs([forms[i][1] for i in ids], model.info.descriptor_dim))
        encoding = model.encode_paths([query])
        n_subspaces = codes.shape[1]
        # collection centring: every descriptor less the collection's (shrunk) mean and whitened, the
        # query's a unit vector; from there on plain inner products
        mean, whitening = reference_centring(descriptors, centring)
        descriptors = (descriptors - mean) @ whitening
        query_descriptor = whitening @ (encoding.descriptors[0] - mean)
        query_descriptor /= np.linalg.norm(query_descriptor)

        def parts(table: np.ndarray, descriptor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return sum(table[m, codes[:, m]] for m in range(n_subspaces)) / n_subspaces, descriptors @ descriptor

        code_part, descriptor_part = parts(lookup_tables(encoding.subvectors, model.codebooks)[0], query_descriptor)
        w = adaptive.weight(reference_agreement(code_part, descriptor_part, adaptive.k))

        def similarity(table: np.ndarray, descriptor: np.ndarray) -> np.ndarray:
            code_part, descriptor_part = parts(table, descriptor)
            return w * code_part + (1 - w) * descriptor_part

        first = similarity(lookup_tables(encoding.subvectors, model.codebooks)[0], query_descriptor)
        reconstructed = lookup_tables(decode(codes, model.codebooks), model.codebooks)
        best = np.argsort(-first)[:depth]
        expanded = (first + sum(similarity(reconstructed[i], descriptors[i]) for i in best)) / (1 + depth)
        # then the best photos by their neighbours among them: (own + mean of the nearest) / 2
        rerank = model.info.search.rerank
        assert rerank is not None and rerank.depth >= len(ids)
        rank = {photo: position for position, photo in enumerate(np.argsort(-expanded, kind="stable").tolist())}
        mutual = w * np.array(
            [
                [
                    sum(reconstructed[i, m, codes[j, m]] for m in range(n_subspaces)) / n_subspaces
                    for j in range(len(ids))
                ]
                for i in range(len(ids))
            ]
        )
        mutual += (1 - w) * descriptors @ descriptors.T
        final = np.empty_like(expanded)
        for i in range(len(ids)):
            others = sorted((j for j in range(len(ids)) if j != i), key=lambda j: (-mutual[i, j], rank[j]))
            final[i] = (expanded[i] + np.mean([expanded[j] for j in others[: rerank.neighbours]])) / 2
        result = library.search(query, top_k=len(ids))
        assert result.weight == w  # the weight the query was ranked with
        hits = result.hits
        assert len(hits) == len(ids) == 20
        for hit in hits:
            assert hit.similarity == pytest.approx(final[ids.index(hit.image_id)], abs=1e-4)
        assert [hit.similarity for hit in hits] == sorted((hit.similarity for hit in hits), reverse=True)
        assert not np.allclose(expanded, first, atol=1e-3)  # the expansion changed the scores
        assert not np.allclose(final, expanded, atol=1e-3)  # and so did the neighbours
        # a short list re-ranks only the first scan's best candidates (that scan is at the model's w)
        monkeypatch.setattr(search, "EXPANSION_CANDIDATES", 8)
        w0 = model.info.search.fusion_weight
        first_scan = np.argsort(-(w0 * code_part + (1 - w0) * descriptor_part))[:8]
        assert {hit.image_id for hit in library.search(query, top_k=3).hits} <= {ids[i] for i in first_scan}


def test_status_names_the_kind_of_search(tmp_path, tiny_model, capsys):
    with open_library(tmp_path, tiny_model) as library:
        info = library.model_for().info
        fixed_weight = rewritten_model(tiny_model, tmp_path / "fixed.onnx", "2", True, {"adaptive_weight": "{}"})
        fixed = library.import_model(fixed_weight)
        assert library.model_for(fixed.id).info.search.adaptive is None
        library.activate_model(fixed.id)
        expected = (
            f"codes + descriptor (fused, w={info.search.fusion_weight:g},"
            f" query expansion {info.search.query_expansion}, neighbour re-ranking, {info.search.centring.describe()})"
        )
        assert library.status().kind == expected
        library.activate_model(info.model_id)
    database = tmp_path / "data" / "index.sqlite3"
    assert phpq(["--db", str(database), "--cpu", "status", "--json"]) == 0
    low, high = info.search.adaptive.low, info.search.adaptive.high
    expected = (
        f"codes + descriptor (fused, w={low:g} or {high:g} by query, query expansion {info.search.query_expansion},"
        f" neighbour re-ranking, {info.search.centring.describe()}); zooms in on small birds (up to 56% of the frame)"
    )
    assert info.zoom.max_side == 0.56  # the recipe's, which the tiny model carries
    assert json.loads(capsys.readouterr().out)["kind"] == expected
    assert phpq(["--db", str(database), "--cpu", "status"]) == 0
    assert "search     codes + descriptor (fused" in capsys.readouterr().out
    assert IndexDatabase(database, read_only=True).schema_version == SCHEMA_VERSION == 3


def test_evaluation_ranks_exactly_as_search(tmp_path, tiny_model):
    from phpq.eval.datasets import load_photo_set

    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=5)
    with open_library(tmp_path, tiny_model) as library:
        library.add_folder(photos)
        library.index()
        model = library.model_for()
        gallery = load_photo_set(photos).photos
        paths = [photo.path.resolve() for photo in gallery]
        encoding = model.encode_paths(paths)
        for weight in (None, 0.0, 1.0):
            rankings = search_rankings(model, encoding, encoding, leave_one_out=True, weight=weight)
            for index, path in enumerate(paths):
                searched = [hit.path for hit in library.search(path, top_k=len(paths), weight=weight).hits]
                assert searched == [paths[i] for i in rankings[index]]
        metrics, _ = evaluate_exported_model(model, gallery, gallery, leave_one_out=True)
        assert 0.5 < metrics["mAP@all"] <= 1 and "P@4" in metrics


def test_a_per_query_weight_follows_how_far_code_and_descriptor_agree():
    rng = np.random.default_rng(7)
    n_photos, n_subspaces, n_codewords, dim = 60, 4, 16, 128
    codes = rng.integers(0, n_codewords, (n_photos, n_subspaces)).astype(np.uint8)
    table = rng.normal(size=(n_subspaces, n_codewords)).astype(np.float32)
    unit = rng.normal(size=(n_photos, dim)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    values, scales = quantize(unit)
    matrix = search.CodeMatrix("synthetic", n_subspaces, dim)
    ids = np.arange(100, 100 + n_photos, dtype=np.int64)
    matrix.upsert(ids, np.zeros_like(ids), codes, (values, scales))
    stored_descriptors = dequantize(values, scales)
    code_part = table[np.arange(n_subspaces), codes].sum(axis=1) / n_subspaces
    by_code = np.argsort(-code_part, kind="stable")
    adaptive = AdaptiveWeight(low=0.2, high=0.9, threshold=0.5, k=10)
    # a query whose descriptor points at the code's best photos, and one that points at its worst
    for chosen, expected_weight in ((by_code[:10], 0.9), (by_code[-10:], 0.2)):
        descriptor = stored_descriptors[chosen].sum(axis=0)
        descriptor /= np.linalg.norm(descriptor)
        descriptor_part = stored_descriptors @ descriptor
        signal = reference_agreement(code_part, descriptor_part, adaptive.k)
        assert (signal >= adaptive.threshold) == (expected_weight == adaptive.high)
        query = search.Query(table, descriptor, 0.5, adaptive=adaptive)
        scores, found, searched, used_weight = matrix.search(query, n_photos)[:4]
        assert used_weight == expected_weight
        assert searched == n_photos and sorted(found.tolist()) == ids.tolist()
        reference = expected_weight * code_part + (1 - expected_weight) * descriptor_part
        np.testing.assert_allclose(scores, reference[found - 100], atol=1e-5)
        assert list(found[:5] - 100) == list(np.argsort(-reference, kind="stable")[:5])
        # a fixed weight (the user's, or a model without a per-query weight) is used as it is
        fixed_scores, fixed_found, _, used_weight = matrix.search(search.Query(table, descriptor, 0.5), n_photos)[:4]
        assert used_weight == 0.5
        fixed = 0.5 * code_part + 0.5 * descriptor_part
        np.testing.assert_allclose(fixed_scores, fixed[fixed_found - 100], atol=1e-5)
    # photos left out of the results (the query itself) play no part in the signal either
    excluded = {int(ids[by_code[0]])}
    found = matrix.search(search.Query(table, descriptor, 0.5, adaptive=adaptive), 10, exclude=excluded).image_ids
    assert not excluded & set(found.tolist())


def test_malformed_search_settings_are_refused_when_the_model_loads(tmp_path, tiny_model):
    cases = (
        ("adaptive_weight", '{"low": 0.4, "high": 1.5, "threshold": 0.3, "k": 10}', "high"),
        ("adaptive_weight", "[1]", "object"),
        ("adaptive_weight", '{"low": 0.4}', "missing"),
        ("neighbour_rerank", '{"depth": 5, "neighbours": 5}', "neighbours < depth"),
        ("neighbour_rerank", "not json", "Expecting value"),
    )
    for key, text, reason in cases:
        bad = rewritten_model(tiny_model, tmp_path / "bad.onnx", "2", True, {key: text})
        with pytest.raises(ModelError, match=f"malformed metadata.*{reason}"):
            PHPQModel(bad, prefer_cuda=False)


def test_neighbour_reranking_averages_each_photo_with_its_nearest_among_the_best():
    rerank = NeighbourRerank(depth=4, neighbours=2)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    mutual = np.array(
        [[1.0, 0.1, 0.5, 0.9], [0.1, 1.0, 0.2, 0.3], [0.5, 0.2, 1.0, 0.4], [0.9, 0.3, 0.4, 1.0]], np.float32
    )
    # photo 0's two nearest are 3 and 2, photo 1's 3 and 2, photo 2's 0 and 3, photo 3's 0 and 2
    expected = [(0.9 + 0.65) / 2, (0.8 + 0.65) / 2, (0.7 + 0.75) / 2, (0.6 + 0.8) / 2]
    np.testing.assert_allclose(rerank.rescored(scores, mutual), expected, rtol=1e-6)
    tied = np.ones((4, 4), np.float32)  # equally near: the better-ranked photos count
    expected = [(0.9 + 0.75) / 2, (0.8 + 0.8) / 2, (0.7 + 0.85) / 2, (0.6 + 0.85) / 2]
    np.testing.assert_allclose(rerank.rescored(scores, tied), expected, rtol=1e-6)
    assert rerank.rescored(scores[:1], mutual[:1, :1]).tolist() == [pytest.approx(0.9)]  # a lone photo stays


def test_neighbour_reranking_copes_with_an_empty_or_one_photo_index():
    rng = np.random.default_rng(3)
    codebooks = rng.standard_normal((4, 16, 3)).astype(np.float32)
    table = rng.standard_normal((4, 16)).astype(np.float32)
    descriptor = np.ones(8, np.float32) / np.sqrt(8)
    query = search.Query(table, descriptor, 0.5, 3, codebooks, rerank=NeighbourRerank(depth=50, neighbours=5))
    matrix = search.CodeMatrix("small", 4, 8)
    assert matrix.search(query, 10).image_ids.tolist() == []
    values, scales = quantize(descriptor[None])
    matrix.upsert(np.array([7]), np.array([0]), np.zeros((1, 4), np.uint8), (values, scales))
    assert matrix.search(query, 10).image_ids.tolist() == [7]


@pytest.mark.parametrize("whitening", [0.0, 0.3])
def test_collection_centring_follows_the_collection_as_photos_come_and_go(whitening):
    rng = np.random.default_rng(5)
    n_subspaces, n_codewords, dim = 4, 16, 8
    table = rng.standard_normal((n_subspaces, n_codewords)).astype(np.float32)
    descriptor = rng.standard_normal(dim).astype(np.float32)
    descriptor /= np.linalg.norm(descriptor)
    centring = CollectionCentring(prior=10, whitening=whitening)
    query = search.Query(table, descriptor, 0.3, centring=centring)
    matrix = search.CodeMatrix("centred", n_subspaces, dim)
    stored: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def put(ids: list[int]) -> None:
        codes = rng.integers(0, n_codewords, (len(ids), n_subspaces)).astype(np.uint8)
        spread = np.linspace(0.2, 3.0, dim)  # a shared direction to remove, unequal spread to even out
        values, scales = quantize(rng.standard_normal((len(ids), dim)) * spread + 0.5)
        matrix.upsert(np.array(ids), np.zeros(len(ids), np.int64), codes, (values, scales))
        stored.update({i: (codes[n], dequantize(values[n : n + 1], scales[n : n + 1])[0]) for n, i in enumerate(ids)})

    def assert_matches_reference() -> None:
        ids = sorted(stored)
        mean, transform = reference_centring(np.stack([stored[i][1] for i in ids]), centring)
        unit = transform @ (descriptor - mean) / np.linalg.norm(transform @ (descriptor - mean))
        expected = {
            i: 0.3 * table[np.arange(n_subspaces), stored[i][0]].sum() / n_subspaces
            + 0.7 * unit @ transform @ (stored[i][1] - mean)
            for i in ids
        }
        ranking = matrix.search(query, len(ids))
        assert sorted(ranking.image_ids.tolist()) == ids
        for image_id, score in zip(ranking.image_ids.tolist(), ranking.scores.tolist(), strict=True):
            assert score == pytest.approx(expected[image_id], abs=1e-5)
        for other in (None, CollectionCentring(centring.prior, 0.0 if whitening else 0.3)):
            changed = matrix.search(replace(query, centring=other), len(ids)).scores
            assert not np.allclose(np.sort(changed), np.sort(ranking.scores), atol=1e-3)  # the setting counts

    assert matrix.search(query, 5).image_ids.tolist() == []  # an empty collection: nothing to centre on
    put(list(range(30)))
    assert_matches_reference()
    put([3, 4, 5])  # photos re-encoded: their old descriptors leave the mean
    matrix.remove([0, 29, 7])
    for image_id in (0, 29, 7):
        del stored[image_id]
    put([40, 41])  # rows reused after removals
    assert_matches_reference()
    with pytest.raises(ValueError, match="prior"):
        CollectionCentring(prior=-1)
    with pytest.raises(ValueError, match="whitening"):
        CollectionCentring(prior=10, whitening=1.0)


def test_collection_whitening_measures_every_photo_of_a_small_collection_and_a_sample_of_a_large_one():
    assert CollectionCentring(prior=1).describe() == "centred on the collection"
    assert CollectionCentring(prior=1, whitening=0.1).describe() == "centred and whitened on the collection"
    assert CollectionCentring.sample(0).tolist() == []
    assert CollectionCentring.sample(7).tolist() == list(range(7))
    assert CollectionCentring.sample(WHITENING_SAMPLE).tolist() == list(range(WHITENING_SAMPLE))
    large = CollectionCentring.sample(10 * WHITENING_SAMPLE + 3)
    assert len(large) <= WHITENING_SAMPLE and large[0] == 0 and large[-1] < 10 * WHITENING_SAMPLE + 3
    assert len(set(np.diff(large).tolist())) == 1  # evenly spaced
    centring = CollectionCentring(prior=0, whitening=0.5)
    assert centring.metric(np.zeros((0, 4), np.float32), np.zeros(4, np.float32)) is None
    assert centring.metric(np.ones((3, 4), np.float32), np.ones(4, np.float32)) is None  # no spread
    assert CollectionCentring(prior=0).metric(np.eye(4, dtype=np.float32), np.zeros(4, np.float32)) is None


def test_a_format_2_model_still_loads_and_never_zooms(tmp_path, tiny_model, synthetic_folder):
    from phpq.eval.datasets import load_photo_set

    format2 = PHPQModel(rewritten_model(tiny_model, tmp_path / "format2.onnx", "2", True), prefer_cuda=False)
    assert format2.info.output_names == ("subvectors", "codes", "descriptor") and format2.info.zoom is None
    photos = [p.path for p in load_photo_set(synthetic_folder).photos[:8]]
    encoded = format2.encode_paths(photos)
    assert encoded.attention is None and encoded.descriptors.shape == (8, format2.info.descriptor_dim)
    format3 = PHPQModel(tiny_model, prefer_cuda=False)
    assert format3.info.zoom is not None  # the same graph with its attention output zooms; unzoomed, it agrees
    format3.info = replace(format3.info, zoom=None)
    np.testing.assert_allclose(encoded.subvectors, format3.encode_paths(photos).subvectors, atol=1e-5)


def test_the_kind_of_search_names_the_general_view_and_a_zoom_on_every_photo():
    """``phpq status`` and the status bar's tooltip say what a model such as Thorough adds."""
    settings = SearchSettings(512, 0.4, 3)
    thorough = ModelRecord("a" * 64, "t", Path("t.onnx"), {"general_descriptor": '{"dim": 256, "weight": 0.5}'}, 0.0)
    plain = ModelRecord("b" * 64, "p", Path("p.onnx"), {"general_descriptor": "{}"}, 0.0)
    learned = ModelRecord("c" * 64, "h", Path("h.onnx"), {"general_descriptor": '{"from": "trained_head"}'}, 0.0)

    def kind(record: ModelRecord, zoom: Zoom | None) -> str:
        return LibraryStatus(Path("i"), 1, record, "CPU", 64, [], 0, 0, 0, 0, settings, zoom).kind

    base = settings.describe()
    assert kind(thorough, Zoom(1.0, 1.0)) == (
        f"{base}; with the untrained network's view of each photo; every photo encoded whole and around the bird"
    )
    assert kind(plain, Zoom(0.56, 1.3)) == f"{base}; zooms in on small birds (up to 56% of the frame)"
    assert kind(plain, None) == base
    assert kind(learned, None) == f"{base}; with a general view of each photo, learned from the untrained network"


def test_a_user_s_search_steps_rank_as_a_model_that_states_them(tmp_path, tiny_model, capsys):
    """Rank by: any bird (a weight and steps after the first scan over the model's own) ranks exactly as a
    model whose metadata states the same settings; ``phpq search --rank any`` ranks the same way."""
    photos = write_image_folder(tmp_path / "photos", n_classes=4, per_class=6)
    query = write_photo(tmp_path / "q.png", 1, index=60)
    any_bird = choice("any")
    rerank = any_bird.steps.rerank
    stated = {
        "fusion_weight": str(any_bird.weight),
        "adaptive_weight": "{}",
        "query_expansion": str(any_bird.steps.query_expansion),
        "neighbour_rerank": json.dumps({"depth": rerank.depth, "neighbours": rerank.neighbours}),
    }
    states_them = rewritten_model(tiny_model, tmp_path / "stated.onnx", "3", True, stated)
    with open_library(tmp_path / "chosen", tiny_model) as library:
        library.add_folder(photos)
        library.index()
        chosen = library.search(query, top_k=20, weight=any_bird.weight, steps=any_bird.steps)
        assert library.model_for().info.search.query_expansion != any_bird.steps.query_expansion  # a real change
    with open_library(tmp_path / "stated", states_them) as library:
        library.add_folder(photos)
        library.index()
        own = library.search(query, top_k=20)
    assert chosen.weight == own.weight == any_bird.weight
    assert [(hit.path, round(hit.similarity, 5)) for hit in chosen.hits] == [
        (hit.path, round(hit.similarity, 5)) for hit in own.hits
    ]
    database = tmp_path / "chosen" / "data" / "index.sqlite3"
    assert phpq(["--db", str(database), "--cpu", "search", str(query), "--top", "20", "--rank", "any", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [Path(hit["path"]) for hit in printed["results"]] == [hit.path for hit in chosen.hits]
    with pytest.raises(SystemExit):  # one or the other
        phpq(["--db", str(database), "search", str(query), "--rank", "any", "--weight", "0.3"])
    steps = SearchSteps(0, None)
    assert steps.describe() == "no query expansion, no neighbour re-ranking"
    assert SearchSettings(8, 0.5, 3, rerank=rerank).with_steps(steps) == SearchSettings(8, 0.5, 0, rerank=None)
