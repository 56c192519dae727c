"""Indexing throughput: CUB photos (fp32 and optionally int8), large camera JPEGs, unchanged re-index.

Usage: python bench/indexing.py [--data ../shared/data/cub200/train] [--model M.onnx] [--int8-model M.int8.onnx]
                                [--baseline-model OTHER.onnx] [--limit N] [--large 24]

Everything runs in fresh temporary databases; the photos are only read. Baselines measured in the
same run: the model alone on already-decoded batches (what the pipeline would reach if decoding were
free), and full-resolution decoding of the large JPEGs (what the reduced-scale JPEG decode saves).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from phpq.imaging import Preprocessing, is_image_path, load_image, preprocess
from phpq.library import Library
from phpq.locations import bundled_models
from phpq.model import PHPQModel


def model_only_rate(model_path: Path, photos: list[Path], batch_size: int = 32, batches: int = 6) -> float:
    """Photos per second of the model alone on one preprocessed batch (the upper bound)."""
    model = PHPQModel(model_path, prefer_cuda=False)
    size = model.info.input_size
    batch = np.stack([preprocess(load_image(path), Preprocessing(size)) for path in photos[:batch_size]])
    model.encode(batch)
    start = time.perf_counter()
    for _ in range(batches):
        model.encode(batch)
    return batches * len(batch) / (time.perf_counter() - start)


def index_rate(model_path: Path, folder: Path, work: Path) -> tuple[float, int, Library]:
    """Index ``folder`` into a new database with ``model_path``: (photos per second, photos, library)."""
    library = Library(work / "index.sqlite3", prefer_cuda=False)
    library.activate_model(library.import_model(model_path).id)
    library.add_folder(folder)
    report = library.index()
    return report.encoded / report.seconds, report.encoded, library


def write_large_jpegs(folder: Path, count: int, size: tuple[int, int] = (4000, 3000)) -> None:
    """Camera-sized JPEGs (quality 92) with smooth structure plus sensor-like noise."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for index in range(count):
        base = np.stack([np.sin(xx / (200 + 40 * c + index) + c) * 80 + 128 for c in range(3)], axis=-1)
        noise = rng.normal(0, 6, base.shape).astype(np.float32)
        array = np.clip(base + noise + yy[..., None] / height * 40, 0, 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"IMG_{index:04d}.jpg", quality=92)


def decode_rate(photos: list[Path], min_side: int | None) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda path: load_image(path, min_side=min_side).size, photos))
    return len(photos) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--model", type=Path, default=bundled_models()[0])
    parser.add_argument("--int8-model", type=Path, help="an int8 export of the same model (phpq-export --int8)")
    parser.add_argument("--baseline-model", type=Path, help="another model indexed the same way in the same run")
    parser.add_argument("--limit", type=int, help="index only the first N CUB photos (sorted by path)")
    parser.add_argument("--large", type=int, default=24, help="how many 4000 x 3000 JPEGs to generate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phpq-bench-") as temp:
        work = Path(temp)
        source = args.data
        photos = sorted(p for p in source.rglob("*") if p.is_file() and is_image_path(p))
        if args.limit:
            source = work / "subset"
            for path in photos[: args.limit]:
                target = source / path.relative_to(args.data)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            photos = sorted(p for p in source.rglob("*") if p.is_file())
        print(f"CUB photos: {len(photos)} from {source}")
        bound = model_only_rate(args.model, photos)
        print(f"  model alone on decoded batches (baseline): {bound:6.1f} photos/s")
        rate, count, library = index_rate(args.model, source, work / "fp32")
        print(f"  index, fp32 model: {rate:6.1f} photos/s ({count} photos, {rate / bound:.2f}x the model alone)")

        start = time.perf_counter()
        report = library.index()
        in_process = time.perf_counter() - start
        library.close()
        command = [sys.executable, "-m", "phpq.cli", "--db", str(work / "fp32" / "index.sqlite3"), "--cpu", "index"]
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            runs.append(time.perf_counter() - start)
        cli = float(np.median(runs))
        print(
            f"  re-index unchanged: {in_process:.2f} s in process ({report.unchanged} unchanged, {report.encoded}"
            f" encoded); `python -m phpq.cli index` from process start: {cli:.2f} s (median of 3)"
        )
        if args.int8_model:
            int8_bound = model_only_rate(args.int8_model, photos)
            rate8, count8, library8 = index_rate(args.int8_model, source, work / "int8")
            library8.close()
            print(
                f"  index, int8 model: {rate8:6.1f} photos/s ({count8} photos; model alone {int8_bound:.1f}/s,"
                f" {rate8 / rate:.2f}x fp32 indexing)"
            )

        if args.baseline_model:
            rate_base, count_base, library_base = index_rate(args.baseline_model, source, work / "baseline")
            library_base.close()
            print(
                f"  index, baseline model {args.baseline_model.name}: {rate_base:6.1f} photos/s ({count_base} photos;"
                f" the model under test indexes at {rate / rate_base:.2f}x of it)"
            )
        if args.large <= 0:
            return
        large = work / "large"
        write_large_jpegs(large, args.large)
        large_photos = sorted(large.iterdir())
        megabytes = sum(p.stat().st_size for p in large_photos) / len(large_photos) / 2**20
        full = decode_rate(large_photos, None)
        reduced = decode_rate(large_photos, 256)
        rate_large, count_large, library_large = index_rate(args.model, large, work / "large-db")
        library_large.close()
        print(f"Large JPEGs: {count_large} x 4000 x 3000 ({megabytes:.1f} MiB each)")
        print(
            f"  decode, full size (baseline): {full:6.1f} photos/s; reduced-scale (draft): {reduced:6.1f} photos/s"
            f" ({reduced / full:.1f}x)"
        )
        print(f"  index, fp32 model: {rate_large:6.1f} photos/s")


if __name__ == "__main__":
    main()
