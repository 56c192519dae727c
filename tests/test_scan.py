"""The ADC scan kernel and the in-memory code matrix against plain numpy."""

import numpy as np
import pytest

import phpq.scan
from phpq.descriptor import dequantize, quantize
from phpq.pq import adc_scores
from phpq.scan import pack_codes, top_k
from phpq.search import CodeMatrix, Query


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
    table = rng.standard_normal((8, 256)).astype(np.float32)
    ids = np.array(sorted(truth), np.int64)
    codes = np.stack([truth[i][1] for i in ids.tolist()])
    query = Query(table, None, 1.0)
    # every photo is there once, with its own code (its score) and its own folder
    expected = dict(zip(ids.tolist(), (adc_scores(table[None], codes)[0] / 8).tolist(), strict=True))
    for folder in (1, 2, 3, 9):
        scores, found, searched = matrix.search(query, len(truth), folder_ids=[folder])[:3]
        assert sorted(found.tolist()) == sorted(i for i, (f, _) in truth.items() if f == folder) and searched == len(
            found
        )
        np.testing.assert_allclose(scores, [expected[i] for i in found.tolist()], rtol=1e-5)
    scores, found, searched, weight = matrix.search(query, 10, folder_ids=[9, 2])[:4]
    assert weight is None  # codes alone
    in_folders = np.array([truth[i][0] in (9, 2) for i in ids.tolist()])
    expected_scores, expected_rows = reference_top_k(table, codes, 10, in_folders)
    assert searched == in_folders.sum()
    np.testing.assert_array_equal(found, ids[expected_rows])
    np.testing.assert_allclose(scores, expected_scores / 8, rtol=1e-5)
    excluded = int(found[0])
    _, found_without = matrix.search(query, 10, folder_ids=[9, 2], exclude={excluded})[:2]
    assert excluded not in found_without.tolist() and found_without[0] == found[1]


def fused_reference(table, codes, query_descriptor, values, scales, weight):
    """w * ADC / M + (1 - w) * cosine with the stored (dequantized) descriptors, in float64 numpy."""
    code_part = adc_scores(table[None].astype(np.float64), codes)[0] / table.shape[0]
    return weight * code_part + (1 - weight) * dequantize(values, scales).astype(np.float64) @ query_descriptor


@pytest.mark.parametrize("split", [False, True])
def test_fused_scan_equals_numpy_and_pinned_rows_get_the_scan_score(monkeypatch, split):
    monkeypatch.setattr(phpq.scan, "PARALLEL_BYTES", 1 if split else 1 << 60)  # one thread or two halves
    rng = np.random.default_rng(5)
    n, m, dim, weight = 6000, 8, 48, 0.3
    codes = rng.integers(0, 256, (n, m), dtype=np.uint8)
    descriptors = rng.standard_normal((n, dim)).astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    values, scales = quantize(descriptors)
    np.testing.assert_allclose(np.linalg.norm(dequantize(values, scales), axis=1), 1, rtol=1e-5)
    table = rng.standard_normal((m, 256)).astype(np.float32)
    query_descriptor = descriptors[17]
    matrix = CodeMatrix("m", m, dim)
    ids = np.arange(100, 100 + n, dtype=np.int64)
    matrix.upsert(ids, ids % 3, codes, (values, scales))
    expected = fused_reference(table, codes, query_descriptor, values, scales, weight)
    query = Query(table, query_descriptor, weight)
    scores, found, searched, used_weight = matrix.search(query, 50, folder_ids=[0, 2])[:4]
    assert used_weight == weight
    in_folders = (ids % 3) != 1
    order = np.argsort(-np.where(in_folders, expected, -np.inf), kind="stable")[:50]
    assert searched == in_folders.sum()
    np.testing.assert_array_equal(found, ids[order])
    np.testing.assert_allclose(scores, expected[order], atol=1e-5)
    # photos listed first (pinned copies) get exactly the score the scan gives them
    pinned = [int(found[3]), int(found[40])]
    pinned_scores, pinned_found = matrix.search(query, 5, folder_ids=[0, 2], first=pinned)[:2]
    assert pinned_found[:2].tolist() == pinned and pinned_scores[:2].tolist() == [scores[3], scores[40]]
    assert pinned_found[2:].tolist() == [int(i) for i in found if i not in pinned][:3]
    # codes only: the weight does not matter and the descriptors are not read
    codes_only = matrix.search(Query(table, None, weight), 10)
    assert codes_only.weight is None
    np.testing.assert_allclose(codes_only.scores, np.sort(adc_scores(table[None], codes)[0])[::-1][:10] / m, rtol=1e-5)


def test_matrix_keeps_descriptors_with_their_codes_through_removals():
    rng = np.random.default_rng(2)
    matrix = CodeMatrix("m", 4, 8)
    codes = rng.integers(0, 256, (50, 4), dtype=np.uint8)
    values, scales = quantize(rng.standard_normal((50, 8)).astype(np.float32))
    matrix.upsert(np.arange(50), np.zeros(50, np.int64), codes, (values, scales))
    matrix.remove(list(range(0, 50, 3)))
    kept = np.array([i for i in range(50) if i % 3])
    table = rng.standard_normal((4, 256)).astype(np.float32)
    query = Query(table, dequantize(values[7:8], scales[7:8])[0], 0.5)
    found = matrix.search(query, 5)[1]
    expected = fused_reference(table, codes[kept], query.descriptor, values[kept], scales[kept], 0.5)
    np.testing.assert_array_equal(found, kept[np.argsort(-expected, kind="stable")[:5]])
    with pytest.raises(ValueError, match="descriptors"):
        matrix.upsert(np.arange(2), np.zeros(2, np.int64), codes[:2])
