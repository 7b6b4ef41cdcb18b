"""A two-class classifier's decision threshold (``decision:``): the operating points and the
choice among them against brute force, the config's rules, and the threshold followed by every
decision: fit, predict, evaluate, explain, save / load, ``set_threshold`` and ``polymodal
threshold``, the export's runtime and the service's answer."""

from __future__ import annotations

import copy
import json
import shutil
import typing
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers_models import SIGNAL, TABULAR, TRAIN, classification_config, make_dataset, multilabel_config, write_splits
from sklearn.metrics import confusion_matrix, f1_score, matthews_corrcoef
from typer.testing import CliRunner

from polymodal import MultimodalPredictor
from polymodal.cli import app
from polymodal.config import load_config
from polymodal.config.decision import DecisionConfig
from polymodal.decision import set_threshold
from polymodal.errors import ConfigError, RunFolderError, SchemaMismatchError
from polymodal.metrics.threshold import choose_threshold, cut_metrics, threshold_cuts
from polymodal.run_files import SCORES_FILE
from polymodal.utils.scores import decisions


# -- the operating points and the choice ------------------------------------------------------
def _rates_at(proba: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float]:
    """sklearn's figures for the calls ``proba >= threshold``."""
    called = (proba >= threshold).astype(int)
    (tn, fp), (fn, tp) = confusion_matrix(truth, called, labels=[0, 1])
    return {"sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp), "f1": f1_score(truth, called, zero_division=0),
            "mcc": matthews_corrcoef(truth, called), "accuracy": (tp + tn) / len(truth)}


GRID = np.linspace(0.0, 1.0, 2001)


