"""The fused scan kernel: score packed PQ codes (and int8 descriptors) against a query, keep the top k.

Codes of up to 8 sub-spaces (64 bits at K = 256) are packed one uint64 word per photo, so a photo's
code score is 8 byte extractions and 8 table loads from a 8 KiB table that stays in L1 cache. Longer
codes take several words. With a descriptor, each photo's score also gets ``scale * (query . int8
descriptor)`` in the same pass (see ``phpq.descriptor``). The kernel is compiled by numba (cached on
disk after the first run), releases the GIL, and fuses the scan with a bounded min-heap so no N-sized
score array is sorted. Large matrices are scanned in slices by two threads and the heaps merged.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phpq.locations import default_cache_dir

CODES_PER_WORD = 8
N_CODEWORDS = 256


_kernel_cache_root: Path | None = None


def set_kernel_cache_root(cache_dir: Path) -> None:
    """The cache folder under which numba keeps the compiled kernel (set by the library to its own)."""
    global _kernel_cache_root
    _kernel_cache_root = cache_dir


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """Codes [N, M] uint8 -> words [N, ceil(M / 8)] uint64 (little-endian, zero padded)."""
    codes = np.asarray(codes, dtype=np.uint8)
    n_words = max(1, -(-codes.shape[1] // CODES_PER_WORD))
    padded = np.zeros((codes.shape[0], n_words * CODES_PER_WORD), dtype=np.uint8)
    padded[:, : codes.shape[1]] = codes
    return padded.view("<u8")


def pad_table(table: np.ndarray) -> np.ndarray:
    """Lookup table [M, K] -> float32 [8 * words, 256]; padded sub-spaces score 0 for the padded code 0."""
    n_subspaces, n_codewords = table.shape
    if n_codewords > N_CODEWORDS:
        raise ValueError(f"the scan kernel handles K <= {N_CODEWORDS} codewords, got {n_codewords}")
    n_words = max(1, -(-n_subspaces // CODES_PER_WORD))
    padded = np.zeros((n_words * CODES_PER_WORD, N_CODEWORDS), dtype=np.float32)
    padded[:n_subspaces, :n_codewords] = table
    return padded


# Scan in two threads from this much code + descriptor data on: bench/scan.py measured two threads at
# 0.56x one thread's time for 10^6 fused photos (268 MB) but 1.28x for 10^5 (27 MB).
PARALLEL_BYTES = 64 << 20
PARTS = 8  # slices the two threads take in turn, so a core that another program holds does less of the work
_helper: ThreadPoolExecutor | None = None


@dataclass(frozen=True)
class DescriptorScan:
    """The descriptor part of a fused scan: a query vector against every row's int8 values and scale."""

    query: np.ndarray  # [E] float32 (already multiplied by the descriptor's weight)
    values: np.ndarray  # [N, E] int8
    scales: np.ndarray  # [N] float32


def _kernel_arguments(
    table: np.ndarray, words: np.ndarray, descriptors: DescriptorScan | None
) -> tuple[np.ndarray, ...]:
    if "numba" not in sys.modules:  # numba's compiled-kernel cache goes to our data directory too
        os.environ.setdefault("NUMBA_CACHE_DIR", str((_kernel_cache_root or default_cache_dir()) / "numba"))
    n_rows = words.shape[0]
    if descriptors is None:
        descriptors = DescriptorScan(np.zeros(0, np.float32), np.zeros((n_rows, 0), np.int8), np.zeros(0, np.float32))
    elif descriptors.values.shape[0] != n_rows:
        raise ValueError(f"{descriptors.values.shape[0]} descriptors for {n_rows} codes")
    return (
        pad_table(table),
        np.ascontiguousarray(words, dtype=np.uint64),
        np.ascontiguousarray(descriptors.query, dtype=np.float32),
        np.ascontiguousarray(descriptors.values, dtype=np.int8),
        np.ascontiguousarray(descriptors.scales, dtype=np.float32),
    )


