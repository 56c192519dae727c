"""A third similarity beside code and descriptor: the species posterior. The code's cosine classifier
(the training-only prototypes of ``PHPQHead.classifier``) gives each photo a softmax over the trained
species, the query's from its continuous sub-vectors, a stored photo's from its codes (so the index
would need nothing new), and two photos score the inner product of their posteriors. Measured on one
recipe's val, fresh and unseen checkpoints on top of the app's ranking (per-query weight, query
expansion 3, neighbour re-ranking, collection centring and whitening; float descriptors): the app's
scores plus ``weight`` x posterior similarity, for every query or only where the query's agreement
(``phpq.fusion.agreement`` of its 10 best by code and by descriptor) reaches ``gate``. Each row prints
[P@4, mAP@all] per protocol and the rule's objective (``bench/fusion_forms.py``).

Usage: python -m bench.class_posterior --runs runs/p256b8 [--scales 16 32] [--weights 0.5 1 2] [--gates 0 0.3 0.5]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench.fusion_forms import (
    add_run_arguments,
    all_protocol_scores,
    collection_centred,
    printed_choice,
    protocol_report,
)
from bench.neighbour_rerank import app_scores
from bench.query_adaptive import agreement_at
from phpq.fusion import AdaptiveWeight, CollectionCentring, NeighbourRerank
from phpq.pq import decode
from phpq_train.config import load_config


def posterior(cosines: np.ndarray, scale: float) -> np.ndarray:
    """Softmax over the species of ``scale`` x the cosines to their prototypes."""
    logits = scale * (cosines - cosines.max(axis=1, keepdims=True))
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def species_cosines(s: dict) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of the queries' sub-vectors and of the stored photos' decoded codes to the prototypes."""
    n_subspaces = s["codebooks"].shape[0]
    query = s["query_subvectors"].reshape(len(s["query_subvectors"]), -1) / np.sqrt(n_subspaces)
    stored = decode(s["database_codes"], s["codebooks"]).reshape(len(s["database_codes"]), -1) / np.sqrt(n_subspaces)
    return query @ s["prototypes"].T, stored @ s["prototypes"].T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--scales", type=float, nargs="+", default=[16, 32])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--gates", type=float, nargs="+", default=[0.0, 0.3, 0.5])
    parser.add_argument("--val-floor", type=float, default=0.75)
    args = parser.parse_args()
    recipe = load_config().model
    adaptive = AdaptiveWeight(**recipe.adaptive_weight)
    rerank = NeighbourRerank(**recipe.neighbour_rerank)
    centring = CollectionCentring(**recipe.collection_centring)
    scores = {p: collection_centred(s, centring) for p, s in all_protocol_scores(args).items()}
    app, agreement, cosines = {}, {}, {}
    for protocol, s in scores.items():
        app[protocol] = app_scores(s, adaptive, rerank)
        agreement[protocol] = agreement_at(s, adaptive.k)
        cosines[protocol] = species_cosines(s)
    chosen = printed_choice(
        {"posterior": "none"}, {p: protocol_report(s, app[p]) for p, s in scores.items()}, None, args.val_floor
    )
    for scale in args.scales:
        similarity = {p: posterior(q, scale) @ posterior(d, scale).T for p, (q, d) in cosines.items()}
        for gate in args.gates:
            for weight in args.weights:
                row = {}
                for protocol, s in scores.items():
                    gated = (agreement[protocol] >= gate - 1e-9)[:, None]
                    row[protocol] = protocol_report(s, app[protocol] + weight * gated * similarity[protocol])
                fields = {"scale": scale, "gate": gate, "weight": weight}
                chosen = printed_choice(fields, row, chosen, args.val_floor)
    print(json.dumps({"chosen": chosen}))


if __name__ == "__main__":
    main()
