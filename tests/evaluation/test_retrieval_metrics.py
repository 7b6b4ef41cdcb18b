"""Retrieval metrics (Recall@K, mAP, median rank) against brute-force references, the stacked
validation metrics of an alignment-only model, and the linear-CCA baseline."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.config.align import CcaAlignConfig, ContrastiveAlignConfig, TripletAlignConfig
from polymodal.errors import NotFittedError
from polymodal.metrics.retrieval import (
    Ties,
    collapse_warning,
    cross_modal_metrics,
    relevance,
    retrieval_metrics,
    spread,
    stacked_validation_metrics,
    tie_warning,
    tied_rows,
)
from polymodal.retrieval.cca import LinearCca


def brute_force(similarity: np.ndarray, relevant: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """The textbook definitions, one query at a time, with Python sorting (in a tie, the irrelevant
    items first: the pessimistic count)."""
    firsts, aps = [], []
    for sims, rel in zip(similarity.tolist(), relevant.tolist()):
        order = sorted(range(len(sims)), key=lambda j: (-sims[j], rel[j]))
        hits = [rel[j] for j in order]
        if not any(hits):
            continue
        firsts.append(hits.index(True) + 1)
        found, precisions = 0, []
        for rank, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                precisions.append(found / rank)
        aps.append(sum(precisions) / len(precisions))
    out = {f"recall@{k}": sum(f <= k for f in firsts) / len(firsts) for k in ks}
    out["map"] = sum(aps) / len(aps)
    out["median_rank"] = float(np.median(firsts))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_brute_force_with_label_hits(seed: int) -> None:
    rng = np.random.default_rng(seed)
    similarity = rng.normal(size=(23, 31))
    relevant = relevance(rng.integers(0, 4, 23), rng.integers(0, 4, 31))
    got = retrieval_metrics(similarity, relevant)
    for key, value in brute_force(similarity, relevant).items():
        assert got[key] == pytest.approx(value), key
    assert got["gallery"] == 31 and got["queries"] + got["queries_without_match"] == 23


def test_metrics_match_brute_force_with_ties_and_queries_without_a_match() -> None:
    rng = np.random.default_rng(3)
    similarity = rng.integers(0, 3, size=(12, 15)).astype(float)  # many ties
    relevant = rng.random((12, 15)) < 0.15
    relevant[4] = False  # a query with nothing to find
    got = retrieval_metrics(similarity, relevant)
    for key, value in brute_force(similarity, relevant).items():
        assert got[key] == pytest.approx(value), key
    assert got["queries_without_match"] == int((~relevant.any(axis=1)).sum()) >= 1


def test_metrics_on_a_hand_made_ranking() -> None:
    similarity = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]])
    relevant = np.array([[False, True, True], [True, False, False]])
    # query 0 ranks gallery 0, 2, 1: relevant at ranks 2 and 3 -> AP = (1/2 + 2/3) / 2, first at 2
    # query 1 ranks gallery 1, 0, 2: relevant at rank 2 -> AP = 1/2, first at 2
    got = retrieval_metrics(similarity, relevant, ks=(1, 2))
    assert got["recall@1"] == 0.0 and got["recall@2"] == 1.0
    assert got["map"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1 / 2) / 2)
    assert got["median_rank"] == 2.0


def test_metrics_refuse_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(Q, G\)"):
        retrieval_metrics(np.zeros((2, 3)), np.zeros((2, 4), bool))


def test_cross_modal_metrics_use_cosine_of_normalised_rows() -> None:
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(20, 8))
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    got = cross_modal_metrics(gallery.copy(), gallery, np.arange(20), np.arange(20))
    assert got["recall@1"] == 1.0 and got["map"] == 1.0 and got["median_rank"] == 1.0


def test_stacked_validation_metrics_average_both_directions_on_shared_rows() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(10, 4))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = a.copy()
    b[[1, 2]] = b[[2, 1]]  # rows 1 and 2 of b are swapped: 8 of 10 pairs retrieve themselves
    b[9] = 0.0  # row 9 lacks modality b
    outputs = np.concatenate([a, b], axis=1)
    got = stacked_validation_metrics(outputs, -np.ones(10, int), ["a", "b"], [("a", "b")])
    rows = np.arange(9)
    forward = cross_modal_metrics(a[rows], b[rows], rows, rows)
    backward = cross_modal_metrics(b[rows], a[rows], rows, rows)
    assert got["recall@1"] == pytest.approx((forward["recall@1"] + backward["recall@1"]) / 2)
    assert got["recall@1"] == pytest.approx(7 / 9)
    assert "queries" not in got
    assert got["spread"] == pytest.approx(min(spread(a), spread(b[:9])))


def test_spread_is_one_minus_the_mean_pairwise_cosine() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 3))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    assert spread(z) == pytest.approx(1 - (z @ z.T).mean())
    assert spread(np.tile(z[:1], (5, 1))) == pytest.approx(0.0, abs=1e-12)
    assert spread(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(1.0)


def test_a_collapsed_space_is_reported_and_a_spread_one_is_not() -> None:
    a = np.tile([[0.6, 0.8]], (6, 1)) + 1e-4 * np.arange(6)[:, None]
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    collapsed = stacked_validation_metrics(np.concatenate([a, a[::-1]], 1), np.arange(6) % 2, ["a", "b"], [("a", "b")])
    assert collapsed["spread"] < 1e-6
    assert "collapsed" in collapse_warning(collapsed) and "positives: label" in collapse_warning(collapsed)
    assert collapse_warning({"map": 0.5, "spread": 0.4}) is None
    assert collapse_warning({"map": 0.5}) is None
    brief = collapse_warning(collapsed, epochs=1)  # a space starts near one point: too short a run is the first cause
    assert "trained for 1 epoch(s) only: train longer first" in brief and "positives: label" in brief
    assert "train longer" not in collapse_warning(collapsed, epochs=20)


def test_linear_cca_agrees_with_scikit_learn() -> None:
    from sklearn.cross_decomposition import CCA

    rng = np.random.default_rng(0)

    def mixing(size: int) -> np.ndarray:  # well conditioned, so the small ridge of ours does not matter
        return np.linalg.qr(rng.normal(size=(size, size)))[0] * np.linspace(1.0, 2.0, size)

    shared = rng.normal(size=(400, 2))
    xa = np.hstack([shared, rng.normal(size=(400, 3))]) @ mixing(5)
    noisy = shared + np.array([0.2, 0.6]) * rng.normal(size=(400, 2))  # two distinct canonical correlations
    xb = np.hstack([noisy, rng.normal(size=(400, 2))]) @ mixing(4)
    ours = LinearCca(dim=2, pca=None).fit(xa, xb)
    ua, ub = CCA(n_components=2, max_iter=1000, tol=1e-9).fit(xa, xb).transform(xa, xb)
    theirs = [abs(np.corrcoef(ua[:, i], ub[:, i])[0, 1]) for i in range(2)]
    assert np.allclose(ours.correlations, theirs, atol=1e-3)
    assert ours.correlations[0] > 0.95 > 0.9 > ours.correlations[1] > 0.8  # the shared signal is found


def test_linear_cca_recovers_pairs_related_by_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(6, 9))
    train = rng.normal(size=(300, 6))
    test = rng.normal(size=(100, 6))
    model = LinearCca(dim=6, pca=None).fit(train, train @ weights + 0.01 * rng.normal(size=(300, 9)))
    qa, gb = model.transform(test, 0), model.transform(test @ weights, 1)
    assert np.allclose(np.linalg.norm(qa, axis=1), 1.0, atol=1e-5)
    assert cross_modal_metrics(qa, gb, np.arange(100), np.arange(100))["recall@1"] > 0.95


def test_linear_cca_weights_components_by_their_correlation() -> None:
    rng = np.random.default_rng(1)
    train, test = rng.normal(size=(400, 4)), rng.normal(size=(100, 4))
    noise = np.array([0.05, 0.05, 0.05, 3.0])  # the last component is barely shared: mostly noise

    def view_b(x: np.ndarray) -> np.ndarray:
        return x + noise * rng.normal(size=x.shape)

    b_train, b_test = view_b(train), view_b(test)
    recall = {}
    for power in (0.0, 4.0):
        model = LinearCca(dim=4, pca=None, power=power).fit(train, b_train)
        qa, gb = model.transform(test, 0), model.transform(b_test, 1)
        recall[power] = cross_modal_metrics(qa, gb, np.arange(100), np.arange(100))["recall@1"]
    assert model.correlations[-1] < 0.5 < 0.99 < model.correlations[0]
    assert recall[4.0] > recall[0.0] + 0.1, recall


def test_linear_cca_refuses_unpaired_rows_and_use_before_fit() -> None:
    with pytest.raises(ValueError, match="paired rows"):
        LinearCca().fit(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(NotFittedError, match="fit"):
        LinearCca().transform(np.zeros((2, 2)), 0)


@pytest.mark.parametrize(("align", "advised", "not_advised"), [
    (ContrastiveAlignConfig(positives="label"), ["look at the data"], ["use objective: contrastive", "use positives"]),
    (ContrastiveAlignConfig(), ["already uses objective: contrastive", "use positives: label"],
     ["use objective: contrastive"]),
    (TripletAlignConfig(), ["use objective: contrastive", "or positives: label"], []),
    (TripletAlignConfig(positives="label"), ["use objective: contrastive"], ["or positives: label"]),
    (CcaAlignConfig(), ["use objective: contrastive (with positives: label"], ["or positives: label"]),
])
def test_the_collapse_advice_names_only_changes_the_config_has_not_made(align, advised, not_advised) -> None:
    message = collapse_warning({"spread": 0.0}, align)
    assert message.startswith("the shared space collapsed")
    for text in advised:
        assert text in message
    for text in not_advised:
        assert text not in message


def test_ties_rank_the_irrelevant_items_first_so_a_collapsed_space_scores_nothing():
    from polymodal.metrics.retrieval import retrieval_metrics

    labels = np.repeat(np.arange(10), 10)
    relevant = labels[:, None] == labels[None, :]  # the gallery sorted by label: its order would flatter
    out = retrieval_metrics(np.zeros((100, 100)), relevant)
    assert out["recall@1"] == out["recall@10"] == 0.0 and out["median_rank"] == 91
    distinct = retrieval_metrics(np.array([[0.9, 0.5, 0.5]]), np.array([[False, True, False]]))
    assert distinct["median_rank"] == 3  # tied with an irrelevant item: counted behind it


@pytest.mark.parametrize("value, shown", [(0.00996, "0.00996"), (0.0099999, "0.0099999"), (0.0025, "0.0025"),
                                          (0.0, "0.0000")])
def test_the_collapse_warning_shows_the_spread_below_the_limit_it_names(value: float, shown: str) -> None:
    message = collapse_warning({"spread": value})
    assert f"(spread {shown}, below 0.01;" in message


def test_identical_gallery_rows_are_counted_where_a_tie_can_cost_a_hit() -> None:
    """Ties rank pessimistically: an identical row that is not a hit for the same queries costs
    the match its rank, so it is counted; identical rows of one label (or of none) are not. A copy
    that differs in the last bits (embedded in another batch) is identical too."""
    vectors = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [1, -1], [1, 1], [2, 2]], dtype=np.float32)
    vectors[1, 1] = 1e-5  # cosine 1 - 5e-11 with row 0
    assert tied_rows(vectors).tolist() == [True] * 5 + [False, True, True]  # cosine: [1, 1] and [2, 2] alike
    assert tied_rows(vectors, np.arange(8)).sum() == 7  # pair hits: every copy is another row
    assert tied_rows(vectors, np.array([0, 0, 1, 1, 2, 3, np.nan, np.nan])).tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
    assert tied_rows(vectors, np.array([0, np.nan, 1, 1, 1, 3, 4, 4])).sum() == 2
    assert tied_rows(np.array([[1.0, 0.0], [1.0, 2e-3]])).sum() == 0  # near, yet another item
    assert tied_rows(np.eye(3)).sum() == 0 and tied_rows(vectors[:1]).sum() == 0
    # given the inputs, only twins whose inputs differ count: rows 2 and 3 are one file, row 4 another
    inputs = np.array(["a", "b", "c", "c", "d", "e", "f", "f"], dtype=object)
    assert tied_rows(vectors, np.arange(8), inputs).tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert tied_rows(vectors[2:4], np.arange(2), inputs[2:4]).sum() == 0  # copies only


def test_the_tie_warning_tells_copies_in_the_data_from_a_collapsed_model() -> None:
    assert tie_warning({"b": Ties(0, 8)}) is None
    message = tie_warning({"b": Ties(4, 62), "a": Ties(0, 62)})
    assert message.startswith("the gallery holds identical embeddings ('b': 4 of 62 rows share their vector with "
                              "another row)") and "'a'" not in message
    assert "Ties in similarity rank pessimistically" in message and "--hits label" in message
    assert "a row of another label" in tie_warning({"b": Ties(4, 62)}, "label")
    collapsed = tie_warning({"b": Ties(30, 62, distinct=25), "a": Ties(2, 62)}, "label")
    assert collapsed.startswith("the model embeds different inputs identically ('b': 25 of 62 rows share their vector "
                                "with a row of another label (or without one) whose input differs)")
    assert "partly collapsed" in collapsed and "remove repeated rows" not in collapsed
    assert collapsed.endswith("The gallery also holds copies, identical inputs embedded alike ('b': 5; 'a': 2 rows).")
    assert "also holds copies" not in tie_warning({"b": Ties(30, 62, distinct=30)})
