"""Frozen-backbone baseline on the project's protocols: global-average-pooled head feature + cosine.

Reads the same feature cache as cached training (view 0 = the test-time centre crop), so the numbers
are comparable with the PHPQ rows. ``phpq-eval --baseline gap --data DIR --protocol P`` computes the
same thing from the photos.

Usage: python bench/baselines.py [--data ../shared/data/cub200/train] [--views 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.data import load_photo_set, split_protocol
from training.evaluate import evaluate_cosine
from training.features import build_or_load_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--views", type=int, default=5)
    args = parser.parse_args()
    photo_set = load_photo_set(args.data)
    cache = build_or_load_cache(photo_set.photos, args.cache_dir, args.backbone, args.input_size, args.views)
    gap = np.asarray(cache.view(0)[:, cache.layout.global_average_index("head").numpy()], dtype=np.float32)
    position = {photo.path: index for index, photo in enumerate(photo_set.photos)}
    labels = photo_set.labels
    for protocol in ("val", "unseen"):
        split = split_protocol(photo_set, protocol)
        query = np.array([position[p.path] for p in split.query])
        database = np.array([position[p.path] for p in split.database])
        report = evaluate_cosine(gap[query], labels[query], gap[database], labels[database])
        print(json.dumps({"protocol": protocol, "method": f"{args.backbone} GAP + cosine", **report}))


if __name__ == "__main__":
    main()
