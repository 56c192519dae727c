"""The ADC scan kernel and the in-memory code matrix against plain numpy."""

import numpy as np
import pytest

from app.pq import adc_scores
from app.scan import pack_codes, top_k
from app.search import CodeMatrix


def reference_top_k(table, codes, k, mask=None):
    scores = adc_scores(table[None], codes)[0]
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[:k]
    order = order[np.isfinite(scores[order])]
    return scores[order], order


@pytest.mark.parametrize("n_subspaces", [2, 4, 6, 8, 12, 16, 32, 64])
def test_kernel_equals_numpy_ranking_for_every_code_length(n_subspaces):
    rng = np.random.default_rng(n_subspaces)
    codes = rng.integers(0, 256, (5000, n_subspaces), dtype=np.uint8)
    table = rng.standard_normal((n_subspaces, 256)).astype(np.float32)
    for k in (1, 10, 100):
        scores, rows = top_k(table, pack_codes(codes), k)
        expected_scores, expected_rows = reference_top_k(table, codes, k)
        np.testing.assert_array_equal(rows, expected_rows)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)


def test_kernel_honours_the_mask_small_k_and_tables_with_fewer_codewords():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (3000, 4), dtype=np.uint8)  # K = 16
    table = rng.standard_normal((4, 16)).astype(np.float32)
    mask = rng.random(3000) < 0.05
    scores, rows = top_k(table, pack_codes(codes), 50, mask)
    expected_scores, expected_rows = reference_top_k(table, codes, 50, mask)
    assert mask[rows].all() and len(rows) == min(50, mask.sum())
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    # k larger than the database returns everything, ranked; an empty mask returns nothing
    _, rows_all = top_k(table, pack_codes(codes[:7]), 100)
    assert sorted(rows_all.tolist()) == list(range(7))
    assert len(top_k(table, pack_codes(codes), 5, np.zeros(3000, bool))[1]) == 0
    assert len(top_k(table, pack_codes(codes[:0]), 5)[1]) == 0


def test_code_matrix_stays_equal_to_a_rebuilt_one_through_upserts_moves_and_removals():
    rng = np.random.default_rng(1)
    matrix = CodeMatrix("m", 8)
    truth: dict[int, tuple[int, np.ndarray]] = {}
    for step in range(30):
        ids = rng.choice(400, size=40, replace=False).astype(np.int64)
        folders = rng.integers(1, 4, size=40).astype(np.int64)
        codes = rng.integers(0, 256, (40, 8), dtype=np.uint8)
        matrix.upsert(ids, folders, codes)
        truth.update({int(i): (int(f), c) for i, f, c in zip(ids, folders, codes, strict=True)})
        gone = [int(i) for i in rng.choice(400, size=15, replace=False)]
        matrix.remove(gone)
        for image_id in gone:
            truth.pop(image_id, None)
        if step % 5 == 0 and truth:
            moved = int(rng.choice(list(truth)))
            matrix.move(moved, 9)
            truth[moved] = (9, truth[moved][1])
    assert len(matrix) == len(truth)
    for image_id, (_, code) in truth.items():
        np.testing.assert_array_equal(matrix.codes_of(image_id), code)
    table = rng.standard_normal((8, 256)).astype(np.float32)
    ids = np.array(sorted(truth), np.int64)
    codes = np.stack([truth[i][1] for i in ids.tolist()])
    scores, found, searched = matrix.search(table, 10, folder_ids=[9, 2])
    in_folders = np.array([truth[i][0] in (9, 2) for i in ids.tolist()])
    expected_scores, expected_rows = reference_top_k(table, codes, 10, in_folders)
    assert searched == in_folders.sum()
    np.testing.assert_array_equal(found, ids[expected_rows])
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    excluded = int(found[0])
    _, found_without = matrix.search(table, 10, folder_ids=[9, 2], exclude={excluded})[:2]
    assert excluded not in found_without.tolist() and found_without[0] == found[1]
