"""The collection gate's signal on the dev protocols, and the values its rule picks.

For each protocol's collection (fresh and unseen: the recipe trained on that protocol's training photos,
with class prototypes of its own training photos; other: the shipped model), the share of photos whose
stored code a model's class prototypes give at least probability p for some species. The rule (stated
in docs/results.md, "A collection gate", before the numbers through the app): p with the widest half-gap
between fresh and the higher of unseen and other, the fraction midway.

    python -m bench.collection_gate --fresh F.onnx --unseen U.onnx [--other D.onnx]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from phpq.descriptor import quantize
from phpq.eval.datasets import load_photo_set, split_protocol
from phpq.fusion import CollectionGate
from phpq.gate import GatedRanking
from phpq.locations import bundled_models
from phpq.model import PHPQModel
from phpq.search import CodeMatrix

PROBABILITIES = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9)


def known_fractions(model_path: Path, data: Path, protocol: str) -> dict[float, float]:
    """The share of the protocol's database photos like a known species, at each probability."""
    model = PHPQModel(model_path, prefer_cuda=False)
    photos = split_protocol(load_photo_set(data), protocol).database
    encoding = model.encode_paths([photo.path for photo in photos], threads=2)
    matrix = CodeMatrix("gate", model.info.n_subspaces, model.info.descriptor_dim)
    ids = np.arange(len(photos), dtype=np.int64)
    matrix.upsert(ids, np.zeros_like(ids), encoding.codes, quantize(encoding.descriptors))
    fractions = {}
    for probability in PROBABILITIES:
        gated = GatedRanking.of_model(model.info, CollectionGate(probability, 0.5, 0.2))
        if gated is None:
            raise SystemExit(f"{model_path}: no class prototypes of its code (python -m phpq_train.export.prototypes)")
        with matrix.lock:
            fractions[probability] = matrix.known_fraction(gated, model.codebooks)
    return fractions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", type=Path, required=True, help="the recipe trained on fresh, with prototypes")
    parser.add_argument("--unseen", type=Path, required=True, help="the recipe trained on unseen, with prototypes")
    parser.add_argument("--other", type=Path, default=bundled_models()[0], help="default: the shipped model")
    parser.add_argument("--cub", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--other-data", type=Path, default=Path("../shared/data/birds525-dev"))
    args = parser.parse_args()
    fresh = known_fractions(args.fresh, args.cub, "fresh")
    unseen = known_fractions(args.unseen, args.cub, "unseen")
    other = known_fractions(args.other, args.other_data, "other")
    print("| p | fresh | unseen | other | half the gap between fresh and the higher of the two |")
    print("|---|---|---|---|---|")
    gaps = {}
    for p in PROBABILITIES:
        gaps[p] = (fresh[p] - max(unseen[p], other[p])) / 2
        print(f"| {p:g} | {fresh[p]:.3f} | {unseen[p]:.3f} | {other[p]:.3f} | {gaps[p]:.3f} |")
    chosen = max(PROBABILITIES, key=lambda p: gaps[p])
    print(json.dumps({"probability": chosen, "fraction": round(fresh[chosen] - gaps[chosen], 4)}))


if __name__ == "__main__":
    main()
