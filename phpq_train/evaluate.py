"""Retrieval evaluation of PHPQ encodings: ADC (or SDC) scores, then the shared metrics of phpq.eval.metrics."""

from __future__ import annotations

import logging

import numpy as np

from phpq.descriptor import quantize
from phpq.eval.datasets import Photo
from phpq.eval.metrics import DEFAULT_KS, relevance_report, retrieval_report
from phpq.fusion import SearchSteps
from phpq.model import Encoding, PHPQModel, unit_rows
from phpq.pq import adc_scores, lookup_tables, sdc_scores
from phpq.search import CodeMatrix, model_query

log = logging.getLogger(__name__)


def evaluate_codes(
    query_subvectors: np.ndarray,
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    database_codes: np.ndarray,
    database_labels: np.ndarray,
    codebooks: np.ndarray,
    distance: str = "adc",
    ks: tuple[int, ...] = DEFAULT_KS,
    leave_one_out: bool = False,
) -> dict[str, float]:
    """mAP@all, mAP@k and P@k of queries against a database of PQ codes (see ``retrieval_report``)."""
    scores = code_scores(query_subvectors, query_codes, database_codes, codebooks, distance)
    return retrieval_report(scores, query_labels, database_labels, ks, leave_one_out)


def code_scores(
    query_subvectors: np.ndarray,
    query_codes: np.ndarray,
    database_codes: np.ndarray,
    codebooks: np.ndarray,
    distance: str = "adc",
) -> np.ndarray:
    """Scores [Q, N] of queries against PQ codes: ADC (the query's sub-vectors) or SDC (its code)."""
    if distance == "adc":
        return adc_scores(lookup_tables(query_subvectors.astype(np.float32), codebooks), database_codes)
    if distance == "sdc":
        return sdc_scores(query_codes, database_codes, codebooks)
    raise ValueError(f"distance must be 'adc' or 'sdc', got {distance!r}")


def evaluate_cosine(
    query_features: np.ndarray,
    query_labels: np.ndarray,
    database_features: np.ndarray,
    database_labels: np.ndarray,
    ks: tuple[int, ...] = DEFAULT_KS,
    leave_one_out: bool = False,
) -> dict[str, float]:
    """The same metrics for continuous features compared by cosine similarity (baselines)."""
    similarities = unit_rows(query_features) @ unit_rows(database_features).T
    return retrieval_report(similarities, query_labels, database_labels, ks, leave_one_out)


SUMMARY_KEYS = ("mAP@all", "P@4")  # what fused_report keeps of the descriptor and fused rankings


def fused_report(
    query: Encoding,
    query_labels: np.ndarray,
    database: Encoding,
    database_labels: np.ndarray,
    codebooks: np.ndarray,
    weights: tuple[float, ...],
    distance: str = "adc",
    leave_one_out: bool = False,
) -> dict[str, float]:
    """Codes alone (the plain keys), the continuous feature, the descriptor alone, and fused rankings
    ``w * ADC / M + (1 - w) * descriptor cosine`` for each w (keys ``fused@w_...``), from float descriptors."""
    codes = code_scores(query.subvectors, query.codes, database.codes, codebooks, distance) / codebooks.shape[0]
    descriptor_scores = unit_rows(query.descriptors) @ unit_rows(database.descriptors).T

    def report(scores: np.ndarray) -> dict[str, float]:
        return retrieval_report(scores, query_labels, database_labels, leave_one_out=leave_one_out)

    metrics = report(codes)
    continuous = unit_rows(query.subvectors.reshape(len(query.codes), -1))
    continuous_database = unit_rows(database.subvectors.reshape(len(database.codes), -1))
    metrics["continuous_mAP@all"] = report(continuous @ continuous_database.T)["mAP@all"]
    for name, scores in (
        ("descriptor", descriptor_scores),
        *((f"fused@{w:g}", w * codes + (1 - w) * descriptor_scores) for w in weights),
    ):
        metrics.update({f"{name}_{key}": value for key, value in report(scores).items() if key in SUMMARY_KEYS})
    return metrics


def evaluate_exported_model(
    model: PHPQModel,
    query: list[Photo],
    database: list[Photo],
    distance: str = "adc",
    threads: int = 2,
    leave_one_out: bool = False,
    weight: float | None = None,
    steps: SearchSteps | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Encode query and database photos with an exported model (no torch) and score them as ``phpq
    search`` does (``search_rankings``): fused at the model's weight or ``weight`` (and its steps after the
    first scan or ``steps``), codes alone for a
    format-1 model. ``distance="sdc"`` scores codes symmetrically instead (a comparison, not the app's).

    Returns the metrics and the codes of all photos, queries first.
    """
    encoded_query = model.encode_paths([p.path for p in query], threads=threads)
    encoded_database = (
        encoded_query if leave_one_out else model.encode_paths([p.path for p in database], threads=threads)
    )
    query_labels, database_labels = np.array([p.label for p in query]), np.array([p.label for p in database])
    if distance == "sdc":
        metrics = evaluate_codes(
            encoded_query.subvectors,
            encoded_query.codes,
            query_labels,
            encoded_database.codes,
            database_labels,
            model.codebooks,
            distance,
            leave_one_out=leave_one_out,
        )
    else:
        rankings = search_rankings(model, encoded_query, encoded_database, leave_one_out, weight, steps)
        relevance = np.stack([database_labels[ranking] for ranking in rankings]) == query_labels[:, None]
        metrics = relevance_report(relevance)
    return metrics, np.concatenate([encoded_query.codes, encoded_database.codes])


def search_rankings(
    model: PHPQModel,
    query: Encoding,
    database: Encoding,
    leave_one_out: bool = False,
    weight: float | None = None,
    steps: SearchSteps | None = None,
) -> list[np.ndarray]:
    """Every query's full ranking of the database (positions, best first) through the app's own search:
    the database in a ``CodeMatrix`` (descriptors in their stored int8 form), each query built by
    ``model_query`` and answered by ``CodeMatrix.search``. Leave-one-out (query i is database photo i)
    excludes the query's own photo, as ``phpq search`` leaves out an indexed query photo."""
    positions = np.arange(len(database.codes), dtype=np.int64)
    matrix = CodeMatrix("evaluation", model.info.n_subspaces, model.info.descriptor_dim)
    stored = None if database.descriptors is None else quantize(database.descriptors)
    matrix.upsert(positions, np.zeros_like(positions), database.codes, stored)
    rankings, known_species = [], None
    for index in range(len(query.codes)):
        descriptor = None if query.descriptors is None else query.descriptors[index]
        scan = model_query(model, query.subvectors[index], descriptor, weight, steps)
        ranking = matrix.search(scan, len(positions), exclude={index} if leave_one_out else None)
        rankings.append(ranking.image_ids)
        known_species = ranking.known_species
    if known_species is not None:
        kind = "the species it knows" if known_species else "birds from elsewhere"
        with matrix.lock:
            fraction = matrix.known_fraction(scan.gate, model.codebooks)
        log.info("the collection gate ranked as for %s (%.3f of the photos like a known species)", kind, fraction)
    return rankings
