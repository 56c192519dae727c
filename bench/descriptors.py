"""Candidates for the general-purpose descriptor, measured on the three protocols (val, fresh, unseen)
from the feature cache that cached training uses (view 0 = the test-time centre crop).

Frozen candidates (float cosine, no training): global average pooling (GAP) and global max pooling
(GMP) of the head, both together, both over the last two taps, and their projection on the training
photos' top principal axes. Trained candidates: ``phpq_train.model.DescriptorHead`` fitted on the
protocol's training photos alone (descriptor loss terms of ``phpq_train.losses``, random cached views),
with the loss weights, label smoothing, taps (``stride32+head``) and pooling (max, avg or both) given by
``--trained NAME=CLS,DISTILL[,SMOOTHING[,TAPS[,POOLING]]]``.

Usage: python bench/descriptors.py [--protocols val fresh unseen] [--trained recipe=1,1] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from phpq.eval.datasets import load_photo_set, split_protocol
from phpq_train.config import load_config
from phpq_train.evaluate import evaluate_cosine
from phpq_train.features import build_or_load_cache, mirror_averaged
from phpq_train.losses import LossConfig, descriptor_terms, weighted_total
from phpq_train.model import CosineClassifier, DescriptorHead


def protocol_report(features: np.ndarray, labels: np.ndarray, split, position: dict) -> dict[str, float]:
    """P@4 and mAP@all of cosine retrieval with ``features`` [photos, F] on one protocol's split."""
    query = np.array([position[p.path] for p in split.query])
    database = np.array([position[p.path] for p in split.database])
    report = evaluate_cosine(
        features[query], labels[query], features[database], labels[database], leave_one_out=split.leave_one_out
    )
    return {"P@4": round(report["P@4"], 4), "mAP@all": round(report["mAP@all"], 4)}


def fit_descriptor(
    pooled: torch.Tensor,
    train: np.ndarray,
    labels: torch.Tensor,
    head: DescriptorHead,
    loss: LossConfig,
    epochs: int,
    seed: int = 0,
) -> DescriptorHead:
    """Train the descriptor head alone on cached views (the same terms as in full training)."""
    torch.manual_seed(seed)
    n_classes = int(labels[train].max()) + 1
    classifier = CosineClassifier(head.projection.out_features, n_classes)
    parameters = [*head.projection.parameters(), *classifier.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    steps = epochs * -(-len(train) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-3, total_steps=steps, pct_start=0.1)
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=generator)
        views = torch.randint(0, pooled.shape[0], (len(order),), generator=generator)
        for start in range(0, len(order), 128):
            chunk = torch.from_numpy(train[order[start : start + 128].numpy()])
            batch = pooled[views[start : start + 128], chunk].float()
            descriptor = head(batch)
            terms = descriptor_terms(descriptor, classifier(descriptor), head.features(batch), labels[chunk], loss)
            total = weighted_total(terms, loss)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            schedule.step()
    return head.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    parser.add_argument("--views", type=int, default=5)
    parser.add_argument("--backbone", default="efficientnet_lite0", help="the cache's backbone")
    parser.add_argument("--input-size", type=int, default=224, help="the backbone's input size (cache key)")
    parser.add_argument("--protocols", nargs="*", default=["val", "fresh", "unseen"])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--frozen", action="store_true", help="also the frozen candidates")
    parser.add_argument("--flip", action="store_true", help="frozen candidates of photo + mirror image, averaged")
    parser.add_argument("--trained", nargs="*", default=[], help="NAME=CLS,DISTILL[,SMOOTHING[,TAPS[,POOLING]]]")
    args = parser.parse_args()
    photo_set = load_photo_set(args.data)
    cache = build_or_load_cache(photo_set.photos, args.cache_dir, args.backbone, args.input_size, args.views)
    if args.flip:
        cache = mirror_averaged(cache, photo_set.photos, args.cache_dir, args.backbone, args.input_size)
    position = {photo.path: index for index, photo in enumerate(photo_set.photos)}
    labels = photo_set.labels
    heads = {"GAP": ("head",), "GMP": ("head",), "GAP+GMP": ("head",), "GAP+GMP stride32+head": ("stride32", "head")}
    poolings = {"GAP": "avg", "GMP": "max"}
    inputs: dict[tuple, torch.Tensor] = {}

    def pooled_for(taps: tuple[str, ...], pooling: str) -> tuple[DescriptorHead, torch.Tensor]:
        head = DescriptorHead(cache.layout, taps, pooling, args.dim)
        key = (taps, pooling)
        if key not in inputs:  # only the columns the head reads, for every view
            inputs[key] = torch.from_numpy(np.ascontiguousarray(cache.features[:, :, head.index.numpy()]))
        head.index = torch.arange(len(head.index))
        return head, inputs[key]

    for protocol in args.protocols:
        split = split_protocol(photo_set, protocol)
        train = np.array([position[p.path] for p in split.train])
        rows = {}
        if args.frozen:
            for name, taps in heads.items():
                head, pooled = pooled_for(taps, poolings.get(name, "both"))
                with torch.no_grad():
                    rows[f"{name} float"] = head.features(pooled[0].float()).numpy()
                    head.init_from_pca(pooled[0, train])
                    rows[f"{name} PCA {args.dim}"] = head(pooled[0].float()).numpy()
        for spec in args.trained:
            name, values = spec.split("=")
            numbers = values.split(",")
            taps = tuple(numbers[3].split("+")) if len(numbers) > 3 else ("head",)
            pooling = numbers[4] if len(numbers) > 4 else "max"
            smoothing = float(numbers[2]) if len(numbers) > 2 else 0.1
            loss = replace(
                load_config().loss,
                descriptor_classification=float(numbers[0]),
                descriptor_distillation=float(numbers[1]),
                descriptor_label_smoothing=smoothing,
            )
            head, pooled = pooled_for(taps, pooling)
            head.init_from_pca(pooled[0, train])
            fit_descriptor(pooled, train, torch.from_numpy(labels), head, loss, args.epochs)
            with torch.no_grad():
                rows[f"trained {name}"] = head(pooled[0].float()).numpy()
        for name, features in rows.items():
            report = protocol_report(features, labels, split, position)
            print(json.dumps({"protocol": protocol, "size": args.input_size, "descriptor": name, **report}), flush=True)


if __name__ == "__main__":
    main()
