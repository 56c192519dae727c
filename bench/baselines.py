"""Frozen-backbone baselines on the project's protocols: the global-average-pooled head feature compared
by cosine (float), and the same feature compressed by plain k-means PQ (fitted on the protocol's training
photos, M sub-spaces of 256 codewords, ADC).

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
import torch

from app.datasets import load_photo_set, split_protocol
from training.evaluate import evaluate_codes, evaluate_cosine
from training.features import build_or_load_cache
from training.model import ProductQuantizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--views", type=int, default=5)
    parser.add_argument("--pq-bits", type=int, nargs="*", default=[16, 32, 48, 64])
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
        train = np.array([position[p.path] for p in split.train])
        centred = torch.from_numpy(gap - gap[train].mean(axis=0))
        for bits in args.pq_bits:
            n_subspaces = bits // 8
            width = (gap.shape[1] // n_subspaces) * n_subspaces  # 1280 is not divisible by 6: drop the tail
            quantizer = ProductQuantizer(width, n_subspaces, 256, alpha=10.0, topk=256)
            quantizer.init_from_kmeans(centred[train, :width])
            with torch.no_grad():
                encoded = quantizer(centred[:, :width])
            codebooks = quantizer.normalized_codebooks().detach().numpy()
            pq = evaluate_codes(
                encoded.subvectors[query].numpy(),
                encoded.codes[query].numpy(),
                labels[query],
                encoded.codes[database].numpy().astype(np.uint8),
                labels[database],
                codebooks,
            )
            print(json.dumps({"protocol": protocol, "method": f"{args.backbone} GAP + k-means PQ {bits} bits", **pq}))


if __name__ == "__main__":
    main()
