"""The numba-compiled fused scan (see ``phpq.scan``); compiled once and cached on disk by numba."""

import numba
import numpy as np

_BLOCK = 4096


@numba.njit(nogil=True, cache=True, boundscheck=False, inline="always")
def word_score(table, base, word):
    return (
        table[base, word & 255]
        + table[base + 1, (word >> 8) & 255]
        + table[base + 2, (word >> 16) & 255]
        + table[base + 3, (word >> 24) & 255]
        + table[base + 4, (word >> 32) & 255]
        + table[base + 5, (word >> 40) & 255]
        + table[base + 6, (word >> 48) & 255]
        + table[base + 7, (word >> 56) & 255]
    )


@numba.njit(nogil=True, cache=True, boundscheck=False, fastmath={"reassoc"})
def score_block(table, words, query, descriptors, scales, start, stop, out):
    """Scores of rows start..stop into out: ADC lookups, plus scale * (query . descriptor) when the
    query has a descriptor (reassociation lets LLVM vectorise that int8 -> float32 dot product)."""
    n_words = words.shape[1]
    if n_words == 1:  # the common case (<= 64 bits) gets a loop LLVM can keep in registers
        for i in range(start, stop):
            out[i - start] = word_score(table, 0, words[i, 0])
    else:
        for i in range(start, stop):
            total = np.float32(0.0)
            for j in range(n_words):
                total += word_score(table, 8 * j, words[i, j])
            out[i - start] = total
    dim = query.shape[0]
    if dim:
        for i in range(start, stop):
            dot = np.float32(0.0)
            for j in range(dim):
                dot += query[j] * np.float32(descriptors[i, j])
            out[i - start] += scales[i] * dot


@numba.njit(nogil=True, cache=True, boundscheck=False)
def score_rows(table, words, query, descriptors, scales, rows):
    """Scores of the given rows, each through ``score_block`` (the scan's own arithmetic)."""
    out = np.empty(rows.shape[0], dtype=np.float32)
    for n in range(rows.shape[0]):
        score_block(table, words, query, descriptors, scales, rows[n], rows[n] + 1, out[n : n + 1])
    return out


@numba.njit(nogil=True, cache=True, boundscheck=False)
def scan_top_k(table, words, query, descriptors, scales, k, mask):
    n_rows = words.shape[0]
    use_mask = mask.shape[0] == n_rows
    heap_scores = np.full(k, -np.inf, dtype=np.float32)
    heap_rows = np.full(k, -1, dtype=np.int64)
    threshold = np.float32(-np.inf)
    block = np.empty(_BLOCK, dtype=np.float32)
    for start in range(0, n_rows, _BLOCK):
        stop = min(n_rows, start + _BLOCK)
        score_block(table, words, query, descriptors, scales, start, stop, block)
        for i in range(start, stop):
            score = block[i - start]
            if score <= threshold or (use_mask and not mask[i]):
                continue
            # Replace the heap's minimum and sift it down.
            heap_scores[0] = score
            heap_rows[0] = i
            parent = 0
            while True:
                child = 2 * parent + 1
                if child >= k:
                    break
                if child + 1 < k and heap_scores[child + 1] < heap_scores[child]:
                    child += 1
                if heap_scores[child] >= heap_scores[parent]:
                    break
                heap_scores[child], heap_scores[parent] = heap_scores[parent], heap_scores[child]
                heap_rows[child], heap_rows[parent] = heap_rows[parent], heap_rows[child]
                parent = child
            threshold = heap_scores[0]
    return heap_scores, heap_rows
