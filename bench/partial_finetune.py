"""Partial fine-tuning on CPU: train the backbone's last blocks for the general-purpose descriptor.

The frozen part of the backbone runs once per photo and view; its output maps are cached (float16),
so each epoch only runs the trained blocks, the head, global max pooling and the projection (PCA start,
cosine classifier with label smoothing, as the descriptor's recipe). The descriptor of the centre view
is then scored on the three protocols (leave-one-out P@4, mAP@all), next to the same recipe with the
backbone frozen (``--blocks 0``).

Usage: python -m bench.partial_finetune --blocks 0 5 [--epochs 8] [--views 3] [--protocols unseen fresh val]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.descriptors import protocol_report
from bench.fusion_forms import expanded, protocol_scores
from phpq.eval.datasets import load_photo_set, split_protocol
from phpq.eval.metrics import retrieval_report
from phpq_train.backbone import EfficientNetLiteTaps
from phpq_train.config import load_config
from phpq_train.features import build_or_load_cache, build_or_load_maps
from phpq_train.model import CosineClassifier

log = logging.getLogger("partial_finetune")
RECIPE = load_config()  # the descriptor's classifier scale and label smoothing; the fused search's w and depth


class TrainedPart(nn.Module):
    """The last blocks, the head, global max pooling, centring and a projection to ``dim``."""

    def __init__(self, net: EfficientNetLiteTaps, cut: int, dim: int):
        super().__init__()
        self.blocks = nn.Sequential(*copy.deepcopy(list(net.blocks)[cut:]))
        self.head = copy.deepcopy(net.head)
        channels = self.head[0].out_channels
        self.register_buffer("mean", torch.zeros(channels))
        self.projection = nn.Linear(channels, dim, bias=False)

    def pooled(self, maps: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.blocks(maps)).amax(dim=(2, 3)), dim=1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.pooled(maps) - self.mean), dim=1)

    @torch.no_grad()
    def init_from_pca(self, pooled: torch.Tensor) -> None:
        self.mean.copy_(pooled.mean(0))
        _, _, vectors = torch.linalg.svd(pooled - self.mean, full_matrices=False)
        self.projection.weight.copy_(vectors[: self.projection.out_features])


def describe(model: TrainedPart, maps: np.ndarray, batch: int = 256) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate(
            [
                model(torch.from_numpy(np.asarray(maps[i : i + batch], np.float32))).numpy()
                for i in range(0, len(maps), batch)
            ]
        )


def fit(model: TrainedPart, maps: np.ndarray, train: np.ndarray, labels: np.ndarray, args) -> TrainedPart:
    torch.manual_seed(0)
    with torch.no_grad():
        centre = torch.from_numpy(np.asarray(maps[0, np.sort(train)], np.float32))
        model.init_from_pca(torch.cat([model.pooled(centre[i : i + 256]) for i in range(0, len(centre), 256)]))
    classes = np.unique(labels[train])
    remap = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
    remap[torch.from_numpy(classes)] = torch.arange(len(classes))
    classifier = CosineClassifier(model.projection.out_features, len(classes))
    groups = [
        {"params": [*model.blocks.parameters(), *model.head.parameters()], "lr": args.backbone_lr},
        {"params": [*model.projection.parameters(), *classifier.parameters()], "lr": args.lr},
    ]
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    steps = args.epochs * -(-len(train) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, [args.backbone_lr, args.lr], total_steps=steps, pct_start=0.1
    )
    generator = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        model.train()
        for module in model.modules():  # frozen batch-norm statistics: small batches, few classes per batch
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        order = train[torch.randperm(len(train), generator=generator).numpy()]
        views = torch.randint(0, maps.shape[0], (len(order),), generator=generator).numpy()
        start_time, total = time.perf_counter(), 0.0
        for start in range(0, len(order), args.batch):
            rows, picked = order[start : start + args.batch], views[start : start + args.batch]
            index = np.argsort(rows)  # memmap reads in order
            batch = torch.from_numpy(
                np.stack([maps[v, r] for v, r in zip(picked[index], rows[index], strict=True)]).astype(np.float32)
            )
            target = remap[torch.from_numpy(labels[rows[index]])]
            logits = RECIPE.loss.classifier_scale * classifier(model(batch))
            loss = F.cross_entropy(logits, target, label_smoothing=RECIPE.loss.descriptor_label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(rows)
        log.info("epoch %d: loss %.3f (%.0f s)", epoch + 1, total / len(order), time.perf_counter() - start_time)
    return model.eval()


def fused_report(scores: dict, split, descriptors: np.ndarray, position: dict) -> dict:
    """The recipe's fused search (its w and query expansion) with the recipe run's code ``scores`` for this
    protocol (``fusion_forms.protocol_scores``, frozen backbone) and these descriptors in place of its own."""
    query = descriptors[[position[p.path] for p in split.query]]
    database = descriptors[[position[p.path] for p in split.database]]
    weight = RECIPE.model.fusion_weight
    fused = weight * scores["code"] + (1 - weight) * query @ database.T
    database_fused = weight * scores["database_code"] + (1 - weight) * database @ database.T
    ranking = expanded(fused, database_fused, RECIPE.model.query_expansion, split.leave_one_out)
    report = retrieval_report(
        ranking, scores["query_labels"], scores["database_labels"], leave_one_out=split.leave_one_out
    )
    return {"fused P@4": round(report["P@4"], 4), "fused mAP@all": round(report["mAP@all"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 5], help="trained last blocks (0: frozen)")
    parser.add_argument("--cut", type=int, default=5, help="the cache holds the maps before the last CUT blocks")
    parser.add_argument("--protocols", nargs="*", default=["unseen", "fresh", "val"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--backbone-lr", type=float, default=1e-4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument(
        "--fuse-with", type=Path, help="recipe runs (val/, fresh/, unseen/): also score the fused search"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    photo_set = load_photo_set(args.data)
    net = EfficientNetLiteTaps(args.backbone, ("head",))
    cut = len(net.blocks) - args.cut
    maps = build_or_load_maps(photo_set.photos, args.cache_dir, args.backbone, args.input_size, cut, args.views)
    labels = photo_set.labels
    position = {photo.path: index for index, photo in enumerate(photo_set.photos)}
    # the recipe runs' codes come from their pooled-feature cache (the recipe's views, same backbone and size)
    codes = args.fuse_with and build_or_load_cache(
        photo_set.photos, args.cache_dir, args.backbone, args.input_size, RECIPE.views
    )
    for protocol in args.protocols:
        split = split_protocol(photo_set, protocol)
        scores = codes and protocol_scores(args.fuse_with, protocol, photo_set, codes)  # once for every --blocks
        train = np.array([position[p.path] for p in split.train])
        for blocks in args.blocks:
            model = TrainedPart(net, cut, args.dim)
            frozen = list(model.blocks)[: args.cut - blocks] + ([] if blocks else [model.head])
            for module in frozen:  # the first blocks of the trained part (all of it with --blocks 0) stay frozen
                module.requires_grad_(False)
            started = time.perf_counter()
            fit(model, maps, train, labels, args)
            features = describe(model, maps[0])
            report = protocol_report(features, labels, split, position)
            line = {
                "protocol": protocol,
                "blocks": blocks,
                "epochs": args.epochs,
                "views": args.views,
                "minutes": round((time.perf_counter() - started) / 60, 1),
                **report,
            }
            if args.fuse_with:
                line.update(fused_report(scores, split, features, position))
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