def _grid_rates(proba: np.ndarray, truth: np.ndarray, grid: np.ndarray = GRID) -> dict[str, np.ndarray]:
    """Brute force: every threshold of ``grid`` applied to every row (G, N), counted directly."""
    called, real = proba[None, :] >= grid[:, None], truth[None, :] == 1
    tp, fp = (called & real).sum(1), (called & ~real).sum(1)
    fn, tn = (~called & real).sum(1), (~called & ~real).sum(1)
    sens, spec = tp / (tp + fn), tn / (tn + fp)
    with np.errstate(invalid="ignore", divide="ignore"):
        mcc = np.nan_to_num((tp * tn - fp * fn) / np.sqrt(((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).astype(float)))
        f1 = np.nan_to_num(2 * tp / (2 * tp + fp + fn))
    return {"sensitivity": sens, "specificity": spec, "balanced_accuracy": (sens + spec) / 2, "f1": f1, "mcc": mcc,
            "accuracy": (tp + tn) / len(truth)}


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes, ties included (probabilities rounded to 2 places), 30% positive."""
    rng = np.random.default_rng(3)
    truth = (rng.random(400) < 0.3).astype(int)
    proba = np.clip(rng.normal(0.35 + 0.3 * truth, 0.15), 0.001, 0.999).round(2)
    return proba, truth


def test_every_cut_scores_as_sklearn_scores_its_calls(scored):
    proba, truth = scored
    cuts = threshold_cuts(proba, truth == 1)
    rates = cut_metrics(cuts)
    assert len(cuts["threshold"]) == len(np.unique(proba)) + 1  # none called, then one distinct value more each
    for k in range(0, len(cuts["threshold"]), 7):
        expected = _rates_at(proba, truth, cuts["threshold"][k])
        for name, value in expected.items():
            assert rates[name][k] == pytest.approx(value, abs=1e-12), (name, k)
        assert cuts["lower"][k] < cuts["threshold"][k] <= cuts["upper"][k]


@pytest.mark.parametrize("metric", ["balanced_accuracy", "f1", "mcc", "accuracy"])
def test_auto_reaches_the_best_value_any_threshold_gives(scored, metric):
    proba, truth = scored
    chosen = choose_threshold(proba, truth == 1, DecisionConfig(threshold="auto", metric=metric))
    best = _grid_rates(proba, truth)[metric].max()
    at = _rates_at(proba, truth, chosen["threshold"])
    got = (at["sensitivity"] + at["specificity"]) / 2 if metric == "balanced_accuracy" else at[metric]
    assert got == pytest.approx(best, abs=1e-12) and chosen[metric] == pytest.approx(best, abs=1e-12)
    assert chosen["threshold"] not in set(proba)  # a midpoint between two distinct probabilities


def test_a_minimum_sensitivity_keeps_the_best_specificity_that_holds_it(scored):
    proba, truth = scored
    chosen = choose_threshold(proba, truth == 1, DecisionConfig(threshold="auto", min_sensitivity=0.9))
    at = _rates_at(proba, truth, chosen["threshold"])
    grid = _grid_rates(proba, truth)
    assert at["sensitivity"] >= 0.9 and chosen["sensitivity"] == pytest.approx(at["sensitivity"])
    assert grid["specificity"][grid["sensitivity"] >= 0.9].max() == pytest.approx(at["specificity"])
    spec = choose_threshold(proba, truth == 1, DecisionConfig(threshold="auto", min_specificity=0.9))
    at = _rates_at(proba, truth, spec["threshold"])
    assert at["specificity"] >= 0.9 and spec["criterion"] == "specificity >= 0.9"
    assert grid["sensitivity"][grid["specificity"] >= 0.9].max() == pytest.approx(at["sensitivity"])


def test_a_minimum_rate_on_a_flat_stretch_of_the_other_keeps_the_better_of_both():
    """Sensitivity 2/3 and 1 both keep specificity 1: the threshold that calls all three positives wins."""
    proba, truth = np.array([0.9, 0.8, 0.6, 0.2, 0.1]), np.array([1, 1, 1, 0, 0], bool)
    chosen = choose_threshold(proba, truth, DecisionConfig(threshold="auto", min_sensitivity=0.6))
    assert (chosen["sensitivity"], chosen["specificity"]) == (1.0, 1.0) and 0.2 < chosen["threshold"] <= 0.6
    chosen = choose_threshold(proba, truth, DecisionConfig(threshold="auto", min_specificity=0.5))
    assert (chosen["sensitivity"], chosen["specificity"]) == (1.0, 1.0)


def test_rows_of_one_class_are_refused_and_few_rows_are_warned_about():
    with pytest.raises(SchemaMismatchError, match="both classes; they hold 0 positive and 3 negative"):
        choose_threshold(np.array([0.1, 0.2, 0.3]), np.zeros(3, bool), DecisionConfig(threshold="auto"))
    with pytest.warns(UserWarning, match="chosen on 2 positive and 4 negative validation rows"):
        choose_threshold(np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9]), np.array([0, 0, 0, 0, 1, 1], bool),
                         DecisionConfig(threshold="auto"))


def test_decisions_call_the_second_class_from_the_threshold():
    proba = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    assert decisions("classification", proba).tolist() == [0, 0, 1]
    assert decisions("classification", proba, 0.35).tolist() == [0, 1, 1]
    assert decisions("classification", proba, 0.75).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="second of two classes; these scores hold 3"):
        decisions("classification", np.full((1, 3), 1 / 3), 0.5)


@pytest.mark.parametrize(("decision", "task", "message"), [
    ({"threshold": 0.3}, "regression", "decision.threshold: sets when a two-class classifier calls"),
    ({"threshold": 1.5}, "classification", "decision.threshold"),
    ({"min_sensitivity": 0.9}, "classification", "min_sensitivity is what threshold 'auto' chooses by"),
    ({"threshold": "auto", "min_sensitivity": 0.9, "min_specificity": 0.9}, "classification", "not both"),
    ({"threshold": "auto", "metric": "auroc"}, "classification", "decision.metric"),
])
def test_config_refuses_a_decision_it_cannot_make(decision, task, message):
    cfg = classification_config() | {"decision": decision, "task": task}
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)


def test_a_threshold_for_three_classes_is_refused_before_training(tmp_path):
    paths = write_splits(tmp_path, make_dataset(tmp_path, 60))
    cfg = classification_config() | {"decision": {"threshold": "auto"}}
    with pytest.raises(ConfigError, match=r"decision.threshold: calls the second of two classes; the training rows "
                                          r"hold 3 classes \['a', 'b', 'c'\]"):
        MultimodalPredictor.from_config(cfg).fit(paths["train"], paths["valid"], out=tmp_path / "run")
    assert not (tmp_path / "run" / "model.safetensors").exists()


# -- a fitted two-class model -----------------------------------------------------------------
def binary_config(**decision) -> dict:
    """Signal + table classification of ``tag_top`` (a third of the rows positive)."""
    return {"task": "classification", "target": "tag_top",
            "modalities": {"sig": copy.deepcopy(SIGNAL), "tab": copy.deepcopy(TABULAR)},
            "fusion": {"name": "concat"}, "decision": decision, "train": {**TRAIN, "epochs": 2}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("decision_data")
    return write_splits(root, make_dataset(root, 150))


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("decision") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few validation positives: warned about, tested above
        pred = MultimodalPredictor.from_config(binary_config(threshold="auto", min_sensitivity=1.0)).fit(
            data["train"], data["valid"], test=data["test"], out=run)
    return pred, run


@pytest.fixture
def run(fitted, tmp_path):
    return shutil.copytree(fitted[1], tmp_path / "run")


def test_fit_chooses_the_threshold_on_the_validation_rows_and_every_call_follows_it(fitted, run, data):
    pred, _ = fitted
    proba, labels = pred.valid_scores
    expected = choose_threshold(proba, labels == 1, pred.config.decision)["threshold"]
    assert pred.pipeline.targets.threshold == pytest.approx(expected) == pred.info["decision"]["threshold"]
    assert pred.metrics["valid"]["threshold"] == pytest.approx(expected)
    assert pred.metrics["valid"]["positive_class"]["sensitivity"] == 1.0
    assert proba == pytest.approx(pred.predict_proba(data["valid"])[1].to_numpy())  # the kept scores are the model's
    pred = MultimodalPredictor.load(run)  # a copy: the module's model stays as fitted
    pred.set_threshold(0.999)  # far from 0.5: calls differ from the more probable class's
    test_proba = pred.predict_proba(data["test"])[1].to_numpy()
    expected_calls = (test_proba >= 0.999).astype(int)
    assert (expected_calls != (test_proba > 0.5)).any()  # the test would pass for the more probable class otherwise
    assert pred.predict(data["test"]).tolist() == expected_calls.tolist()
    assert pred.predict_frame(data["test"])["prediction"].tolist() == expected_calls.tolist()
    truth = pd.read_csv(data["test"])["tag_top"].to_numpy()
    scores = pred.evaluate(data["test"])
    assert scores["accuracy"] == pytest.approx((expected_calls == truth).mean())
    assert scores["threshold"] == 0.999
    assert scores["confusion_matrix"] == confusion_matrix(truth, expected_calls, labels=[0, 1]).tolist()
    assert scores["auroc"] == pytest.approx(pred.metrics["test"]["auroc"])  # the ranking does not move


def test_the_threshold_and_the_scores_survive_save_and_load(fitted, run):
    pred, _ = fitted
    loaded = MultimodalPredictor.load(run)
    assert loaded.pipeline.targets.threshold == pytest.approx(pred.info["decision"]["threshold"])
    assert loaded.valid_scores[0] == pytest.approx(pred.valid_scores[0])
    assert loaded.test_scores is not None and len(loaded.test_scores[0]) == loaded.metrics["test"]["rows"]
    assert loaded.config.decision.min_sensitivity == 1.0


def test_set_threshold_chooses_again_and_updates_the_metrics(run, data):
    pred = MultimodalPredictor.load(run)
    fingerprint = pred.model_fingerprint()
    change = pred.set_threshold("auto", metric="f1")
    proba, labels = pred.valid_scores
    assert change["new"] == pytest.approx(choose_threshold(proba, labels == 1, DecisionConfig(threshold="auto",
                                                                                               metric="f1"))["threshold"])
    assert change["criterion"] == "f1" and pred.config.decision.metric == "f1"
    change = pred.set_threshold(0.9)
    assert change["new"] == 0.9 and pred.config.decision.threshold == 0.9 and pred.info["decision_threshold"] == 0.9
    called = (pred.test_scores[0] >= 0.9).astype(int)
    assert pred.metrics["test"]["accuracy"] == pytest.approx((called == pred.test_scores[1]).mean())
    assert pred.model_fingerprint() != fingerprint  # batch predictions and exports of the old one are not reused
    pred.save(run)
    again = MultimodalPredictor.load(run)
    assert again.pipeline.targets.threshold == 0.9 and again.metrics["test"]["threshold"] == 0.9
    assert again.set_threshold(None)["new"] is None
    assert "threshold" not in again.metrics["valid"] and again.config.decision.threshold is None
    with pytest.raises(ConfigError, match="decision.threshold"):
        again.set_threshold(1.0)


def test_the_report_says_when_its_subsets_were_computed_at_an_earlier_threshold(fitted, run):
    """The subsets, importance and robustness figures are computed after the fit; a threshold set
    since leaves them at the earlier one, and the report says so instead of mixing the two."""
    assert "Computed at the earlier decision threshold" not in (fitted[1] / "report.html").read_text()
    pred = MultimodalPredictor.load(run)
    earlier = pred.pipeline.targets.threshold
    assert pred.diagnostics["threshold"] == pytest.approx(earlier) and pred.diagnostics["subsets"]
    pred.set_threshold(0.9)
    pred.save(run)
    page = (run / "report.html").read_text()
    assert f"Computed at the earlier decision threshold {earlier:.4g}</b>: the model's is 0.9 since" in page
    assert page.count("Computed at the earlier decision threshold") == 3  # subsets, importance, robustness
    pred.set_threshold(earlier)
    pred.save(run)
    assert "Computed at the earlier decision threshold" not in (run / "report.html").read_text()


def test_auto_needs_the_kept_scores_and_a_two_class_model(run, data, tmp_path):
    (run / SCORES_FILE).unlink()  # as a run saved before they were kept
    pred = MultimodalPredictor.load(run)
    with pytest.raises(RunFolderError, match="keeps no validation probabilities"):
        pred.set_threshold("auto")
    pred.set_threshold(0.4)
    assert "the former threshold's (no scores kept)" in pred.metrics["test"]["note"]
    three = MultimodalPredictor.from_config(classification_config(epochs=1) | {"report": {"rows": 0}})
    paths = write_splits(tmp_path, make_dataset(tmp_path, 30))
    three.fit(paths["train"], paths["valid"], out=tmp_path / "three")
    with pytest.raises(SchemaMismatchError, match="has 3 classes"):
        three.set_threshold(0.5)
    result = CliRunner().invoke(app, ["threshold", str(tmp_path / "three"), "--min-sensitivity", "0.95"])
    assert result.exit_code == 2 and "set_threshold" not in result.stderr  # the command's words, not Python's
    assert (f"error: --min-sensitivity: polymodal threshold sets an anomaly run's flag threshold, a two-class "
            f"classifier's decision threshold or a multilabel model's; {tmp_path / 'three'} is a classifier of 3 "
            "classes, which predicts the most probable one") in " ".join(result.stderr.split())


def test_explanations_explain_the_class_the_threshold_calls(run, data):
    pred = MultimodalPredictor.load(run)
    pred.set_threshold(0.999)
    explanation = pred.explain(data["test"], samples=0)
    called = decisions("classification", explanation.full, 0.999)
    assert explanation.explained.tolist() == called.tolist() and explanation.threshold == 0.999
    assert (called != explanation.full.argmax(axis=1)).any()  # the test would pass for argmax otherwise


def test_the_command_sets_it_and_the_export_decides_as_the_model(run, data):
    runner = CliRunner()
    result = runner.invoke(app, ["threshold", str(run), "--min-specificity", "0.95"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "(chosen by specificity >= 0.95 on the validation rows)" in text and "validation (30 rows):" in text
    pred = MultimodalPredictor.load(run)
    assert pred.config.decision.min_specificity == 0.95
    result = runner.invoke(app, ["threshold", str(run), "--fpr", "0.05"])
    assert result.exit_code == 2 and "--min-specificity 0.95" in " ".join(result.stderr.split())
    assert runner.invoke(app, ["threshold", str(run), "--score", "0.999"]).exit_code == 0
    result = runner.invoke(app, ["export", str(run), "--data", str(data["test"])])
    assert result.exit_code == 0, result.output
    meta = json.loads((run / "export" / "deploy.json").read_text())
    assert meta["threshold"] == 0.999 and meta["format_version"] == 5

    from polymodal.deploy.runtime import Runtime
    from polymodal.deploy.server import metadata_json, prediction_json
    from polymodal.deploy.settings import ServeSettings

    frame = pd.read_csv(data["test"])
    rows = [{"sig": str(data["test"].parent / r.signal), "tab": {"x1": r.x1, "x2": r.x2, "color": r.color}}
            for r in frame.itertuples()]
    runtime = Runtime.load(run / "export")
    expected = MultimodalPredictor.load(run).predict(data["test"]).tolist()
    assert runtime.predict(rows) == expected
    outputs = runtime.outputs(rows[:1])
    answer = prediction_json(runtime, outputs[0], rows[0])
    assert answer["threshold"] == 0.999 and answer["prediction"] == expected[0]
    assert metadata_json(runtime, ServeSettings())["threshold"] == 0.999
    result = runner.invoke(app, ["threshold", str(run), "--reset"])
    assert "still decides at the old threshold 0.9990" in " ".join(result.stderr.split())


def test_with_further_tasks_the_threshold_is_the_main_tasks(data, tmp_path):
    cfg = binary_config(threshold=0.999) | {"tasks": {"grade": {"task": "classification", "target": "label"}}}
    pred = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"])
    frame = pred.predict_frame(data["test"])
    assert frame["prediction"].tolist() == (frame["proba_1"] >= 0.999).astype(int).tolist()
    grade = frame[[f"grade_proba_{c}" for c in ("a", "b", "c")]].to_numpy().argmax(axis=1)
    assert frame["grade_prediction"].tolist() == [("a", "b", "c")[k] for k in grade]  # argmax: no threshold of its own
    assert pred.metrics["valid"]["threshold"] == 0.999 and "grade/threshold" not in pred.metrics["valid"]


# -- what a review found ----------------------------------------------------------------------
def test_auto_on_validation_rows_of_one_class_is_refused_before_training(data, tmp_path):
    valid = pd.read_csv(data["valid"])
    negatives = data["valid"].parent / "negatives.csv"  # beside the files it names
    valid[valid["tag_top"] == 0].to_csv(negatives, index=False)
    with pytest.raises(ConfigError, match=r"decision.threshold: 'auto' is chosen on the validation rows, and none of "
                                          r"the \d+ holds class 1"):
        MultimodalPredictor.from_config(binary_config(threshold="auto")).fit(data["train"], negatives,
                                                                             out=tmp_path / "run")
    assert not (tmp_path / "run" / "history.csv").exists()  # not one epoch


def test_a_number_is_the_threshold_of_every_epochs_validation_figures(data):
    config = binary_config(threshold=0.999)
    config["train"]["early_stopping"] = {"monitor": "accuracy", "patience": 5}
    pred = MultimodalPredictor.from_config(config).fit(data["train"], data["valid"])
    kept = pred.history.set_index("epoch").loc[pred.info["best_epoch"]]
    assert kept["val_accuracy"] == pytest.approx(pred.metrics["valid"]["accuracy"])
    assert pred.info["best_val_accuracy"] == pytest.approx(pred.metrics["valid"]["accuracy"])


def test_a_refused_set_threshold_leaves_the_model_as_it_was(run, data):
    pred = MultimodalPredictor.load(run)
    before = (pred.pipeline.targets.threshold, pred.config.decision, pred.predict(data["test"]).tolist())
    proba, _ = pred.valid_scores
    pred.valid_scores = (proba, np.zeros(len(proba), np.int64))  # rows of one class: auto cannot choose
    with pytest.raises(SchemaMismatchError, match="both classes"):
        pred.set_threshold("auto", metric="f1")
    assert (pred.pipeline.targets.threshold, pred.config.decision, pred.predict(data["test"]).tolist()) == before


def test_validation_figures_say_when_the_threshold_was_chosen_on_their_rows(fitted, run):
    assert "chosen on these rows" in fitted[0].metrics["valid"]["note"]
    assert "chosen on these rows" not in (fitted[0].metrics["test"].get("note") or "")
    pred = MultimodalPredictor.load(run)
    pred.set_threshold(0.6)
    assert "chosen on these rows" not in (pred.metrics["valid"].get("note") or "")
    (run / SCORES_FILE).unlink()
    pred = MultimodalPredictor.load(run)
    pred.set_threshold(0.4)
    pred.set_threshold(0.3)
    assert pred.metrics["test"]["note"].count("former threshold's") == 1  # said once, however often it is set


def test_a_hand_edited_threshold_in_config_yaml_is_warned_about(run):
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["decision"] = {"threshold": 0.2}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.warns(UserWarning, match=r"decision.threshold is 0.2, but the model was saved deciding at 0\.\d+ "
                                         r"\(preprocessors/targets.json\)"):
        pred = MultimodalPredictor.load(run)
    assert pred.pipeline.targets.threshold != 0.2


# -- a multilabel model: each label's threshold ----------------------------------------------
def test_config_takes_a_list_of_thresholds_for_the_labels_only():
    multilabel = multilabel_config() | {"decision": {"threshold": [0.3, 0.7]}}
    assert load_config(multilabel).decision.threshold == [0.3, 0.7]
    with pytest.raises(ConfigError, match=r"one per label, in target order \['tag_bright', 'tag_top'\]; got 1"):
        load_config(multilabel | {"decision": {"threshold": [0.3]}})
    with pytest.raises(ConfigError, match="a classifier takes one probability"):
        load_config(binary_config(threshold=[0.3, 0.7]))


def test_each_label_gets_its_threshold_and_every_call_follows_it(data, tmp_path):
    config = multilabel_config(epochs=2) | {"decision": {"threshold": "auto", "metric": "f1"}}
    pred = MultimodalPredictor.from_config(config).fit(data["train"], data["valid"], test=data["test"],
                                                       out=tmp_path / "run")
    proba, truth = pred.valid_scores
    assert proba.shape == truth.shape == (30, 2)
    expected = [choose_threshold(proba[:, j], truth[:, j] == 1, pred.config.decision)["threshold"] for j in range(2)]
    assert pred.pipeline.targets.threshold == pytest.approx(expected)
    assert list(pred.metrics["valid"]["threshold_per_label"]) == ["tag_bright", "tag_top"]
    change = pred.set_threshold([0.2, 0.95])  # far apart: calls differ from 0.5's
    assert change["old"] == pytest.approx(expected) and change["new"] == [0.2, 0.95]
    assert change["criterion"] is None and change["valid"] is None  # as set_threshold's docstring says
    frame = pred.predict_frame(data["test"])
    for label, cut in (("tag_bright", 0.2), ("tag_top", 0.95)):
        assert frame[f"pred_{label}"].tolist() == (frame[f"proba_{label}"] >= cut).astype(int).tolist()
    assert (frame[["pred_tag_bright", "pred_tag_top"]].to_numpy()
            != (frame[["proba_tag_bright", "proba_tag_top"]].to_numpy() >= 0.5)).any()
    truth_test = pd.read_csv(data["test"])[["tag_bright", "tag_top"]].to_numpy()
    scores = pred.evaluate(data["test"])
    called = frame[["pred_tag_bright", "pred_tag_top"]].to_numpy()
    assert scores["subset_accuracy"] == pytest.approx((called == truth_test).all(axis=1).mean())
    assert pred.metrics["test"]["subset_accuracy"] == pytest.approx(scores["subset_accuracy"])  # rescored from kept
    pred.save(tmp_path / "run")
    assert "Each label is called from its threshold: as given" in (tmp_path / "run" / "report.html").read_text()
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--data", str(data["test"])])
    assert result.exit_code == 0, result.output

    from polymodal.deploy.runtime import Runtime
    from polymodal.deploy.server import prediction_json

    rows = [{"img": str(data["test"].parent / r.image) if isinstance(r.image, str) else None,
             "sig": str(data["test"].parent / r.signal)} for r in pd.read_csv(data["test"]).itertuples()]
    runtime = Runtime.load(tmp_path / "run" / "export")
    assert runtime.meta["threshold"] == [0.2, 0.95]
    assert runtime.predict(rows) == called.tolist()
    answer = prediction_json(runtime, runtime.outputs(rows[:1])[0], rows[0])
    assert answer["threshold"] == [0.2, 0.95]
    assert answer["prediction"] == [label for label, c in zip(["tag_bright", "tag_top"], called[0]) if c]
    result = CliRunner().invoke(app, ["threshold", str(tmp_path / "run"), "--metric", "f1"])
    assert result.exit_code == 0, result.output
    assert "threshold: [0.2000, 0.9500] -> [" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["threshold", str(tmp_path / "run"), "--score", "1.5"])
    assert result.exit_code == 2 and "--score: a probability between 0 and 1; got 1.5" in result.stderr


@pytest.mark.parametrize("function", [MultimodalPredictor.set_threshold, set_threshold])
def test_set_thresholds_hints_take_the_list_of_one_per_label_it_accepts(function):
    hints = typing.get_type_hints(function, localns={"MultimodalPredictor": MultimodalPredictor})
    hint = hints["threshold"]  # what editors and type checkers let a caller pass
    assert set(typing.get_args(hint)) == {float, list[float], str, type(None)}


def test_a_label_of_one_value_in_the_validation_rows_keeps_the_default(data):
    valid = pd.read_csv(data["valid"]).assign(tag_top=0)
    valid.to_csv(data["valid"].parent / "valid_no_top.csv", index=False)
    config = multilabel_config(epochs=1) | {"decision": {"threshold": "auto"}}
    with pytest.warns(UserWarning, match="label 'tag_top' is 0 in every one of the 30 validation rows.*keeps 0.5"):
        pred = MultimodalPredictor.from_config(config).fit(data["train"], data["valid"].parent / "valid_no_top.csv")
    assert pred.pipeline.targets.threshold[1] == 0.5 and list(pred.info["decision"]) == ["tag_bright"]
