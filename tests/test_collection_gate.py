"""The collection gate: a model's own search ranks as for the species it knows where most of the collection
looks like them (the trained descriptor alone), else as for birds from elsewhere; equal to numpy references."""

import json
from dataclasses import replace

import numpy as np
import pytest

from phpq import search
from phpq.cli import main as phpq
from phpq.descriptor import dequantize, quantize
from phpq.fusion import CollectionGate, NeighbourRerank, SearchSettings, SearchSteps
from phpq.gate import GatedRanking
from phpq.gui.ranking import rank_tooltip, ranked_as
from phpq.model import PHPQModel
from phpq.pq import decode, lookup_tables
from phpq.prototypes import ClassPrototypes
from phpq_train.export.prototypes import class_prototypes
from tests.conftest import write_photo
from tests.test_fused_search import rewritten_model

N_SUBSPACES, N_CODEWORDS, SUB_DIM, DIM, GENERAL = 4, 256, 8, 8, 3
B = 0.5  # the general view's weight in the stored descriptor
rng = np.random.default_rng(11)
CODEBOOKS = rng.standard_normal((N_SUBSPACES, N_CODEWORDS, SUB_DIM)).astype(np.float32)
N_SPECIES = 20
KNOWN_CODES = rng.integers(0, N_CODEWORDS, (N_SPECIES, N_SUBSPACES)).astype(np.uint8)  # a code per known species


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


PROTOTYPES = ClassPrototypes(
    [f"s{n}" for n in range(N_SPECIES)],
    unit(decode(KNOWN_CODES, CODEBOOKS).reshape(N_SPECIES, -1)),
    "subvectors",
    0.1,
    0.5,
)
TRAINED = (DIM - GENERAL, 1 - B)  # the trained part of the descriptor: its dims and share of the cosine


def trained_alone(vector: np.ndarray) -> np.ndarray:
    """A query descriptor as the known-species side compares it: its trained part, a unit vector of that
    part over the part's length in a stored descriptor (sqrt of its share), zero on the view."""
    part = vector[: TRAINED[0]]
    return np.concatenate([part / np.linalg.norm(part) / np.sqrt(TRAINED[1]), np.zeros(GENERAL, np.float32)])


def reference_fraction(codes: np.ndarray, probability: float) -> float:
    """The share of photos whose reconstructed code's softmax over the prototypes reaches ``probability``."""
    logits = unit(decode(codes, CODEBOOKS).reshape(len(codes), -1)) @ PROTOTYPES.vectors.T / PROTOTYPES.temperature
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return float(np.mean((weights / weights.sum(axis=1, keepdims=True)).max(axis=1) >= probability))


class Collection:
    """A CodeMatrix and what it stores, in numpy."""

    def __init__(self) -> None:
        self.matrix = search.CodeMatrix("gated", N_SUBSPACES, DIM)
        self.codes: dict[int, np.ndarray] = {}
        self.descriptors: dict[int, np.ndarray] = {}

    def put(self, ids: list[int], known: bool) -> None:
        if known:
            codes = KNOWN_CODES[rng.integers(0, N_SPECIES, len(ids))]
        else:
            codes = rng.integers(0, N_CODEWORDS, (len(ids), N_SUBSPACES)).astype(np.uint8)
        values, scales = quantize(unit(rng.standard_normal((len(ids), DIM))))
        self.matrix.upsert(np.array(ids), np.zeros(len(ids), np.int64), codes, (values, scales))
        for n, image_id in enumerate(ids):
            self.codes[image_id] = codes[n]
            self.descriptors[image_id] = dequantize(values[n : n + 1], scales[n : n + 1])[0]

    def remove(self, ids: list[int]) -> None:
        self.matrix.remove(ids)
        for image_id in ids:
            del self.codes[image_id], self.descriptors[image_id]

    def reference(self, table: np.ndarray, descriptor: np.ndarray, weight: float) -> dict[int, float]:
        """w * ADC / M + (1 - w) * descriptor . stored, per photo."""
        return {
            i: weight * table[np.arange(N_SUBSPACES), self.codes[i]].sum() / N_SUBSPACES
            + (1 - weight) * float(descriptor @ self.descriptors[i])
            for i in self.codes
        }


def assert_scores(ranking: search.Ranking, expected: dict[int, float]) -> None:
    assert sorted(ranking.image_ids.tolist()) == sorted(expected)
    for image_id, score in zip(ranking.image_ids.tolist(), ranking.scores.tolist(), strict=True):
        assert score == pytest.approx(expected[image_id], abs=1e-5)


