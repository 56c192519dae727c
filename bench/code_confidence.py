"""Can the code itself tell a trained species from an unseen one? If it could, the fusion weight could
follow it per query (more code weight for known species, more descriptor weight for the rest).

The signal measured is the query's code confidence: the mean over sub-spaces of the cosine between its
sub-vector and the nearest codeword (the best entry of each row of its ADC table), available at query
time in the app at no cost. It is computed for the queries of each protocol with that protocol's model
(checkpoints of one recipe, centre-crop view of the feature cache), and the AUROC of "fresh (trained
species) vs unseen" says how well it separates them (0.5: not at all).

Usage: python -m bench.code_confidence --runs runs/r256
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench.fusion_forms import add_run_arguments, all_protocol_scores
from phpq.pq import lookup_tables


def code_confidence(scores: dict) -> np.ndarray:
    """Each query's mean cosine to its nearest codewords (``protocol_scores`` of the protocol's model)."""
    return lookup_tables(scores["query_subvectors"], scores["codebooks"]).max(axis=-1).mean(axis=-1)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a positive scores above a negative (Mann-Whitney)."""
    ranks = np.concatenate([positive, negative]).argsort().argsort() + 1
    return float(
        (ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_run_arguments(parser)
    args = parser.parse_args()
    confidence = {p: code_confidence(s) for p, s in all_protocol_scores(args).items()}
    for protocol, values in confidence.items():
        quantiles = np.quantile(values, [0.1, 0.5, 0.9]).round(3).tolist()
        print(json.dumps({"protocol": protocol, "confidence q10/q50/q90": quantiles}))
    for known in ("val", "fresh"):
        print(
            json.dumps(
                {"AUROC": f"{known} vs unseen", "value": round(auroc(confidence[known], confidence["unseen"]), 3)}
            )
        )


if __name__ == "__main__":
    main()
