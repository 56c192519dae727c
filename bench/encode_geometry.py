"""The input size and resize ratio photos are encoded at, for a model trained on 256 px random resized
crops (the pyramid's bins stay laid out for 256 px maps): measured on one recipe's val, fresh and
unseen checkpoints (partial mode, so the photos are encoded), ranked as the app ranks (per-query
weight, query expansion 3, neighbour re-ranking, collection centring and whitening; float
descriptors). A setting SIZE:RATIO resizes each photo's short side to RATIO x SIZE and centre-crops
SIZE x SIZE. Each row prints [P@4, mAP@all] per protocol; the setting is chosen by the rule of
``bench/fusion_forms.py`` (val mAP@all at least 0.75, then the best mean of fresh mAP@all and unseen
P@4). A line per setting also gives codes alone and descriptor alone. The cost is the backbone's: about
(SIZE / 256)^2 of its work at 256 px (``bench/indexing.py`` measures photos/s).

Usage: python -m bench.encode_geometry --runs runs/p256b8 [--settings 256:1.1428571428571428 288:1.1428571428571428 ...]
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
from phpq.imaging import RESIZE_RATIO
from phpq_train.config import load_config

DEFAULT_SETTINGS = [
    f"256:{RESIZE_RATIO}",
    "256:1.0",
    "256:1.3",
    f"288:{RESIZE_RATIO}",
    "288:1.3",
    f"320:{RESIZE_RATIO}",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, metavar="SIZE:RATIO")
    parser.add_argument("--val-floor", type=float, default=0.75)
    args = parser.parse_args()
    if args.encode_size or args.centring is not None:
        parser.error("--settings gives the sizes this bench measures; it ranks with the recipe's centring")
    recipe = load_config().model
    adaptive = AdaptiveWeight(**recipe.adaptive_weight)
    rerank = NeighbourRerank(**recipe.neighbour_rerank)
    centring = CollectionCentring(**recipe.collection_centring)
    chosen = None
    for setting in args.settings:
        size, ratio = setting.split(":")
        scores = all_protocol_scores(args, encode_size=int(size), encode_resize_ratio=float(ratio))
        alone = {
            p: {"codes": protocol_report(s, s["code"]), "descriptor": protocol_report(s, s["descriptor"])}
            for p, s in scores.items()
        }
        row = {
            p: protocol_report(s, app_scores(collection_centred(s, centring), adaptive, rerank))
            for p, s in scores.items()
        }
        fields = {"size": int(size), "ratio": round(float(ratio), 4)}
        print(json.dumps({**fields, "alone": alone}), flush=True)
        chosen = printed_choice(fields, row, chosen, args.val_floor)
    print(json.dumps({"chosen": chosen}))


if __name__ == "__main__":
    main()