def test_the_gate_ranks_by_what_the_collection_holds_and_follows_it_as_photos_come_and_go():
    gate = CollectionGate(probability=0.7, fraction=0.5, weight=0.2)
    table = lookup_tables(rng.standard_normal((1, N_SUBSPACES, SUB_DIM)).astype(np.float32), CODEBOOKS)[0]
    descriptor = unit(rng.standard_normal(DIM))
    query = search.Query(table, descriptor, 0.6, codebooks=CODEBOOKS)
    gated = replace(query, gate=GatedRanking(gate, PROTOTYPES, TRAINED))
    collection = Collection()
    collection.put(list(range(30)), known=True)
    collection.put(list(range(30, 40)), known=False)
    codes = np.stack([collection.codes[i] for i in sorted(collection.codes)])
    with collection.matrix.lock:
        fraction = collection.matrix.known_fraction(gated.gate, CODEBOOKS)
    assert fraction == pytest.approx(reference_fraction(codes, 0.7)) and 0.5 <= fraction < 1
    # mostly known species: the model's own weight, the general view's dimensions left out of the query
    ranking = collection.matrix.search(gated, 40)
    assert ranking.known_species is True and ranking.weight == 0.6
    assert_scores(ranking, collection.reference(table, trained_alone(descriptor), 0.6))
    # mostly birds from elsewhere: the gate's weight on the whole descriptor
    collection.put(list(range(40, 100)), known=False)
    ranking = collection.matrix.search(gated, 100)
    assert ranking.known_species is False and ranking.weight == 0.2
    assert_scores(ranking, collection.reference(table, descriptor, 0.2))
    # without a gate (a user's weight or steps): the query as it is, on the whole descriptor
    assert collection.matrix.search(query, 100).known_species is None
    assert_scores(collection.matrix.search(query, 100), collection.reference(table, descriptor, 0.6))
    collection.remove(list(range(40, 100)))  # the decision follows the collection
    assert collection.matrix.search(gated, 40).known_species is True
    assert search.CodeMatrix("empty", N_SUBSPACES, DIM).search(gated, 5).image_ids.tolist() == []


def test_each_side_of_the_gate_takes_its_own_steps_and_the_known_side_leaves_the_view_out_of_them():
    steps = SearchSteps(query_expansion=0, rerank=NeighbourRerank(depth=6, neighbours=2))
    gate = CollectionGate(0.7, 0.5, 0.3, steps.query_expansion, steps.rerank)
    table = lookup_tables(rng.standard_normal((1, N_SUBSPACES, SUB_DIM)).astype(np.float32), CODEBOOKS)[0]
    descriptor = unit(rng.standard_normal(DIM))
    own = search.Query(table, descriptor, 0.6, expansion=2, codebooks=CODEBOOKS)
    gated = replace(own, gate=GatedRanking(gate, PROTOTYPES, TRAINED))
    collection = Collection()
    collection.put(list(range(12)), known=False)
    elsewhere = replace(own, weight=0.3, expansion=0, rerank=steps.rerank)
    expected = collection.matrix.search(elsewhere, 12)
    ranking = collection.matrix.search(gated, 12)
    assert ranking.known_species is False
    assert ranking.image_ids.tolist() == expected.image_ids.tolist()
    np.testing.assert_allclose(ranking.scores, expected.scores, atol=1e-6)
    # known species, with query expansion: the query and its 2 best photos, each without the view
    collection.put(list(range(12, 40)), known=True)
    first = collection.reference(table, trained_alone(descriptor), 0.6)
    best = sorted(first, key=lambda i: (-first[i], i))[:2]
    expanded_table = (
        table + sum(lookup_tables(decode(collection.codes[i][None], CODEBOOKS), CODEBOOKS)[0] for i in best)
    ) / 3
    stored = sum(collection.descriptors[i] for i in best) * (np.arange(DIM) < TRAINED[0]) / TRAINED[1]
    expanded = (trained_alone(descriptor) + stored) / 3
    ranking = collection.matrix.search(gated, 40)
    assert ranking.known_species is True
    assert_scores(ranking, collection.reference(expanded_table, expanded, 0.6))


