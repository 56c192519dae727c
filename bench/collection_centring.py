"""Collection centring and whitening on top of the app's ranking (per-query weight, query expansion 3,
neighbour re-ranking), measured on one recipe's val, fresh and unseen checkpoints: the descriptors
compared as they are, centred on each database's mean, and centred and whitened by its covariance
with a few shrinkages (``phpq.fusion.CollectionCentring``). The setting is chosen by the rule of
``bench/fusion_forms.py``: val mAP@all at least 0.75, then the best mean of fresh mAP@all and unseen
P@4. Each row prints [P@4, mAP@all] per protocol.

Usage: python -m bench.collection_centring --runs runs/p256b8 [--prior 100] [--whitening-values 0.05 0.1 0.2 0.3]
"""

from __future__ import annotations

import argparse
import json

from bench.fusion_forms import (
    add_run_arguments,
    all_protocol_scores,
    collection_centred,
    printed_choice,
    protocol_report,
)
from bench.neighbour_rerank import app_scores
from phpq.fusion import AdaptiveWeight, CollectionCentring, NeighbourRerank
from phpq_train.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--prior", type=int, default=100)
    parser.add_argument("--whitening-values", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3])
    parser.add_argument("--val-floor", type=float, default=0.75)
    args = parser.parse_args()
    if args.centring is not None or args.whitening:
        parser.error("--centring and --whitening are what this bench varies; use --prior and --whitening-values")
    recipe = load_config().model
    adaptive = AdaptiveWeight(**recipe.adaptive_weight)
    rerank = NeighbourRerank(**recipe.neighbour_rerank)
    scores = all_protocol_scores(args)
    settings: list[CollectionCentring | None] = [None, CollectionCentring(args.prior)]
    settings += [CollectionCentring(args.prior, whitening) for whitening in args.whitening_values]
    chosen = None
    for centring in settings:
        row = {}
        for protocol, s in scores.items():
            if centring is not None:
                s = collection_centred(s, centring)
            row[protocol] = protocol_report(s, app_scores(s, adaptive, rerank))
        name = "none" if centring is None else f"prior {centring.prior}, whitening {centring.whitening:g}"
        chosen = printed_choice({"centring": name}, row, chosen, args.val_floor)
    print(json.dumps({"chosen": chosen}))


if __name__ == "__main__":
    main()
