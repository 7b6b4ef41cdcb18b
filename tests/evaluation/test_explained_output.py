"""Every view of an explanation names the output it explains: ``Explanation.explained_quantity``,
importance.csv, explain.html and the report's importance section; the page's wording follows the task."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal import MultimodalPredictor
from polymodal.config import ReportConfig
from polymodal.evaluation.diagnostics import diagnose
from polymodal.evaluation.report_sections import diagnostic_sections

from .helpers import tabular_config, two_tabular


def with_outputs(n: int, seed: int) -> pd.DataFrame:
    data = two_tabular(n, "a", seed)
    data["kw_leak"] = (data["a1"] > 0).astype(int)
    data["kw_noise"] = (data["b1"] > 0).astype(int)
    data["y1"] = 100.0 + 10.0 * data["a1"]
    data["y2"] = -3.0 * data["b1"]
    return data


def fitted(task: str) -> MultimodalPredictor:
    config = tabular_config(epochs=3, report={"rows": 0})
    config["task"] = task
    config["target"] = {"classification": "label", "multilabel": ["kw_leak", "kw_noise"],
                        "regression": ["y1", "y2"]}[task]
    return MultimodalPredictor.from_config(config).fit(with_outputs(80, 0), with_outputs(30, 1))


@pytest.fixture(scope="module")
def models():
    return {task: fitted(task) for task in ("classification", "multilabel", "regression")}


@pytest.mark.parametrize(("task", "default", "named", "other"), [
    ("classification", "probability of the predicted class", "yes", "probability of class 'yes'"),
    ("multilabel", "probability of label 'kw_leak'", "kw_noise", "probability of label 'kw_noise'"),
    ("regression", "predicted value of target 'y1'", "y2", "predicted value of target 'y2'"),
])
def test_the_explanation_and_importance_csv_name_the_explained_output(models, tmp_path, task, default, named, other):
    predictor, test = models[task], with_outputs(15, 2)
    explanation = predictor.explain(test, samples=0)
    assert explanation.explained_quantity == default
    explanation.to_html(tmp_path / "default")
    importance = pd.read_csv(tmp_path / "default" / "importance.csv")
    assert (importance["explained"] == default).all()
    assert list(importance.columns[:5]) == ["modality", "mean_abs_shapley", "share", "mean_shapley", "explained"]
    page = (tmp_path / "default" / "explain.html").read_text(encoding="utf-8")
    assert f"The Shapley values explain the <b>{default}</b>".replace("'", "&#x27;") in page
    chosen = predictor.explain(test, samples=0, output=named)
    assert chosen.explained_quantity == other and (chosen.values["explained"] == named).all()
    k = list(chosen.outputs).index(named)
    np.testing.assert_allclose(chosen.values[["a", "b"]].to_numpy(), chosen.phi[:, :, k])


def test_an_output_is_matched_as_text_too(models):
    """The command line gives text: ``"1"`` names a class ``1``."""
    predictor = models["classification"]
    test = with_outputs(10, 3)
    test["label"] = np.where(test["label"] == "yes", 1, 0)
    config = tabular_config(epochs=1, report={"rows": 0})
    numeric = MultimodalPredictor.from_config(config).fit(test, test)
    assert numeric.explain(test, samples=0, output="1").explained_quantity == "probability of class '1'"
    assert predictor.explain(test.assign(label="yes"), samples=0, output="no").explained_quantity == \
        "probability of class 'no'"


@pytest.mark.parametrize(("task", "says", "never"), [
    ("regression", "explained target's prediction", "logit"),
    ("multilabel", "explained label's logit", "Classification explains"),
    ("classification", "explained class's logit", "Classification explains"),
])
def test_the_page_words_the_within_modality_attributions_for_the_task(models, tmp_path, task, says, never):
    explanation = models[task].explain(with_outputs(6, 4), samples=1)
    page = explanation.to_html(tmp_path / task).read_text(encoding="utf-8")
    assert "Inside each modality" in page and says in page and never not in page


def test_the_report_section_names_the_explained_output(models, tmp_path):
    predictor = models["multilabel"]
    diagnostics = diagnose(predictor, with_outputs(20, 5), "test", ReportConfig(rows=20, robustness=False))
    assert diagnostics["explained"] == "probability of label 'kw_leak'"
    assert {r["explained"] for r in diagnostics["importance"]} == {"probability of label 'kw_leak'"}
    section = diagnostic_sections(diagnostics, tmp_path)["Modality importance"]
    assert "Shapley values over modalities of the <b>probability of label &#x27;kw_leak&#x27;</b>" in section
    assert "<code>macro_f1_*</code> columns score the whole prediction (every label), not only the explained label" \
        in section and "class, label or target" not in section
    assert diagnostics["outputs"] == 2 and "--output NAME" in section


def test_an_older_report_without_the_name_still_renders(tmp_path):
    importance = [{"modality": "a", "mean_abs_shapley": 0.1, "share": 1.0, "mean_shapley": 0.1}]
    sections = diagnostic_sections({"rows": 10, "split": "valid", "metric": "accuracy", "importance": importance},
                                   tmp_path)
    assert "Shapley values over modalities of the <b>predicted score</b>" in sections["Modality importance"]


@pytest.mark.parametrize(("task", "outputs", "says", "other"), [
    ("regression", 2, "the whole prediction (every target), not only the explained target", True),
    ("regression", 1, "the whole prediction (its one target, the explained one)", False),
    ("multilabel", 1, "the whole prediction (its one label, the explained one)", False),
    ("classification", 2, "the whole prediction (every class), not only the explained output", True),
    ("regression", None, "the whole prediction (every target), not only the explained target", True),  # saved before
])
def test_the_report_words_what_the_metric_scores_and_other_outputs_for_the_task(tmp_path, task, outputs, says,
                                                                               other):
    importance = [{"modality": "a", "mean_abs_shapley": 0.1, "share": 1.0, "mean_shapley": 0.1, "r2_all": 0.5,
                   "r2_without": 0.1, "r2_drop": 0.4}]
    diagnostics = {"rows": 10, "split": "valid", "metric": "r2", "importance": importance, "task": task,
                   **({} if outputs is None else {"outputs": outputs})}
    section = diagnostic_sections(diagnostics, tmp_path)["Modality importance"]
    assert f"<code>r2_*</code> columns score {says}" in section and "class, label or target" not in section
    assert ("[--output NAME]" in section) is other and "polymodal explain RUN --data X" in section


def test_a_single_target_regression_page_offers_no_other_output_and_no_video_wording(tmp_path):
    """A page words its sentences for the model: no other output to pick for one target, no video sentence
    without a video, and the metric columns named for targets."""
    data = with_outputs(40, 0)
    config = tabular_config(epochs=2, report={"rows": 0})
    config.update(task="regression", target="y1")
    predictor = MultimodalPredictor.from_config(config).fit(data, with_outputs(20, 1))
    page = predictor.explain(with_outputs(8, 2), samples=1).to_html(tmp_path).read_text(encoding="utf-8")
    assert "Inside each modality" in page and "video" not in page.lower()
    assert "--output NAME" not in page and "output=NAME" not in page
    assert "columns score the whole prediction (its one target, the explained one)" in page
    assert "class, label or target" not in page


def test_a_multi_target_page_words_targets_and_offers_another(models, tmp_path):
    page = models["regression"].explain(with_outputs(8, 2), samples=1).to_html(tmp_path).read_text(encoding="utf-8")
    assert "columns score the whole prediction (every target), not only the explained target" in page
    assert "--output NAME" in page and "video" not in page.lower()


def test_regression_over_a_list_of_targets_predicts_one_column_per_target(models):
    """``target: [y1, y2]`` gives (N, 2), in the order named (``target: y`` gives (N,): test_predictor)."""
    test = with_outputs(15, 4)
    values = models["regression"].predict(test)
    frame = models["regression"].predict_frame(test)
    assert values.shape == (15, 2)
    np.testing.assert_allclose(values, frame[["pred_y1", "pred_y2"]].to_numpy(), rtol=1e-6)


@pytest.mark.parametrize(("task", "named"), [("regression", "y2"), ("multilabel", "kw_noise")])
def test_values_and_the_page_add_the_explained_outputs_true_value_after_the_older_columns(models, tmp_path, task,
                                                                                           named):
    """shapley.csv keeps ``explained, base, <modalities>, prediction`` where they were and adds the
    explained target's ``truth`` and ``error`` (regression) or the explained label's 0/1 ``truth``."""
    predictor, test = models[task], with_outputs(15, 2)
    for output in (None, named):
        explanation = predictor.explain(test, samples=2, output=output)
        values = explanation.values
        first = explanation.outputs[0] if output is None else output
        added = ["truth", "error"] if task == "regression" else ["truth"]
        assert list(values.columns) == ["explained", "base", "a", "b", "prediction", *added]
        np.testing.assert_allclose(values["truth"].to_numpy(np.float64), test[first].to_numpy(np.float64))
        if task == "regression":
            np.testing.assert_allclose(values["error"], values["prediction"] - test[first])
        else:
            assert set(values["truth"]) <= {0, 1}
    folder = explanation.to_html(tmp_path / task).parent
    written = pd.read_csv(folder / "shapley.csv", index_col="row")
    assert list(written.columns) == list(values.columns)
    np.testing.assert_allclose(written["truth"], test[named].to_numpy(np.float64))
    page = (folder / "explain.html").read_text(encoding="utf-8")
    row = explanation.within[0].row
    line = values.loc[row]
    if task == "regression":
        said = f"(true value {line['truth']:.3f}, error {line['error']:+.3f}): predicted value of target &#x27;y2&#x27;"
        assert "<th>score</th><th>truth</th><th>error</th>" in page
    else:
        said = f"(true {line['truth']}, predicted {int(line['prediction'] >= 0.5)}): probability of label &#x27;kw_noise"
        assert "<th>score</th><th>truth</th>" in page
    assert f"<h3>Row {row} {said}" in page
    unlabelled = predictor.explain(test.drop(columns=["kw_leak", "kw_noise", "y1", "y2"]), samples=0)
    assert "truth" not in unlabelled.values and unlabelled.truth is None


def test_the_maps_of_a_regression_start_with_its_worst_predicted_row(models):
    predictor, test = models["regression"], with_outputs(15, 2)
    explanation = predictor.explain(test, samples=1, output="y1")
    values = explanation.values
    worst = int(values["error"].abs().idxmax())
    assert {item.row for item in explanation.within} == {worst}


def test_the_page_says_its_maps_start_with_the_worst_predicted_rows_only_with_targets(models, tmp_path):
    predictor, test = models["regression"], with_outputs(8, 3)
    labelled = predictor.explain(test, samples=2).to_html(tmp_path / "labelled").read_text(encoding="utf-8")
    assert "The rows shown: the worst-predicted first (the largest errors of the explained target" in labelled
    unlabelled = predictor.explain(test.drop(columns=["y1", "y2"]), samples=2).to_html(tmp_path / "unlabelled")
    assert "worst-predicted" not in unlabelled.read_text(encoding="utf-8")
