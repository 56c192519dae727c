"""Scan speed: the app's kernel against a naive numpy scan and FAISS IndexPQ, codes alone and fused, in one run.

Usage: python bench/scan.py [--sizes 10000 100000 1000000] [--subspaces 8] [--descriptor-dim 256] [--top 100]
                            [--repeats 20]

Random codes (K = 256) and a random query; every method ranks the same database. Naive numpy is
fancy-index gather + sum + a full argsort. FAISS (pip install faiss-cpu, the `bench` extra) is
IndexPQ with inner product, its codebooks and codes set directly, on one thread. Times are medians.

Fused (format-2 models): every photo also has an int8 descriptor with a scale (``phpq.descriptor``)
and its score is ``w * ADC / M + (1 - w) * scale * (query . descriptor)``. Naive numpy does the same
arithmetic in chunks of 65,536 rows (int8 -> float32, matrix-vector product) and a full argsort; the
kernel is timed on one thread and as the app runs it (slices taken in turn by two threads from
``phpq.scan.PARALLEL_BYTES`` of data on).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

import phpq.scan
from phpq.pq import lookup_tables
from phpq.scan import DescriptorScan, pack_codes, top_k

CHUNK = 65_536
WEIGHT = 0.5


def median_ms(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def scanned_bytes(n_subspaces: int, descriptor_dim: int) -> int:
    """Bytes the fused scan streams per photo: the code packed in 8-byte words, and for a format-2 model
    the int8 descriptor and its float32 scale."""
    code = 8 * pack_codes(np.zeros((1, n_subspaces), np.uint8)).shape[1]
    return code + (descriptor_dim + 4 if descriptor_dim else 0)


def naive_numpy(table: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    scores = np.zeros(len(codes), np.float32)
    for m in range(table.shape[0]):
        scores += table[m][codes[:, m]]
    return np.argsort(-scores)[:k]


def naive_fused(table: np.ndarray, codes: np.ndarray, descriptors: DescriptorScan, k: int) -> np.ndarray:
    """The fused score in plain numpy (``table`` and ``descriptors.query`` already weighted), full argsort."""
    scores = np.zeros(len(codes), np.float32)
    for m in range(table.shape[0]):
        scores += table[m][codes[:, m]]
    for start in range(0, len(codes), CHUNK):
        values = descriptors.values[start : start + CHUNK].astype(np.float32)
        scores[start : start + CHUNK] += descriptors.scales[start : start + CHUNK] * (values @ descriptors.query)
    return np.argsort(-scores)[:k]


def random_descriptors(size: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random int8 descriptors and the scales that make each a unit vector (the stored form)."""
    values = rng.integers(-127, 128, (size, dim), dtype=np.int8)
    return values, (1 / np.linalg.norm(values.astype(np.float32), axis=1)).astype(np.float32)


def faiss_index(codebooks: np.ndarray, codes: np.ndarray):
    """IndexPQ over externally trained codebooks and existing codes, or None without faiss."""
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(1)
    n_subspaces, _, sub_dim = codebooks.shape
    index = faiss.IndexPQ(n_subspaces * sub_dim, n_subspaces, 8, faiss.METRIC_INNER_PRODUCT)
    faiss.copy_array_to_vector(codebooks.ravel(), index.pq.centroids)
    index.is_trained = True
    faiss.copy_array_to_vector(np.ascontiguousarray(codes).ravel(), index.codes)
    index.ntotal = len(codes)
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--subspaces", type=int, default=8)
    parser.add_argument("--dim", type=int, default=128, help="sub-vector dimension")
    parser.add_argument("--descriptor-dim", type=int, default=256, help="E of the fused columns (0: codes only)")
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    codebooks = rng.standard_normal((args.subspaces, 256, args.dim)).astype(np.float32)
    query = rng.standard_normal((1, args.subspaces, args.dim)).astype(np.float32)
    table = lookup_tables(query, codebooks)[0]
    flat_query = query.reshape(1, -1)
    query_descriptor = rng.standard_normal(max(1, args.descriptor_dim)).astype(np.float32)
    query_descriptor /= np.linalg.norm(query_descriptor)
    fused_table = table * (WEIGHT / args.subspaces)
    print(f"M = {args.subspaces}, K = 256, top {args.top}; ms per query (median of {args.repeats}), ns per photo")
    codes_rows, fused_rows = [], []
    for size in args.sizes:
        codes = rng.integers(0, 256, (size, args.subspaces), dtype=np.uint8)
        words = pack_codes(codes)
        _, rows = top_k(table, words, args.top)
        assert set(rows.tolist()) == set(naive_numpy(table, codes, args.top).tolist()), "kernel disagrees"
        naive = median_ms(lambda c=codes: naive_numpy(table, c, args.top), max(3, args.repeats // 4))
        ours = median_ms(lambda w=words: top_k(table, w, args.top), args.repeats)
        index = faiss_index(codebooks, codes)
        faiss_ms = median_ms(lambda i=index: i.search(flat_query, args.top), args.repeats) if index else float("nan")
        ns = 1e6 / size
        codes_rows.append(
            f"{size:>9} | {naive:7.2f} ({naive * ns:4.1f}) | {faiss_ms:10.2f} ({faiss_ms * ns:4.1f}) |"
            f" {ours:6.2f} ({ours * ns:3.1f}) | {naive / ours:7.1f}x | {faiss_ms / ours:7.2f}x"
        )
        if not args.descriptor_dim:
            continue
        values, scales = random_descriptors(size, args.descriptor_dim, rng)
        descriptors = DescriptorScan((1 - WEIGHT) * query_descriptor, values, scales)
        _, rows = top_k(fused_table, words, args.top, descriptors=descriptors)
        expected = naive_fused(fused_table, codes, descriptors, args.top)
        assert len(set(rows.tolist()) ^ set(expected.tolist())) <= 2, "fused kernel disagrees"  # float rounding
        naive_ms = median_ms(partial(naive_fused, fused_table, codes, descriptors, args.top), 3)
        fused_scan = partial(top_k, fused_table, words, args.top, descriptors=descriptors)
        parallel_bytes = phpq.scan.PARALLEL_BYTES
        phpq.scan.PARALLEL_BYTES = 1 << 62
        one = median_ms(fused_scan, args.repeats)
        phpq.scan.PARALLEL_BYTES = parallel_bytes
        app_ms = median_ms(fused_scan, args.repeats)
        fused_rows.append(
            f"{size:>9} | {naive_ms:7.2f} ({naive_ms * ns:5.1f}) | {one:6.2f} ({one * ns:4.1f}) |"
            f" {app_ms:6.2f} ({app_ms * ns:4.1f}) | {ours:6.2f} | {naive_ms / app_ms:7.1f}x | {app_ms / ours:5.1f}x"
        )
    print(f"{'N':>9} | {'naive numpy':>12} | {'FAISS IndexPQ 1T':>17} | {'phpq kernel':>12} | vs naive | vs FAISS")
    print("\n".join(codes_rows))
    if fused_rows:
        row_bytes = scanned_bytes(args.subspaces, args.descriptor_dim)
        print(f"\nfused, E = {args.descriptor_dim} int8 + scale ({row_bytes} bytes a photo with the code), w {WEIGHT}")
        print(
            f"{'N':>9} | {'naive numpy':>13} | {'kernel 1T':>11} | {'kernel (app)':>12} | {'codes':>6} |"
            f" vs naive | vs codes"
        )
        print("\n".join(fused_rows))


if __name__ == "__main__":
    main()
