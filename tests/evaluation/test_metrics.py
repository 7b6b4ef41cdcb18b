"""Task metrics (polymodal.metrics.tasks) on hand-made outputs with hand-computed expected values."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.config.task_metrics import direction, headline, monitor_choices, split_metric
from polymodal.metrics.tasks import (
    MIXED_UNITS,
    classification_metrics,
    expected_calibration_error,
    flat_metrics,
    metric_value,
    mixed_units_noted,
    multilabel_metrics,
    regression_metrics,
    task_metrics,
)


def logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def test_ece_weights_each_bin_by_its_share_of_samples():
    # three confident right answers (confidence 0.9, gap 0.1) and one wrong answer at 0.7 (gap 0.7),
    # in different bins of 15: ECE = 3/4 * 0.1 + 1/4 * 0.7 = 0.25
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.7, 0.3]])
    target = np.array([0, 0, 0, 1])
    assert expected_calibration_error(proba, target) == pytest.approx(0.25)


def test_a_confidence_on_a_bin_edge_falls_in_the_bin_it_closes():
    """Bins are (low, high], as Guo et al. bin them: 0.6 (an edge of 5 bins) belongs to (0.4, 0.6]."""
    from polymodal.metrics.tasks import reliability_bins

    bins = reliability_bins(np.array([[0.6, 0.4], [1.0, 0.0]]), np.array([0, 0]), bins=5)
    assert [b["count"] for b in bins] == [0, 0, 1, 0, 1] and bins[2]["high"] == pytest.approx(0.6)


def test_multilabel_counts_probabilities_from_one_half_up_as_positive():
    # rows: (target, probabilities) -> predicted
    #   [1, 0]  0.55, 0.20  -> [1, 0]
    #   [0, 1]  0.10, 0.90  -> [0, 1]
    #   [1, 1]  0.50, 0.70  -> [1, 1]   (exactly 0.5 is positive)
    #   [0, 0]  0.30, 0.45  -> [0, 0]
    #   [1, 0]  0.20, 0.10  -> [0, 0]   (a missed label)
    target = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0]])
    proba = [[0.55, 0.2], [0.1, 0.9], [0.5, 0.7], [0.3, 0.45], [0.2, 0.1]]
    logits = np.array([[logit(p) for p in row] for row in proba])
    out = multilabel_metrics(logits, target)
    assert out["subset_accuracy"] == pytest.approx(4 / 5)
    assert out["micro_f1"] == pytest.approx(8 / 9)  # TP 4, FP 0, FN 1: 2*4 / (2*4 + 0 + 1)
    assert out["macro_f1"] == pytest.approx((4 / 5 + 1.0) / 2)  # label 0: TP 2, FN 1; label 1: perfect


def test_metrics_of_a_diverged_model_are_nan_not_an_error():
    """NaN outputs (a diverged trial of a search) leave the scores undefined instead of raising,
    and count as wrong calls: not as class 0 (argmax of NaN) or as a label's absence."""
    nan = np.full((4, 2), np.nan)
    target = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
    scores = multilabel_metrics(nan, target)
    assert scores["auroc"] is None and scores["subset_accuracy"] == 0.0 and scores["micro_f1"] == 0.0
    assert scores["note"].startswith("4 of 4 row(s) have outputs that are not finite")
    reg = regression_metrics(nan[:, :1], target[:, :1].astype(float))
    assert reg["r2"] is None and np.isnan(reg["mae"]) and np.isnan(reg["rmse"])


def test_a_classifiers_rows_with_nan_outputs_are_wrong_calls_and_its_probability_figures_undefined():
    logits = np.array([[np.nan, np.nan, np.nan], [0, 5, 0], [0, 0, 5], [5, 0, 0]])
    scores = classification_metrics(logits, np.array([0, 1, 2, 0]))
    assert scores["accuracy"] == 0.75  # argmax would call the NaN row class 0, which is its target
    # class 0: TP 1, FN 1 -> F1 2/3; classes 1 and 2 right
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert scores["ece"] is None and scores["log_loss"] is None and scores["auroc"] is None
    assert scores["note"].startswith("1 of 4 row(s) have outputs that are not finite")
    assert np.array(scores["confusion_matrix"]).sum() == 3
    two = classification_metrics(np.array([[np.nan, np.nan], [0.0, 5.0]]), np.array([0, 1]), threshold=0.5)
    assert two["accuracy"] == 0.5  # NaN >= 0.5 is False would call the first row's class 0, its target
    clean = classification_metrics(logits[1:], np.array([1, 2, 0]))
    assert clean["accuracy"] == 1.0 and clean["ece"] is not None and "note" not in clean


