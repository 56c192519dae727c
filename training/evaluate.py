"""Retrieval evaluation of PHPQ encodings: ADC (or SDC) scores, then the shared metrics of app.metrics."""

from __future__ import annotations

import numpy as np

from app.datasets import Photo
from app.metrics import retrieval_report
from app.model import PHPQModel
from app.pq import adc_scores, lookup_tables, sdc_scores


def evaluate_codes(
    query_subvectors: np.ndarray,
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    database_codes: np.ndarray,
    database_labels: np.ndarray,
    codebooks: np.ndarray,
    distance: str = "adc",
    ks: tuple[int, ...] = (10, 100),
) -> dict[str, float]:
    """mAP@all, mAP@k and P@k of queries against a database of PQ codes."""
    if distance == "adc":
        scores = adc_scores(lookup_tables(query_subvectors.astype(np.float32), codebooks), database_codes)
    elif distance == "sdc":
        scores = sdc_scores(query_codes, database_codes, codebooks)
    else:
        raise ValueError(f"distance must be 'adc' or 'sdc', got {distance!r}")
    return retrieval_report(scores, query_labels, database_labels, ks)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32; all-zero rows stay zero)."""
    features = features.astype(np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def evaluate_cosine(
    query_features: np.ndarray,
    query_labels: np.ndarray,
    database_features: np.ndarray,
    database_labels: np.ndarray,
    ks: tuple[int, ...] = (10, 100),
) -> dict[str, float]:
    """The same metrics for continuous features compared by cosine similarity (baselines)."""
    similarities = unit_rows(query_features) @ unit_rows(database_features).T
    return retrieval_report(similarities, query_labels, database_labels, ks)


def evaluate_exported_model(
    model: PHPQModel, query: list[Photo], database: list[Photo], distance: str = "adc", threads: int = 2
) -> tuple[dict[str, float], np.ndarray]:
    """Encode query and database photos with an exported model (no torch) and score them.

    Returns the metrics and the codes of all photos, queries first.
    """
    query_subvectors, query_codes = model.encode_paths([p.path for p in query], threads=threads)
    _, database_codes = model.encode_paths([p.path for p in database], threads=threads)
    metrics = evaluate_codes(
        query_subvectors,
        query_codes,
        np.array([p.label for p in query]),
        database_codes,
        np.array([p.label for p in database]),
        model.codebooks,
        distance,
    )
    return metrics, np.concatenate([query_codes, database_codes])
