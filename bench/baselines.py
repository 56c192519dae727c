"""Frozen-backbone baselines on the project's protocols: the global-average-pooled head feature compared
by cosine (float), and the same feature compressed by plain k-means PQ (fitted on the protocol's training
photos, M sub-spaces of 256 codewords, ADC).

Reads the same feature cache as cached training (view 0 = the test-time centre crop), so the numbers
are comparable with the PHPQ rows. ``phpq-eval --baseline gap --data DIR --protocol P`` computes the
same thing from the photos. ``--variants`` adds unsupervised transforms of the frozen feature (centred,
signed square root, GAP + global max pooling, PCA whitening fitted on the training photos), each as a
float feature and compressed by the same k-means PQ.

Usage: python bench/baselines.py [--data ../shared/data/cub200/train] [--views 5] [--variants]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from phpq.eval.datasets import load_photo_set, split_protocol
from phpq_train.evaluate import evaluate_codes, evaluate_cosine, unit_rows
from phpq_train.features import build_or_load_cache
from phpq_train.model import ProductQuantizer


def pca_whitened(features: np.ndarray, train: np.ndarray, dim: int = 256) -> np.ndarray:
    """Centre and project on the top ``dim`` principal axes of the training photos, each scaled to unit variance."""
    centred = features - features[train].mean(axis=0)
    _, singular, axes = np.linalg.svd(centred[train], full_matrices=False)
    scale = singular[:dim] / np.sqrt(len(train))
    return centred @ axes[:dim].T / (scale + 1e-6 * scale[0])


def frozen_variants(gap: np.ndarray, gmp: np.ndarray, train: np.ndarray) -> dict[str, np.ndarray]:
    """Unsupervised transforms of the frozen head feature (fitted on the training photos only)."""
    return {
        "GAP centred": gap - gap[train].mean(axis=0),
        "GAP signed sqrt": np.sign(gap) * np.sqrt(np.abs(gap)),
        "GAP + GMP": unit_rows(gap) + unit_rows(gmp),
        "GAP PCA-whitened 256": pca_whitened(gap, train),
    }


def pq_report(
    features: np.ndarray, train: np.ndarray, query: np.ndarray, database: np.ndarray, labels: np.ndarray, bits: int
) -> dict[str, float]:
    """Plain k-means PQ (M = bits / 8 sub-spaces of 256 codewords) fitted on ``train``, scored with ADC."""
    n_subspaces = bits // 8
    width = (features.shape[1] // n_subspaces) * n_subspaces  # 1280 is not divisible by 6: drop the tail
    data = torch.from_numpy(np.ascontiguousarray(features[:, :width], dtype=np.float32))
    quantizer = ProductQuantizer(width, n_subspaces, 256, alpha=10.0, topk=256)
    quantizer.init_from_kmeans(data[train])
    with torch.no_grad():
        encoded = quantizer(data)
    return evaluate_codes(
        encoded.subvectors[query].numpy(),
        encoded.codes[query].numpy(),
        labels[query],
        encoded.codes[database].numpy().astype(np.uint8),
        labels[database],
        quantizer.normalized_codebooks().detach().numpy(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--views", type=int, default=5)
    parser.add_argument("--pq-bits", type=int, nargs="*", default=[16, 32, 48, 64])
    parser.add_argument("--variants", action="store_true", help="also unsupervised transforms of the feature")
    args = parser.parse_args()
    photo_set = load_photo_set(args.data)
    cache = build_or_load_cache(photo_set.photos, args.cache_dir, args.backbone, args.input_size, args.views)
    centre_crop = cache.view(0)
    gap = np.asarray(centre_crop[:, cache.layout.global_average_index("head").numpy()], dtype=np.float32)
    gmp = np.asarray(centre_crop[:, cache.layout.global_max_index("head").numpy()], dtype=np.float32)
    position = {photo.path: index for index, photo in enumerate(photo_set.photos)}
    labels = photo_set.labels
    for protocol in ("val", "unseen"):
        split = split_protocol(photo_set, protocol)
        query, database, train = (
            np.array([position[p.path] for p in photos]) for photos in (split.query, split.database, split.train)
        )
        report = evaluate_cosine(gap[query], labels[query], gap[database], labels[database])
        print(json.dumps({"protocol": protocol, "method": f"{args.backbone} GAP + cosine", **report}))
        centred = gap - gap[train].mean(axis=0)
        for bits in args.pq_bits:
            report = pq_report(centred, train, query, database, labels, bits)
            print(
                json.dumps({"protocol": protocol, "method": f"{args.backbone} GAP + k-means PQ {bits} bits", **report})
            )
        if not args.variants:
            continue
        bits = max(args.pq_bits)
        for name, features in frozen_variants(gap, gmp, train).items():
            report = evaluate_cosine(features[query], labels[query], features[database], labels[database])
            print(json.dumps({"protocol": protocol, "method": f"{args.backbone} {name} + cosine", **report}))
            report = pq_report(features, train, query, database, labels, bits)
            print(
                json.dumps(
                    {"protocol": protocol, "method": f"{args.backbone} {name} + k-means PQ {bits} bits", **report}
                )
            )


if __name__ == "__main__":
    main()
