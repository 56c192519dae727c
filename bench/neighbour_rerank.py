"""Re-ranking the best photos by their neighbours, on top of the app's ranking (per-query weight and
query expansion 3), measured on one recipe's val, fresh and unseen checkpoints:

- ``local``: the query's ``depth`` best photos, each scored (own + mean of its ``neighbours`` nearest
  among those ``depth``) / 2 (``phpq.fusion.NeighbourRerank``, what the app does; nothing is stored);
- ``database``: database-side augmentation, every photo scored with the mean of its ``neighbours``
  nearest in the whole database (which the index would have to store and keep up to date; the query's
  own photo never counts as a neighbour).

Mutual similarities are the fused ones at the query's weight (``local``) or at the first scan's
(``database``). The setting is chosen by the rule of ``bench/fusion_forms.py``: val mAP@all at least
0.75, then the best mean of fresh mAP@all and unseen P@4. Each row prints [P@4, mAP@all] per protocol.

Usage: python -m bench.neighbour_rerank --runs runs/p256b8
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench.fusion_forms import add_run_arguments, all_protocol_scores, printed_choice, protocol_report, top_k
from bench.query_adaptive import adaptive_expanded, agreement_at
from phpq.fusion import AdaptiveWeight, NeighbourRerank
from phpq_train.config import load_config


def app_ranking(
    s: dict, adaptive: AdaptiveWeight, expansion: int = 3, agreement: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The app's scores before re-ranking (per-query weight, query expansion) and each query's w
    (``agreement``: each query's ``agreement_at(s, adaptive.k)``, when already computed)."""
    agreement = agreement_at(s, adaptive.k) if agreement is None else agreement
    weight = np.array([adaptive.weight(value) for value in agreement])
    return adaptive_expanded(s, weight, expansion), weight


def local(s: dict, scores: np.ndarray, weight: np.ndarray, rerank: NeighbourRerank) -> np.ndarray:
    """Each query's best ``depth`` photos re-scored by ``NeighbourRerank.rescored`` (they stay on top)."""
    result = np.array(scores, dtype=np.float64) - 1e3
    for query, best in enumerate(top_k(scores, rerank.depth, s["leave_one_out"])):
        w = weight[query]
        mutual = w * s["database_code"][np.ix_(best, best)] + (1 - w) * s["database_descriptor"][np.ix_(best, best)]
        result[query, best] = rerank.rescored(scores[query, best], mutual)
    return result


def app_scores(
    s: dict,
    adaptive: AdaptiveWeight,
    rerank: NeighbourRerank | None,
    expansion: int = 3,
    agreement: np.ndarray | None = None,
) -> np.ndarray:
    """The app's final scores (per-query weight, query expansion, neighbour re-ranking where ``rerank``
    is given) of scores already centred as the app centres them, where it does."""
    ranked, weight = app_ranking(s, adaptive, expansion, agreement)
    return ranked if rerank is None else local(s, ranked, weight, rerank)


def database_side(s: dict, scores: np.ndarray, weight: float, neighbours: int) -> np.ndarray:
    """(own + mean over the photo's nearest database neighbours, the query's photo left out) / 2."""
    database = weight * s["database_code"] + (1 - weight) * s["database_descriptor"]
    nearest = top_k(database, neighbours + 1, leave_one_out=True)  # one spare for the query's own photo
    result = np.empty_like(scores, dtype=np.float64)
    for query in range(len(scores)):
        values = scores[query][nearest]
        if s["leave_one_out"]:
            values = np.where(nearest == query, np.nan, values)
            spare_unused = ~np.isnan(values).any(axis=1)
            values[spare_unused, neighbours] = np.nan
        else:
            values = values[:, :neighbours]
        result[query] = (scores[query] + np.nanmean(values, axis=1)) / 2
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--val-floor", type=float, default=0.75)
    args = parser.parse_args()
    recipe = load_config().model
    adaptive = AdaptiveWeight(**recipe.adaptive_weight)
    scores = all_protocol_scores(args)
    ranked = {p: app_ranking(s, adaptive) for p, s in scores.items()}
    variants = {"none (the per-query weight and query expansion alone)": lambda s, r, w: r}
    for depth, neighbours in ((20, 3), (50, 3), (50, 5), (100, 3), (100, 5), (200, 5)):
        rerank = NeighbourRerank(depth, neighbours)
        variants[f"local, depth {depth}, {neighbours} neighbours"] = lambda s, r, w, rerank=rerank: local(
            s, r, w, rerank
        )
    for neighbours in (3, 5, 10):
        variants[f"database, {neighbours} neighbours"] = lambda s, r, w, n=neighbours: database_side(
            s, r, recipe.fusion_weight, n
        )
    chosen = None
    for name, variant in variants.items():
        row = {protocol: protocol_report(s, variant(s, *ranked[protocol])) for protocol, s in scores.items()}
        chosen = printed_choice({"re-ranking": name}, row, chosen, args.val_floor)
    print(json.dumps({"chosen": chosen}))


if __name__ == "__main__":
    main()
