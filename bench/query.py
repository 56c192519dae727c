"""End-to-end query latency on an index of 10^5 photos: warm (in process) and cold (new process).

Usage: python -m bench.query [--data ../shared/data/cub200/train] [--model FILE] [--size 100000] [--indexed 400]
                             [--queries 40]

A temporary index gets ``--indexed`` real CUB photos (every n-th, encoded with the default model or
``--model``), then random codes (and, for a format-2 model, random int8 descriptors) for made-up paths
up to ``--size`` entries, so the scan covers 10^5 photos. Queries are other CUB photos, not indexed.
Warm = `Library.search` in a process that already answered one query (decode + encode + scan + fetch
paths; the median of each stage, and the mean and 90th percentile of the total, which show the queries
that a model zooming in on small birds encodes twice), at the model's weight and, for a model with a
descriptor, with codes alone (``weight=1``) in the same run (and, for a model with a per-query weight, at
its fixed first-scan weight). Cold = `python -m
phpq.cli search` from process start to exit, next to the start of a bare `python -c pass` measured in
the same run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from bench.scan import median_ms, naive_fused, naive_numpy, scanned_bytes
from phpq.descriptor import quantize, to_blobs
from phpq.imaging import is_image_path
from phpq.library import Library
from phpq.model import unit_rows
from phpq.scan import DescriptorScan
from phpq.search import CodeMatrix, model_query


def pad_index(library: Library, size: int, rng: np.random.Generator) -> None:
    """Fill the index up to ``size`` photos with random codes under a made-up folder."""
    missing = size - library.db.counts(library.active_model_id)["images"]
    if missing <= 0:
        return
    info = library.model_for().info
    codes = rng.integers(0, 256, (missing, info.n_subspaces), dtype=np.uint8)
    descriptors = (
        to_blobs(unit_rows(rng.standard_normal((missing, info.descriptor_dim)))) if info.has_descriptor else []
    )
    with library.db.transaction() as db:
        folder_id = db["folders"].insert({"path": "/padding (not on disk)", "added": time.time()}).last_pk
        db.conn.executemany(
            "INSERT INTO images (folder_id, path, size, mtime_ns, hash) VALUES (?, ?, 0, 0, ?)",
            [(folder_id, f"/padding/{i:07d}.jpg", f"pad{i}") for i in range(missing)],
        )
        first = db.execute("SELECT MIN(id) FROM images WHERE folder_id = ?", [folder_id]).fetchone()[0]
        db.conn.executemany(
            "INSERT INTO codes (model_id, image_id, code) VALUES (?, ?, ?)",
            [(library.active_model_id, first + i, codes[i].tobytes()) for i in range(missing)],
        )
        db.conn.executemany(
            "INSERT INTO descriptors (model_id, image_id, vector) VALUES (?, ?, ?)",
            [(library.active_model_id, first + i, blob) for i, blob in enumerate(descriptors)],
        )


def print_stage_costs(library: Library, matrix: CodeMatrix, photo: Path, repeats: int = 40) -> None:
    """The scan stage alone (``CodeMatrix.search``, top 20) for one query as the model ranks it, then
    without its collection whitening, without its centring too, without its neighbour re-ranking too,
    then without its per-query weight either: what each costs. With whitening, also the first search
    after the collection changed, which measures the collection's spread again."""
    model = library.model_for()
    encoding = model.encode_paths([photo])
    descriptor = None if encoding.descriptors is None else encoding.descriptors[0]
    query = model_query(model, encoding.subvectors[0], descriptor)
    variants = {"as the model ranks": query}
    if query.centring is not None and query.centring.whitening:
        query = replace(query, centring=replace(query.centring, whitening=0.0))
        variants["without collection whitening"] = query
    if query.centring is not None:
        query = replace(query, centring=None)
        variants["without collection centring"] = query
    if query.rerank is not None:
        query = replace(query, rerank=None)
        variants["without neighbour re-ranking"] = query
    if query.adaptive is not None:
        variants["without the per-query weight either"] = replace(query, adaptive=None)
    costs = ", ".join(f"{name} {median_ms(partial(matrix.search, q, 20), repeats):.2f}" for name, q in variants.items())
    print(f"  scan stage alone, median of {repeats} (ms): {costs}")
    whitened = variants["as the model ranks"]
    if whitened.centring is not None and whitened.centring.whitening:
        code, values, scales = np.zeros((1, matrix.n_subspaces), np.uint8), *quantize(descriptor[None])

        def after_a_change() -> None:  # a photo comes and goes, and the next search measures the spread again
            matrix.upsert(np.array([-1]), np.array([-1]), code, (values, scales))
            matrix.search(whitened, 20)
            matrix.remove([-1])

        print(f"  the first search after the collection changed: {median_ms(after_a_change, repeats):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--model", type=Path, help="an exported model to index and search with (default: the bundled)")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--indexed", type=int, default=400, help="real photos in the index")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()
    photos = sorted(p for p in args.data.rglob("*") if p.is_file() and is_image_path(p))
    step = max(1, len(photos) // args.indexed)
    indexed, queries = photos[::step][: args.indexed], photos[1::step][: args.queries]
    with tempfile.TemporaryDirectory(prefix="phpq-bench-") as temp:
        work = Path(temp)
        for path in indexed:
            target = work / "photos" / path.relative_to(args.data)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        database = work / "index.sqlite3"
        with Library(database, prefer_cuda=False) as library:
            if args.model is not None:
                library.activate_model(library.import_model(args.model).id)
            library.add_folder(work / "photos")
            library.index()
            pad_index(library, args.size, np.random.default_rng(0))

        with Library(database, prefer_cuda=False) as library:
            library.search(queries[0])  # loads the matrix and the kernel
            info = library.model_for().info
            print(
                f"index: {args.size} photos ({args.indexed} real CUB photos, the rest random), top 20;"
                f" the scan streams {scanned_bytes(info.n_subspaces, info.descriptor_dim)} bytes a photo"
            )
            kind = library.status().kind
            weights: dict[str, float | None] = {kind: None}
            if info.search.adaptive is not None:  # the per-query weight's cost: the same search at a fixed w
                weights[f"fixed w={info.search.fusion_weight:g}"] = info.search.fusion_weight
            if info.has_descriptor:
                weights["codes alone (weight 1)"] = 1.0
            for name, weight in weights.items():
                timings = []
                for query in queries:
                    start = time.perf_counter()
                    result = library.search(query, top_k=20, weight=weight)
                    timings.append({**result.timings_ms, "total": (time.perf_counter() - start) * 1000})
                totals = [t["total"] for t in timings]
                print(
                    f"warm query, {name}, median of {len(queries)} (ms): "
                    + ", ".join(f"{key} {np.median([t[key] for t in timings]):.2f}" for key in timings[0])
                    + f"; total mean {np.mean(totals):.2f}, 90th percentile {np.percentile(totals, 90):.2f}"
                )
            stored = library.db.load_encodings(library.active_model_id)
            matrix = library.matrix()
            print_stage_costs(library, matrix, queries[0])
            table = np.random.default_rng(1).standard_normal((stored.codes.shape[1], 256)).astype(np.float32)
            naive = [median_ms(partial(naive_numpy, table, stored.codes, 20), 10)]
            if info.has_descriptor:
                values, scales = matrix.descriptors_from_blobs(stored.descriptors)
                query_descriptor = unit_rows(np.ones((1, info.descriptor_dim)))[0]
                descriptors = DescriptorScan(query_descriptor, values, scales)
                naive.append(median_ms(partial(naive_fused, table, stored.codes, descriptors, 20), 10))
            listed = ", ".join(f"{ms:.2f}" for ms in naive)
            print(f"  the same scan in naive numpy (baseline), codes alone then fused: {listed} ms")

        bare, cold = [], []
        command = [sys.executable, "-m", "phpq.cli", "--db", str(database), "--cpu", "search", str(queries[-1])]
        for _ in range(args.cold_runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            cold.append(time.perf_counter() - start)
        print(
            f"cold query (process start to exit, median of {args.cold_runs}): {np.median(cold):.2f} s;"
            f" bare `python -c pass`: {np.median(bare):.3f} s"
        )


if __name__ == "__main__":
    main()