def test_macro_f1_scores_the_classes_present_not_those_absent_from_targets_and_predictions():
    from polymodal.metrics.tasks import classification_metrics

    target = np.array([0, 0, 1, 1, 2, 2])
    perfect = classification_metrics(np.eye(5)[target] * 5, target, 5)
    assert perfect["macro_f1"] == pytest.approx(1.0)  # classes 3 and 4 appear nowhere: not scored 0
    wrong = np.array([0, 0, 1, 1, 2, 3])  # one row predicted as class 3, which no row is
    out = classification_metrics(np.eye(5)[wrong] * 5, target, 5)
    assert out["macro_f1"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)  # class 3 counts: a false positive
    assert "macro_f1 scores a class predicted here that has no row as 0" in out["note"]
    assert "macro_f1" not in perfect["note"]  # no class without rows was predicted: nothing to say of it


def test_an_undefined_auroc_names_the_classes_without_rows_and_the_matrix_is_labelled():
    from polymodal.metrics.tasks import classification_metrics

    target = np.array([0, 0, 2, 2])
    out = classification_metrics(np.eye(3)[target] * 5, target, 3, classes=["ball", "normal", "outer"])
    assert out["auroc"] is None and "no row of class(es) 'normal'" in out["note"]
    assert out["classes"] == ["ball", "normal", "outer"] and out["confusion_matrix"][1] == [0, 0, 0]
    every = classification_metrics(np.eye(3)[[0, 1, 2]] * 5, np.array([0, 1, 2]), 3)
    assert every["auroc"] == pytest.approx(1.0) and "note" not in every and "classes" not in every


def test_regression_rmse_is_each_targets_averaged():
    pred = np.array([[1.0, 10.0], [2.0, 20.0]])
    target = np.array([[0.0, 10.0], [2.0, 16.0]])
    assert regression_metrics(pred, target)["rmse"] == pytest.approx((np.sqrt(0.5) + np.sqrt(8.0)) / 2)


def test_several_targets_get_their_own_figures_beside_the_mixed_average():
    """A wear in millimetres and a load in tonnes: the averages mix units, each target's figures do not."""
    from sklearn.metrics import mean_absolute_error, r2_score

    rng = np.random.default_rng(0)
    target = np.column_stack([rng.normal(0, 10, 50), rng.normal(0, 0.1, 50)])
    pred = target + np.column_stack([rng.normal(0, 1, 50), rng.normal(0, 0.05, 50)])
    out = regression_metrics(pred, target, names=["wear", "load"])
    for j, name in enumerate(["wear", "load"]):
        assert out["mae_per_target"][name] == pytest.approx(mean_absolute_error(target[:, j], pred[:, j]))
        assert out["rmse_per_target"][name] == pytest.approx(np.sqrt(((pred[:, j] - target[:, j]) ** 2).mean()))
        assert out["r2_per_target"][name] == pytest.approx(r2_score(target[:, j], pred[:, j]))
    assert out["r2"] == pytest.approx(r2_score(target, pred))
    assert "mae_per_target" not in regression_metrics(pred[:, :1], target[:, :1], names=["wear"])  # one: the same
    assert "note" not in out  # every R2 defined


def test_r2_of_a_constant_target_is_undefined_not_zero():
    """Five rows of one value: SS_tot is 0, so R2 has nothing to explain (scikit-learn's default says 0.0)."""
    out = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.full(5, 2.0), names=["load"])
    assert out["r2"] is None
    assert out["note"].startswith("r2 is undefined for 'load' (every row 2): constant on these rows")
    assert out["mae"] == pytest.approx(1.4)  # (1 + 0 + 1 + 2 + 3) / 5: still scored
    assert regression_metrics(np.array([2.0, 2.0]), np.array([2.0, 2.0]))["r2"] is None  # even a perfect fit
    one = regression_metrics(np.array([1.0]), np.array([3.0]))
    assert one["r2"] is None and "1 row(s)" in one["note"]


