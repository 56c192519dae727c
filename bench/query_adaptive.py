"""Can the fusion weight follow the query? The codes rank trained species well and collapse birds of
other species onto some CUB species' code; a per-query signal that tells the two apart would let the
weight go up for the first and down for the second.

Signals measured (each could be computed in the app at query time, from the first scan's candidates
re-scored by code alone and by descriptor alone; the app computes the agreement, with the recipe's
``adaptive_weight``):

- ``agreement@k``: how many of the k best photos by code (ties broken by the descriptor) are also
  among the k best by descriptor, over k (k = 10, 20), as ``phpq.fusion.agreement`` computes it;
- ``code plateau``: log of how many photos share the best code score (a collapsed code ties many);
- ``descriptor top-1``: the best descriptor cosine.

For each, the AUROC of "fresh (trained species) vs unseen" (0.5: no signal). Then, for the agreement,
the fused ranking with query expansion 3 where a query gets ``w_high`` when its agreement reaches ``t``
and ``w_low`` otherwise (or, ``t = linear``, ``w_low + (w_high - w_low) * agreement``), chosen by the
rule of ``bench/fusion_forms.py`` (val mAP@all >= 0.75, best mean of fresh mAP@all and unseen P@4).
Each row prints [P@4, mAP@all] per protocol.

Usage: python -m bench.query_adaptive --runs runs/p256b8
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench.code_confidence import auroc
from bench.fusion_forms import add_run_arguments, all_protocol_scores, printed_choice, protocol_report, top_k
from phpq.fusion import AdaptiveWeight, agreement
from phpq.search import EXPANSION_CANDIDATES
from phpq_train.config import load_config


def agreement_at(s: dict, k: int) -> np.ndarray:
    """Each query's agreement over the database (without the query's own photo, leave-one-out)."""
    values = []
    for row, (code_row, descriptor_row) in enumerate(zip(s["code"], s["descriptor"], strict=True)):
        others = np.arange(len(code_row)) != row if s["leave_one_out"] else slice(None)
        values.append(agreement(code_row[others], descriptor_row[others], k))
    return np.array(values)


def signals(s: dict) -> dict[str, np.ndarray]:
    """Per-query signals of one protocol's scores."""
    code, descriptor, loo = s["code"], s["descriptor"], s["leave_one_out"]
    by_descriptor = top_k(descriptor, 1, loo)
    masked = np.array(code, dtype=np.float64)
    if loo:
        np.fill_diagonal(masked, -np.inf)
    plateau = np.log((masked >= masked.max(axis=1, keepdims=True) - 1e-6).sum(axis=1))
    best_descriptor = np.take_along_axis(descriptor, by_descriptor, axis=1)[:, 0]
    return {
        "agreement@10": agreement_at(s, 10),
        "agreement@20": agreement_at(s, 20),
        "code plateau": -plateau,
        "descriptor top-1": best_descriptor,
    }


def candidate_agreement(s: dict, k: int, first_weight: float) -> np.ndarray:
    """Each query's agreement as the app computes it: over the first scan's ``EXPANSION_CANDIDATES``
    best photos (fused at ``first_weight``), not over the whole database."""
    code, descriptor, loo = s["code"], s["descriptor"], s["leave_one_out"]
    candidates = top_k(first_weight * code + (1 - first_weight) * descriptor, EXPANSION_CANDIDATES, loo)
    pairs = zip(candidates, code, descriptor, strict=True)
    return np.array([agreement(code_row[rows], descriptor_row[rows], k) for rows, code_row, descriptor_row in pairs])


def adaptive_expanded(s: dict, weight: np.ndarray, k: int = 3) -> np.ndarray:
    """Fused scores with a weight per query, expanded with the query's k best photos."""
    fused = weight[:, None] * s["code"] + (1 - weight[:, None]) * s["descriptor"]
    top = top_k(fused, k, s["leave_one_out"])
    expansion_code = s["database_code"][top].sum(axis=1)
    expansion_descriptor = s["database_descriptor"][top].sum(axis=1)
    return fused + weight[:, None] * expansion_code + (1 - weight[:, None]) * expansion_descriptor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--val-floor", type=float, default=0.75)
    args = parser.parse_args()
    scores = all_protocol_scores(args)
    per_query = {p: signals(s) for p, s in scores.items()}
    for name in per_query["fresh"]:
        quantiles = {p: np.quantile(v[name], [0.1, 0.5, 0.9]).round(3).tolist() for p, v in per_query.items()}
        value = auroc(per_query["fresh"][name], per_query["unseen"][name])
        print(json.dumps({"signal": name, "AUROC fresh vs unseen": round(value, 3), "q10/q50/q90": quantiles}))

    chosen = None
    for name in ("agreement@10", "agreement@20"):
        pooled = np.concatenate([v[name] for v in per_query.values()])
        for threshold in [None, *np.unique(np.quantile(pooled, [0.35, 0.5, 0.65]))]:
            for low, high in ((0.3, 0.7), (0.3, 0.8), (0.4, 0.7), (0.4, 0.8), (0.2, 0.8), (0.3, 0.9)):
                row = {}
                for protocol, s in scores.items():
                    signal = per_query[protocol][name]
                    weight = (
                        low + (high - low) * signal if threshold is None else np.where(signal >= threshold, high, low)
                    )
                    row[protocol] = protocol_report(s, adaptive_expanded(s, weight))
                setting = {"signal": name, "t": "linear" if threshold is None else round(float(threshold), 3)}
                setting["w"] = [low, high]
                chosen = printed_choice(setting, row, chosen, args.val_floor)
    print(json.dumps({"chosen": chosen}))
    recipe = load_config().model
    adaptive = AdaptiveWeight(**recipe.adaptive_weight)
    changed = {
        protocol: int(
            (
                (candidate_agreement(s, adaptive.k, recipe.fusion_weight) >= adaptive.threshold)
                != (per_query[protocol][f"agreement@{adaptive.k}"] >= adaptive.threshold)
            ).sum()
        )
        for protocol, s in scores.items()
    }
    print(json.dumps({"queries whose recipe weight changes when the agreement comes from the candidates": changed}))


if __name__ == "__main__":
    main()
