"""Anomaly metrics and the validation threshold, on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.metrics.anomaly import (
    anomaly_metrics,
    fpr_at_tpr,
    row_thresholds,
    subset_thresholds,
    threshold_at_fpr,
    undefined_note,
)


@pytest.mark.parametrize(("n", "fpr", "flagged"), [(100, 0.05, 5), (20, 0.05, 1), (200, 0.05, 10), (100, 0.29, 29),
                                                  (19, 0.05, 0)])
def test_threshold_flags_the_target_share_of_normals_rounded_down(n, fpr, flagged):
    normal = np.random.default_rng(n).permutation(n).astype(float)
    threshold = threshold_at_fpr(normal, fpr)
    assert int((normal > threshold).sum()) == flagged  # floor(fpr * n): never more, and not one fewer


def test_threshold_is_the_next_normal_score_above_the_quantile():
    # the 0.85 quantile of 0..9 lies between 7 and 8; flagging above 7 would flag 20% of normals
    normal = np.arange(10, dtype=float)
    threshold = threshold_at_fpr(normal, 0.15)
    assert threshold == 8.0
    assert (normal > threshold).mean() == 0.1


def test_a_score_equal_to_the_threshold_is_not_flagged():
    labels = np.array([0, 0, 1, 1])
    out = anomaly_metrics(np.array([1.0, 2.0, 2.0, 3.0]), labels, threshold=2.0)
    assert out["flag_fpr"] == 0.0  # the normal at exactly 2.0 stays unflagged
    assert out["flag_tpr"] == 0.5  # so does the anomaly at 2.0


def test_threshold_needs_normal_samples():
    with pytest.raises(ValueError, match="normal validation samples"):
        threshold_at_fpr(np.zeros(0), 0.05)


def test_fpr_at_95_tpr_counts_normals_above_the_cut():
    # 20 anomalies at 10..29; normals at 0..9 and one at 15: catching 19 of 20 anomalies needs cut 11
    scores = np.r_[np.arange(10, 30), np.arange(10), 15.0]
    labels = np.r_[np.ones(20), np.zeros(11)]
    assert fpr_at_tpr(scores, labels) == pytest.approx(1 / 11)


def test_fpr_at_95_tpr_leaves_normals_below_the_cut_unflagged():
    # as above plus a normal at 10.5: below the cut 11 (the 19th anomaly), above the 20th anomaly
    scores = np.r_[np.arange(10, 30), np.arange(10), 15.0, 10.5]
    labels = np.r_[np.ones(20), np.zeros(12)]
    assert fpr_at_tpr(scores, labels) == pytest.approx(1 / 12)  # only the normal at 15


def test_perfect_and_inverted_scores():
    labels = np.r_[np.zeros(5), np.ones(5)]
    good = anomaly_metrics(np.arange(10.0), labels, threshold=4.5)
    assert good["auroc"] == 1.0 and good["auprc"] == 1.0 and good["fpr@95tpr"] == 0.0
    assert good["flag_fpr"] == 0.0 and good["flag_tpr"] == 1.0
    bad = anomaly_metrics(-np.arange(10.0), labels)
    assert bad["auroc"] == 0.0 and bad["fpr@95tpr"] == 1.0


def test_one_class_only_gives_none_not_a_number():
    out = anomaly_metrics(np.arange(4.0), np.zeros(4), threshold=1.5)
    assert out["auroc"] is None and out["auprc"] is None and out["flag_tpr"] is None
    assert out["flag_fpr"] == 0.5


def test_the_note_on_undefined_metrics_names_the_missing_class():
    scores = np.array([0.1, 0.2, 0.9])
    assert undefined_note(anomaly_metrics(scores, np.array([0, 0, 1]), 0.5), "validation holds", True) is None
    normals_only = anomaly_metrics(scores, np.array([0, 0, 0]), 0.5)
    assert normals_only["auroc"] is None and normals_only["flag_tpr"] is None
    assert undefined_note(normals_only, "validation holds", validation=True) == (
        "validation holds no anomalies: AUROC, AUPRC and FPR@95TPR need both classes, flag_tpr needs anomalies; "
        "the threshold is chosen on its normal rows")
    assert undefined_note(normals_only, "the evaluated rows hold").endswith("flag_tpr needs anomalies")
    assert undefined_note(anomaly_metrics(scores, np.array([1, 1, 1]), 0.5), "the evaluated rows hold") == (
        "the evaluated rows hold no normal rows: AUROC, AUPRC and FPR@95TPR need both classes, flag_fpr needs "
        "normal rows")
    assert undefined_note(anomaly_metrics(scores[:0], np.array([], int), 0.5), "validation holds", True) == (
        "validation holds no labelled rows: AUROC, AUPRC, FPR@95TPR and the flag rates need normal and anomalous "
        "rows; the threshold is chosen on all of its rows")


def test_unscored_rows_are_left_out_of_the_threshold_and_every_metric_and_counted():
    scores = np.array([0.1, np.nan, 0.2, 0.3, 0.9, np.nan, 0.8])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    out = anomaly_metrics(scores, labels, threshold=0.5)
    scored = ~np.isnan(scores)
    assert out == {**anomaly_metrics(scores[scored], labels[scored], threshold=0.5), "unscored": 2}
    assert out["auroc"] == 1.0 and out["normals"] == 3 and out["anomalies"] == 2 and out["flag_tpr"] == 1.0
    assert threshold_at_fpr(np.r_[np.arange(20.0), np.nan], 0.05) == threshold_at_fpr(np.arange(20.0), 0.05) == 18.0
    with pytest.raises(ValueError, match=r"none with a score \(none of its 2 normal rows could be scored\)"):
        threshold_at_fpr(np.array([np.nan, np.nan]), 0.05)


def test_flags_raise_scores_above_the_threshold_and_rows_without_a_score():
    from polymodal.metrics.anomaly import flags

    scores = np.array([0.5, 2.0, np.nan, 1.0])
    assert flags(scores, 1.0).tolist() == [False, True, True, False]  # equal to the threshold: not above it
    assert flags(scores, None).tolist() == [False, False, True, False]  # no threshold: only the unscored


def test_subset_thresholds_take_the_full_sets_validation_rate_and_rows_fall_back_to_it():
    normal = np.arange(10.0)  # the full set's threshold 7.0 lets 2 of 10 through
    subsets = np.array([[np.nan] * 10,                                  # no modality
                        100 + np.arange(10.0),                          # a alone: another scale
                        [np.nan] * 10,                                  # b alone: no row holds it
                        np.arange(10.0)])                               # a+b
    chosen = subset_thresholds(7.0, normal, subsets)
    assert np.isnan(chosen[0]) and chosen[1] == 107.0 and np.isnan(chosen[2]) and chosen[3] == 7.0
    assert ((100 + np.arange(10.0)) > chosen[1]).sum() == 2
    np.testing.assert_array_equal(row_thresholds(np.array([3, 1, 2, 0]), 7.0, chosen), [7.0, 107.0, 7.0, 7.0])
    np.testing.assert_array_equal(row_thresholds(np.array([3, 1]), 7.0, None), [7.0, 7.0])  # one for every row
    np.testing.assert_array_equal(row_thresholds(np.array([1]), 7.0, [None, 50.0, None, 7.0]), [50.0])  # deploy.json
    # a score above every validation normal: rate 0, each subset at its highest normal; below every one: rate 1
    assert subset_thresholds(20.0, normal, subsets)[1] == 109.0
    flag_all = subset_thresholds(-1.0, normal, subsets)[1]  # finite: JSON keeps it, not as "no threshold" (null)
    assert np.isfinite(flag_all) and flag_all < 100.0 and flag_all == np.nextafter(100.0, -np.inf)
    # the full set's rate is measured on the rows holding every modality: those it applies to
    mixed = np.concatenate([np.arange(10.0) / 10, 5 + np.arange(10.0) / 10])  # 10 complete rows, 10 partial above
    complete = np.concatenate([np.arange(10.0) / 10, np.full(10, np.nan)])
    alone = np.concatenate([np.full(10, np.nan), 50 + np.arange(10.0)])
    chosen = subset_thresholds(0.45, mixed, np.array([[np.nan] * 20, alone, [np.nan] * 20, complete]))
    assert chosen[1] == 54.0  # at rate 5/10 on the complete rows (the rows 0.45 applies to), not 15/20 (52.0)