def test_the_averaged_r2_is_the_mean_of_the_targets_where_it_is_defined():
    # load constant (undefined); rpm: target 1, 2, 4 (mean 7/3, SS_tot 14/3), pred 2, 3, 5 (SS_res 3)
    pred = np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 5.0]])
    target = np.array([[2.0, 1.0], [2.0, 2.0], [2.0, 4.0]])
    out = regression_metrics(pred, target, names=["load", "rpm"])
    assert out["r2_per_target"] == {"load": None, "rpm": pytest.approx(1 - 3 / (14 / 3))}
    assert out["r2"] == pytest.approx(1 - 3 / (14 / 3))  # not averaged with a 0 for load
    assert "'load' (every row 2)" in out["note"] and "r2 averages the other targets" in out["note"]
    assert "'rpm'" not in out["note"]
    both = regression_metrics(pred, np.array([[2.0, 1.0]] * 3), names=["load", "rpm"])
    assert both["r2"] is None and both["r2_per_target"] == {"load": None, "rpm": None}
    assert "'load' (every row 2), 'rpm' (every row 1)" in both["note"] and "averages" not in both["note"]


def test_the_averages_of_several_targets_carry_a_note_and_flatten_into_one_row_per_target_figure():
    """What every table shows of a regression of several targets: the mixed averages noted, each
    target's own figure as its own column (``rmse_per_target.rpm``), read back by that name."""
    pred = np.array([[1.0, 1700.0], [2.0, 1790.0], [1.5, 1750.0]])
    target = np.array([[1.2, 1710.0], [1.8, 1760.0], [1.5, 1770.0]])
    scores = task_metrics("regression", pred, target, names=["load", "rpm"])
    assert scores["note"] == MIXED_UNITS and mixed_units_noted(scores)
    rmse_rpm = np.sqrt(((pred[:, 1] - target[:, 1]) ** 2).mean())
    flat = flat_metrics({**scores, "rows": 3})
    assert flat["rmse_per_target.rpm"] == pytest.approx(rmse_rpm)
    assert flat["mae_per_target.load"] == pytest.approx(np.abs(pred[:, 0] - target[:, 0]).mean())
    assert flat["rmse"] == pytest.approx(scores["rmse"]) and flat["rows"] == 3
    assert "note" not in flat and "rmse_per_target" not in flat  # one number per column
    assert metric_value(scores, "rmse_per_target.rpm") == pytest.approx(rmse_rpm)
    assert metric_value(scores, "rmse") == scores["rmse"] and metric_value(scores, "rmse_per_target.x") is None
    one = task_metrics("regression", pred[:, :1], target[:, :1], names=["load"])
    assert "note" not in one and not mixed_units_noted(one)  # one target: one unit
    aux = flat_metrics({"aux/rmse_per_target": {"load": 0.5}, "f1_per_label": {"leak": 1.0}})
    assert aux == {"aux/rmse_per_target.load": 0.5}  # a further task's targets too; labels are no targets


def test_a_targets_own_figure_is_named_and_ranked_by_its_metric():
    assert split_metric("rmse_per_target.rpm") == ("rmse", "rpm")
    assert split_metric("r2_per_target.fault.size") == ("r2", "fault.size")  # a column name may hold dots
    assert split_metric("rmse") == ("rmse", None) and split_metric("_per_target.x") == ("_per_target.x", None)
    assert direction("rmse_per_target.rpm") == direction("mae_per_target.rpm") == "min"
    assert direction("r2_per_target.rpm") == "max"
    assert monitor_choices("regression", ["y"]) == ["loss", "mae", "rmse", "r2"]
    assert "rmse_per_target.rpm" in monitor_choices("regression", ["load", "rpm"])
    assert headline("regression", ["y"]) == "rmse" and headline("regression", ["load", "rpm"]) == "r2"
    assert headline("multilabel", ["a", "b"]) == "macro_f1"


