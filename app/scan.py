"""The ADC scan kernel: score packed PQ codes against a lookup table and keep the top k, in one pass.

Codes of up to 8 sub-spaces (64 bits at K = 256) are packed one uint64 word per photo, so a photo's
score is 8 byte extractions and 8 table loads from a 8 KiB table that stays in L1 cache. Longer codes
take several words. The kernel is compiled by numba (cached on disk after the first run), releases the
GIL, and fuses the scan with a bounded min-heap so no N-sized score array is sorted.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np

from app.locations import default_cache_dir

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


def top_k(
    table: np.ndarray, words: np.ndarray, k: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` rows of ``words`` by ADC score under ``table`` ([M, K]), best first.

    ``mask`` (bool [N]) keeps only the rows where it is True. Returns (scores float32, rows int64),
    at most ``k`` of each and fewer when fewer rows qualify.
    """
    n_rows = words.shape[0]
    k = min(k, n_rows)
    if k <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    if mask is not None and mask.shape != (n_rows,):
        raise ValueError(f"mask has shape {mask.shape}, expected ({n_rows},)")
    if "numba" not in sys.modules:  # numba's compiled-kernel cache goes to our data directory too
        os.environ.setdefault("NUMBA_CACHE_DIR", str((_kernel_cache_root or default_cache_dir()) / "numba"))
    from app._scan_kernel import scan_top_k  # imports numba: kept off the import path of the app

    no_mask = np.zeros(0, dtype=np.bool_)
    scores, rows = scan_top_k(
        pad_table(table), np.ascontiguousarray(words, dtype=np.uint64), k, no_mask if mask is None else mask
    )
    keep = rows >= 0
    scores, rows = scores[keep], rows[keep]
    order = np.lexsort((rows, -scores))
    return scores[order], rows[order]


def warm_up() -> None:
    """Compile (or load from numba's on-disk cache) the kernel now rather than on the first query."""
    top_k(np.zeros((8, N_CODEWORDS), np.float32), np.zeros((1, 1), np.uint64), 1)


def warm_up_in_background() -> threading.Thread:
    """Start ``warm_up`` in a daemon thread: loading numba takes about a second, which can overlap
    with loading the model and decoding the first query."""
    thread = threading.Thread(target=warm_up, name="phpq-scan-warm-up", daemon=True)
    thread.start()
    return thread
