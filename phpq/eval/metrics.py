"""Retrieval metrics shared by every evaluation path: mAP@all, mAP@k and precision@k."""

from __future__ import annotations

import numpy as np


def ranked_relevance(scores: np.ndarray, query_labels: np.ndarray, database_labels: np.ndarray) -> np.ndarray:
    """Boolean [Q, N]: relevance of the database items sorted by descending score for each query.

    Ties are broken by database order (stable sort), so results are deterministic.
    """
    order = np.argsort(-scores, axis=1, kind="stable")
    return database_labels[order] == query_labels[:, None]


def average_precision(relevance: np.ndarray, k: int | None = None) -> np.ndarray:
    """Average precision per query over the top ``k`` (all when None) of a ranked relevance matrix.

    The normaliser is the number of relevant items retrieved within the top k (the usual mAP@k of the
    hashing literature); queries without any relevant item retrieved score 0.
    """
    top = relevance if k is None else relevance[:, :k]
    hits = np.cumsum(top, axis=1)
    ranks = np.arange(1, top.shape[1] + 1)
    precision_at_hits = np.where(top, hits / ranks, 0.0)
    n_relevant = hits[:, -1] if top.shape[1] else np.zeros(top.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = precision_at_hits.sum(axis=1) / n_relevant
    return np.nan_to_num(ap, nan=0.0)


def precision_at_k(relevance: np.ndarray, k: int) -> np.ndarray:
    """Fraction of relevant items among the top ``k`` per query."""
    return relevance[:, :k].mean(axis=1)


DEFAULT_KS = (1, 4, 10, 100)


def retrieval_report(
    scores: np.ndarray,
    query_labels: np.ndarray,
    database_labels: np.ndarray,
    ks: tuple[int, ...] = DEFAULT_KS,
    leave_one_out: bool = False,
) -> dict[str, float]:
    """mAP@all, mAP@k and P@k for a [Q, N] score matrix (higher is more similar).

    ``leave_one_out``: queries and database are one gallery (row i is photo i), and each query's own
    entry is left out of its ranking.
    """
    return relevance_report(gallery_relevance(scores, query_labels, database_labels, leave_one_out), ks)


def gallery_relevance(
    scores: np.ndarray, query_labels: np.ndarray, database_labels: np.ndarray, leave_one_out: bool = False
) -> np.ndarray:
    """``ranked_relevance`` of a [Q, N] score matrix; ``leave_one_out`` as in ``retrieval_report`` (each
    query's own entry left out, so the result is [Q, N - 1])."""
    if leave_one_out:
        scores = np.array(scores, dtype=np.float64)
        np.fill_diagonal(scores, -np.inf)
    relevance = ranked_relevance(scores, np.asarray(query_labels), np.asarray(database_labels))
    return relevance[:, :-1] if leave_one_out else relevance


def relevance_report(relevance: np.ndarray, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    """mAP@all, mAP@k and P@k of a ranked relevance matrix [Q, N] (best first)."""
    report = {"mAP@all": float(average_precision(relevance).mean())}
    for k in ks:
        report[f"mAP@{k}"] = float(average_precision(relevance, k).mean())
        report[f"P@{k}"] = float(precision_at_k(relevance, k).mean())
    return report