def test_each_label_gets_its_f1_and_auroc():
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, (40, 3))
    target[:, 2] = 1  # one value only: no AUROC
    logits = (target * 2 - 1) * rng.uniform(0.1, 2, (40, 3)) + rng.normal(0, 1, (40, 3))
    out = multilabel_metrics(logits, target, names=["leak", "heat", "on"])
    pred = (logits >= 0).astype(int)
    for j, name in enumerate(["leak", "heat"]):
        assert out["f1_per_label"][name] == pytest.approx(f1_score(target[:, j], pred[:, j]))
        assert out["auroc_per_label"][name] == pytest.approx(roc_auc_score(target[:, j], logits[:, j]))
    assert out["auroc_per_label"]["on"] is None and out["f1_per_label"]["on"] == pytest.approx(f1_score(target[:, 2], pred[:, 2]))
    assert out["auroc"] == pytest.approx(np.mean([out["auroc_per_label"]["leak"], out["auroc_per_label"]["heat"]]))


def test_two_classes_are_read_as_a_screening_test_of_the_second():
    """sensitivity, specificity, PPV and NPV of the positive (second) class, from the matrix."""
    logits = np.log(np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.2, 0.8], [0.6, 0.4]]))
    target = np.array([0, 0, 0, 1, 1, 1])  # predicted 0, 0, 1, 1, 1, 0: TN 2, FP 1, TP 2, FN 1
    rates = classification_metrics(logits, target, classes=["normal", "pneumonia"])["positive_class"]
    assert rates == {"class": "pneumonia", "sensitivity": 2 / 3, "specificity": 2 / 3, "ppv": 2 / 3, "npv": 2 / 3}
    skewed = classification_metrics(logits, np.array([0, 0, 0, 0, 0, 1]))["positive_class"]  # TN 2 FP 3 TP 0 FN 1
    assert skewed == {"class": 1, "sensitivity": 0.0, "specificity": 0.4, "ppv": 0.0, "npv": 2 / 3}
    nobody = classification_metrics(logits, np.zeros(6, np.int64))["positive_class"]
    assert nobody["sensitivity"] is None and nobody["specificity"] == 0.5  # no positive row: undefined, not 0
    assert "positive_class" not in classification_metrics(np.zeros((3, 3)), np.array([0, 1, 2]))


def test_a_single_label_is_scored_as_one_label_not_as_two_classes():
    """A multilabel model of one label (``target: [even]``): scikit-learn read the (N, 1) column as
    a binary target and gave two per-class F1s for one name (a crash in training)."""
    from sklearn.metrics import roc_auc_score

    target = np.array([[1], [0], [1], [1], [0]])
    logits = np.array([[2.0], [-1.0], [-0.5], [1.0], [0.5]])  # calls 1, 0, 0, 1, 1: TP 2, FP 1, FN 1
    out = multilabel_metrics(logits, target, names=["even"])
    assert out["f1_per_label"] == {"even": pytest.approx(2 * 2 / (2 * 2 + 1 + 1))}
    assert out["micro_f1"] == out["macro_f1"] == pytest.approx(2 / 3)
    assert out["auroc_per_label"]["even"] == pytest.approx(roc_auc_score(target[:, 0], logits[:, 0]))


def test_a_label_no_row_holds_and_none_is_called_has_no_f1_and_the_note_says_so():
    """Every call right on a label no row holds: F1 undefined (scikit-learn's 0 would pull a
    perfect model's macro F1 down), left out of the averages, and named in the note with the
    label whose AUROC is undefined."""
    target = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    logits = np.array([[3.0, -2.0], [-3.0, -1.0], [2.0, -4.0], [-1.0, -3.0]])  # every call right
    out = multilabel_metrics(logits, target, names=["even", "round"])
    assert out["subset_accuracy"] == 1.0 and out["micro_f1"] == 1.0 and out["macro_f1"] == 1.0
    assert out["f1_per_label"] == {"even": 1.0, "round": None}
    assert out["auroc_per_label"]["round"] is None and out["auroc"] == 1.0
    assert out["note"] == ("f1 is undefined for label(s) 'round': no row holds it and none was called so (every call "
                           "right); macro_f1 averages the other 1 label(s); auroc is undefined for 'round' (every row "
                           "0): an AUROC needs rows of both values; auroc averages the other 1 label(s)")
    none = multilabel_metrics(np.full((3, 1), -2.0), np.zeros((3, 1)), names=["round"])
    assert none["micro_f1"] is None and none["macro_f1"] is None and none["subset_accuracy"] == 1.0