def test_the_gate_is_the_model_s_own_setting_and_needs_prototypes_of_its_code(tmp_path, tiny_model, caplog):
    gate_json = {"probability": 0.65, "fraction": 0.5, "weight": 0.2, "rerank": {"depth": 50, "neighbours": 3}}
    metadata = {
        "format_version": "2",
        "fusion_weight": "0.5",
        "descriptor_dim": "8",
        "collection_gate": json.dumps(gate_json),
    }
    settings = SearchSettings.from_metadata(metadata)
    assert settings.gate == CollectionGate(0.65, 0.5, 0.2, 0, NeighbourRerank(50, 3))
    assert "else w=0.2, no query expansion, the 50 best re-ranked by 3 neighbours" in settings.describe()
    assert settings.at_weight(0.8).gate is None and settings.with_steps(steps=SearchSteps(0, None)).gate is None
    assert settings.at_weight(None).gate == settings.gate and settings.with_steps(None).gate == settings.gate
    for bad, reason in (
        ({**gate_json, "probability": 1.5}, "probability"),
        ({**gate_json, "rerank": {"depth": 3, "neighbours": 3}}, "neighbours"),
    ):
        with pytest.raises(ValueError, match=reason):
            SearchSettings.from_metadata({**metadata, "collection_gate": json.dumps(bad)})
    model = PHPQModel(
        rewritten_model(tiny_model, tmp_path / "gated.onnx", "2", True, {"collection_gate": json.dumps(gate_json)}),
        prefer_cuda=False,
    )
    subvectors = np.ones((model.info.n_subspaces, model.codebooks.shape[2]), np.float32)
    descriptor = unit(np.ones(model.info.descriptor_dim))
    with caplog.at_level("WARNING"):
        assert search.model_query(model, subvectors, descriptor).gate is None  # no prototypes: no gate, said once
        assert search.model_query(model, subvectors, descriptor).gate is None
    assert sum("needs prototypes" in record.message for record in caplog.records) == 1
    names = model.info.class_names or ["a", "b"]
    vectors = unit(rng.standard_normal((len(names), model.info.n_subspaces * model.codebooks.shape[2])))
    prototypes = ClassPrototypes(names, vectors, "subvectors", 0.2, 0.5).to_metadata(len(names))
    general = json.dumps({"dim": 2, "weight": 0.25})
    extra = {"class_prototypes": prototypes, "general_descriptor": general, "class_names": json.dumps(names)}
    model.info = replace(model.info, metadata={**model.info.metadata, **extra})
    query = search.model_query(model, subvectors, descriptor)
    assert query.gate is not None and query.gate.gate == settings.gate
    trained = model.info.descriptor_dim - 2
    assert query.gate.trained == (trained, 0.75)
    assert search.model_query(model, subvectors, descriptor, weight=0.4).gate is None  # a user's weight


@pytest.mark.parametrize(("probability", "ranked_for"), [(0.0, "known species"), (1.0, "any bird")])
def test_a_gated_model_s_search_says_how_it_ranked_the_collection(
    tmp_path, tiny_model, synthetic_folder, capsys, probability, ranked_for
):
    """Through ``phpq search`` and the window's words: every photo like a known species (probability 0), or
    none of them (probability 1, above any softmax but a certain one)."""
    gate = {"probability": probability, "fraction": 0.5, "weight": 0.2}
    tiny = PHPQModel(tiny_model, prefer_cuda=False)
    prototypes = class_prototypes(tiny, synthetic_folder, None, "subvectors", 0.5)
    settings = {"collection_gate": json.dumps(gate)}
    settings["class_prototypes"] = prototypes.to_metadata(len(tiny.info.class_names))
    gated = rewritten_model(tiny_model, tmp_path / "gated.onnx", "2", True, settings)
    model = PHPQModel(gated, prefer_cuda=False)
    db = ["--db", str(tmp_path / "data" / "index.sqlite3"), "--cpu"]
    assert phpq([*db, "models", "import", str(gated), "--activate"]) == 0
    assert phpq([*db, "add", str(synthetic_folder)]) == 0
    capsys.readouterr()
    query = write_photo(tmp_path / "q.png", 2, 70)
    assert phpq([*db, "search", str(query), "--top", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ranked_for"] == ranked_for
    search_settings = model.info.search
    if ranked_for == "any bird":
        assert result["code_weight"] == 0.2
        assert ranked_as(0.2, search_settings, False).startswith("Mostly species the model was not trained on")
    else:
        assert result["code_weight"] in (search_settings.adaptive.low, search_settings.adaptive.high)
        assert "species the model" in ranked_as(result["code_weight"], search_settings, True)
    assert phpq([*db, "search", str(query), "--top", "3", "--weight", "0.3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ranked_for"] is None  # a user's weight: no gate
    assert "as any bird ranks" in rank_tooltip(search_settings)
