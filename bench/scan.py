"""ADC scan speed: the app's kernel against a naive numpy scan and FAISS IndexPQ, in one run.

Usage: python bench/scan.py [--sizes 10000 100000 1000000] [--subspaces 8] [--top 100] [--repeats 20]

Random codes (K = 256) and a random query; every method ranks the same database. Naive numpy is
fancy-index gather + sum + a full argsort. FAISS (pip install faiss-cpu, the `bench` extra) is
IndexPQ with inner product, its codebooks and codes set directly, on one thread. Times are medians.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from app.pq import lookup_tables
from app.scan import pack_codes, top_k


def median_ms(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000


def naive_numpy(table: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    scores = np.zeros(len(codes), np.float32)
    for m in range(table.shape[0]):
        scores += table[m][codes[:, m]]
    return np.argsort(-scores)[:k]


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
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    codebooks = rng.standard_normal((args.subspaces, 256, args.dim)).astype(np.float32)
    query = rng.standard_normal((1, args.subspaces, args.dim)).astype(np.float32)
    table = lookup_tables(query, codebooks)[0]
    flat_query = query.reshape(1, -1)
    print(f"M = {args.subspaces}, K = 256, top {args.top}; ms per query (median of {args.repeats}), ns per code")
    print(f"{'N':>9} | {'naive numpy':>12} | {'FAISS IndexPQ 1T':>17} | {'phpq kernel':>12} | vs naive | vs FAISS")
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
        print(
            f"{size:>9} | {naive:7.2f} ({naive * ns:4.1f}) | {faiss_ms:10.2f} ({faiss_ms * ns:4.1f}) |"
            f" {ours:6.2f} ({ours * ns:3.1f}) | {naive / ours:7.1f}x | {faiss_ms / ours:7.2f}x"
        )


if __name__ == "__main__":
    main()