class Scorer:
    """One query's similarity to every row of a matrix, as the kernel computes it.

    The kernel's arguments (padded table, packed words, the descriptor part) are checked and packed once;
    ``top_k`` scans all rows with them and ``score`` scores listed rows (pinned copies, candidates to
    re-rank) with them, through the same kernel function, so a listed row gets exactly its scan score.
    """

    def __init__(self, table: np.ndarray, words: np.ndarray, descriptors: DescriptorScan | None = None):
        self._arguments = _kernel_arguments(table, words, descriptors)

    def top_k(self, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` rows, best first: (scores float32, rows int64), fewer when fewer rows qualify.

        ``mask`` (bool [N]) keeps only the rows where it is True."""
        table, words, query, values, scales = self._arguments
        n_rows = words.shape[0]
        k = min(k, n_rows)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if mask is not None and mask.shape != (n_rows,):
            raise ValueError(f"mask has shape {mask.shape}, expected ({n_rows},)")
        from phpq._scan_kernel import scan_top_k  # imports numba: kept off the import path of the app

        no_mask = np.zeros(0, dtype=np.bool_)

        def scan(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
            part_mask = no_mask if mask is None else mask[start:stop]
            part = (words[start:stop], query, values[start:stop], scales[start:stop])
            scores, rows = scan_top_k(table, *part, min(k, stop - start), part_mask)
            filled = rows >= 0  # fewer than k rows qualified
            return scores[filled], rows[filled] + start

        if n_rows * (words.shape[1] * 8 + values.shape[1]) >= PARALLEL_BYTES and (os.cpu_count() or 1) > 1:
            scores, rows = _in_two_threads(scan, n_rows)
        else:
            scores, rows = scan(0, n_rows)
        order = np.lexsort((rows, -scores))[:k]
        return scores[order], rows[order]

    def score(self, rows: np.ndarray) -> np.ndarray:
        """The scores ``top_k`` gives these rows (float32, in their order)."""
        if len(rows) == 0:
            return np.zeros(0, np.float32)
        from phpq._scan_kernel import score_rows

        return score_rows(*self._arguments, np.ascontiguousarray(rows, dtype=np.int64))


def _in_two_threads(
    scan: Callable[[int, int], tuple[np.ndarray, np.ndarray]], n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scan ``PARTS`` slices of the rows, taken in turn by this thread and the helper; the parts joined."""
    bounds = np.linspace(0, n_rows, PARTS + 1).astype(np.int64).tolist()
    no_rows = np.zeros(0, np.int64)
    parts: list[tuple[np.ndarray, np.ndarray]] = [(no_rows, no_rows)] * PARTS
    next_part = itertools.count()  # next() is atomic under the GIL

    def work() -> None:
        while (part := next(next_part)) < PARTS:
            parts[part] = scan(bounds[part], bounds[part + 1])

    helper = _helper_pool().submit(work)
    work()
    helper.result()
    return np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts])


def top_k(
    table: np.ndarray,
    words: np.ndarray,
    k: int,
    mask: np.ndarray | None = None,
    descriptors: DescriptorScan | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` rows of ``words`` by ADC score under ``table`` ([M, K]), plus the descriptor score when
    ``descriptors`` is given; best first (``Scorer.top_k`` of a one-off scorer)."""
    return Scorer(table, words, descriptors).top_k(k, mask)


def _helper_pool() -> ThreadPoolExecutor:
    """One helper thread: it and the calling thread take the slices of a scan in turn."""
    global _helper
    if _helper is None:
        _helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phpq-scan")
    return _helper


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) the kernel now rather than on the first query."""
    table, words = np.zeros((8, N_CODEWORDS), np.float32), np.zeros((1, 1), np.uint64)
    descriptors = DescriptorScan(np.zeros(1, np.float32), np.zeros((1, 1), np.int8), np.ones(1, np.float32))
    scorer = Scorer(table, words, descriptors)
    scorer.top_k(1)
    scorer.score(np.zeros(1, np.int64))


def warm_up_in_background() -> threading.Thread:
    """Start ``warm_up`` in a daemon thread: loading numba takes about a second, which can overlap
    with loading the model and decoding the first query."""
    thread = threading.Thread(target=warm_up, name="phpq-scan-warm-up", daemon=True)
    thread.start()
    return thread
