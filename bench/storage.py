"""What the stored form of the descriptor costs in ranking, and how many index bytes a photo it adds.

Usage: python bench/storage.py [--data ../shared/data/cub200/train] [--cache-dir runs/cache] [--dim 256]
                               [--index-photos 20000]

Descriptors: the descriptor head as training starts it (global max + average pooling of the head,
centred and projected on the training photos' principal axes, ``DescriptorHead.init_from_pca``) on
view 0 of the feature cache that cached training uses, for the ``fresh`` and ``unseen`` galleries
(leave-one-out, each photo a query). Every stored form is compared with float32 on the same gallery:
the share of float32's 10 nearest neighbours it keeps, how often the nearest one is the same, and P@4
and mAP@all. int8 is the app's form (``phpq.descriptor``); int4 (same per-photo scale, 15 levels) shows
the next step down.

Index bytes: a temporary index of ``--index-photos`` photos with 64-bit codes and int8 descriptors
(written by ``IndexDatabase.store_encoded``), its size after VACUUM with and without the descriptors.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from phpq.db import EncodedImage, IndexDatabase
from phpq.descriptor import dequantize, quantize, to_blobs
from phpq.eval.datasets import load_photo_set, split_protocol
from phpq.model import unit_rows
from phpq_train.evaluate import evaluate_cosine
from phpq_train.features import build_or_load_cache
from phpq_train.model import DescriptorHead


def int4(descriptors: np.ndarray) -> np.ndarray:
    """The int8 form with 15 levels instead of 255 (what 4 bits a value would keep)."""
    peak = np.abs(descriptors).max(axis=1, keepdims=True)
    return unit_rows(np.rint(7 * descriptors / peak))


FORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[int], int]]] = {
    "float32": (lambda d: d, lambda dim: 4 * dim),
    "float16": (lambda d: unit_rows(d.astype(np.float16)), lambda dim: 2 * dim),
    "int8 + scale (app)": (lambda d: dequantize(*quantize(d)), lambda dim: dim + 4),
    "int4 + scale": (int4, lambda dim: dim // 2 + 4),
}


def neighbours(queries: np.ndarray, database: np.ndarray, k: int) -> np.ndarray:
    """Each photo's k nearest others by cosine (photo i is query i and database row i), best first."""
    similarities = queries @ database.T
    np.fill_diagonal(similarities, -np.inf)
    return np.argsort(-similarities, axis=1, kind="stable")[:, :k]


def index_bytes(n_photos: int, dim: int) -> dict[str, float]:
    """Bytes a photo of an index with codes and descriptors, and without the descriptors (VACUUMed)."""
    rng = np.random.default_rng(0)
    descriptors = to_blobs(unit_rows(rng.standard_normal((n_photos, dim))))
    with tempfile.TemporaryDirectory() as temp:
        path = Path(temp) / "index.sqlite3"
        database = IndexDatabase(path)
        model_id = "f" * 64  # the length of a real model id (a SHA-256)
        database.add_model(model_id, "bench", path, {})
        folder = database.add_folder(Path(temp))
        ids = [database.insert_image(folder, f"{temp}/{i:07d}.jpg", 100_000, i, f"{i:032x}") for i in range(n_photos)]
        codes = rng.integers(0, 256, (n_photos, 8), dtype=np.uint8)
        rows = zip(ids, codes, descriptors, strict=True)
        database.store_encoded(model_id, [EncodedImage(i, c.tobytes(), 500, 400, None, d) for i, c, d in rows])
        sizes = {}
        for name in ("with descriptors", "without"):
            if name == "without":
                database.db.execute("DELETE FROM descriptors")
            database.db.execute("VACUUM")
            database.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes[name] = path.stat().st_size / n_photos
        database.close()
    return {**sizes, "descriptors": sizes["with descriptors"] - sizes["without"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    parser.add_argument("--views", type=int, default=5, help="views of the feature cache (only view 0 is read)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--index-photos", type=int, default=20_000)
    args = parser.parse_args()
    photo_set = load_photo_set(args.data)
    cache = build_or_load_cache(photo_set.photos, args.cache_dir, "efficientnet_lite0", 224, args.views)
    position = {photo.path: index for index, photo in enumerate(photo_set.photos)}
    head = DescriptorHead(cache.layout, ("head",), "both", args.dim)
    pooled = torch.from_numpy(np.ascontiguousarray(cache.features[0][:, head.index.numpy()])).float()
    head.index = torch.arange(len(head.index))
    for protocol in ("fresh", "unseen"):
        split = split_protocol(photo_set, protocol)
        with torch.no_grad():
            head.init_from_pca(pooled[[position[p.path] for p in split.train]])
            gallery = [position[p.path] for p in split.query]
            descriptors = head(pooled[gallery]).numpy()
        labels = photo_set.labels[gallery]
        reference = neighbours(descriptors, descriptors, 10)
        for name, (stored_form, row_bytes) in FORMS.items():
            stored = stored_form(descriptors)
            found = neighbours(descriptors, stored, 10)  # float queries, as in the app
            kept = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(reference, found, strict=True)])
            metrics = evaluate_cosine(descriptors, labels, stored, labels, leave_one_out=True)
            report = {
                "protocol": protocol,
                "form": name,
                "bytes": row_bytes(args.dim),
                "top10_kept": round(float(kept), 4),
                "top1_same": round(float(np.mean(reference[:, 0] == found[:, 0])), 4),
                "P@4": round(metrics["P@4"], 4),
                "mAP@all": round(metrics["mAP@all"], 4),
            }
            print(json.dumps(report), flush=True)
    sizes = index_bytes(args.index_photos, args.dim)
    print(json.dumps({"index_bytes_per_photo": {key: round(value, 1) for key, value in sizes.items()}}))


if __name__ == "__main__":
    main()
