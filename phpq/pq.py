"""Product-quantization arithmetic in numpy: lookup tables, asymmetric and symmetric scores."""

from __future__ import annotations

import numpy as np


def lookup_tables(query_subvectors: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Queries [Q, M, d] x codebooks [M, K, d] -> inner-product tables [Q, M, K]."""
    return np.einsum("qmd,mkd->qmk", query_subvectors, codebooks, optimize=True)


def adc_scores(tables: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Asymmetric scores [Q, N]: for every query, the sum over sub-spaces of table[m, code[n, m]]."""
    n_subspaces = tables.shape[1]
    scores = np.zeros((tables.shape[0], codes.shape[0]), dtype=np.float32)
    for m in range(n_subspaces):
        scores += tables[:, m, :][:, codes[:, m]]
    return scores


def decode(codes: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Codes [N, M] -> reconstructed sub-vectors [N, M, d]."""
    return codebooks[np.arange(codebooks.shape[0])[None, :], codes.astype(np.int64)]


def sdc_scores(query_codes: np.ndarray, codes: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """Symmetric scores [Q, N]: codeword-to-codeword inner products, summed over sub-spaces."""
    return adc_scores(lookup_tables(decode(query_codes, codebooks), codebooks), codes)
