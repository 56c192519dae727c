import numpy as np
import pytest

from phpq.eval.metrics import average_precision, ranked_relevance, retrieval_report


def test_map_matches_a_hand_computed_example():
    # Query 0 (label 1): ranking by score is items 0, 1, 2, 3, 4 with relevance 1, 0, 1, 0, 1
    # AP = (1/1 + 2/3 + 3/5) / 3 = 0.755555...
    # Query 1 (label 2): ranking 4, 3, 2, 1, 0 with relevance 0, 1, 0, 0, 0 -> AP = 1/2
    scores = np.array([[5, 4, 3, 2, 1], [1, 2, 3, 4, 5]], dtype=np.float32)
    database_labels = np.array([1, 2, 1, 2, 1])
    report = retrieval_report(scores, np.array([1, 2]), database_labels, ks=(2,))
    # database order for query 1 is 4,3,2,1,0 -> labels 1,2,1,2,1: relevant at ranks 2 and 4
    ap_query1 = (1 / 2 + 2 / 4) / 2
    assert report["mAP@all"] == pytest.approx(((1 + 2 / 3 + 3 / 5) / 3 + ap_query1) / 2)
    # top 2: query 0 has relevance 1,0 -> AP@2 = 1; query 1 has 0,1 -> AP@2 = 1/2
    assert report["mAP@2"] == pytest.approx((1 + 0.5) / 2)
    assert report["P@2"] == pytest.approx((0.5 + 0.5) / 2)


def test_no_relevant_item_gives_zero_and_ties_are_stable():
    relevance = ranked_relevance(np.zeros((1, 3)), np.array([7]), np.array([1, 2, 3]))
    assert average_precision(relevance)[0] == 0.0
    relevance = ranked_relevance(np.zeros((1, 3)), np.array([3]), np.array([1, 2, 3]))
    assert average_precision(relevance)[0] == pytest.approx(1 / 3)


def test_perfect_ranking_scores_one():
    labels = np.array([0, 0, 1, 1])
    scores = (labels[:, None] == labels[None, :]).astype(np.float32)
    assert retrieval_report(scores, labels, labels)["mAP@all"] == pytest.approx(1.0)


def test_leave_one_out_leaves_each_query_out_of_its_own_ranking():
    labels = np.array([0, 0, 1, 1, 1])
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 5))
    np.fill_diagonal(scores, 10.0)  # each photo is its own best match: it must not count
    report = retrieval_report(scores, labels, labels, ks=(1,), leave_one_out=True)
    reference = []
    for i in range(5):
        others = [j for j in range(5) if j != i]
        order = sorted(others, key=lambda j: -scores[i, j])
        relevance = np.array([labels[j] == labels[i] for j in order])
        hits = np.cumsum(relevance)
        reference.append((hits / np.arange(1, 5))[relevance].mean())
    assert report["mAP@all"] == pytest.approx(np.mean(reference))
