"""Modality attribution on models trained on generated data where the answer is known."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest

from polymodal import MultimodalPredictor
from polymodal.errors import OptionError, SchemaMismatchError
from polymodal.evaluation import attribution
from polymodal.evaluation.coalitions import coalition_outputs
from polymodal.evaluation.data import load_eval_data, to_scores
from polymodal.utils import shapley

from .helpers import tabular_config, two_tabular


def fit(rule: str) -> tuple[MultimodalPredictor, pd.DataFrame]:
    config = tabular_config(dropout=0.3, epochs=12, report={"rows": 0})
    config["train"]["lr"] = 0.02
    # keep the epoch best on whole rows (log_loss): with modality dropout the default val_loss is the
    # loss under dropout, whose floor (rows left with the uninformative modality) can favour an early
    # epoch where the full-row path still reads some noise from b
    config["train"]["early_stopping"] = {"patience": 12, "monitor": "log_loss"}
    predictor = MultimodalPredictor.from_config(config).fit(two_tabular(300, rule, 0), two_tabular(100, rule, 1))
    return predictor, two_tabular(200, rule, 2)


@pytest.fixture(scope="module")
def a_only():
    """The label depends on modality a alone."""
    predictor, test = fit("a")
    return predictor, test, predictor.explain(test, samples=0)


@pytest.fixture(scope="module")
def xor():
    """The label is a xor b: neither modality says anything alone."""
    predictor, test = fit("xor")
    return predictor, test, predictor.explain(test, samples=0)


def share(explanation, modality: str) -> float:
    table = explanation.importance.set_index("modality")
    return float(table.loc[modality, "share"])


def test_when_only_a_matters_a_gets_over_90_percent_of_the_shapley_mass(a_only):
    predictor, _, explanation = a_only
    assert explanation.exact
    assert share(explanation, "a") > 0.9
    table = explanation.importance.set_index("modality")
    assert table.loc["a", "accuracy_all"] > 0.95
    assert table.loc["a", "accuracy_drop"] > 0.3  # without a: chance
    assert abs(table.loc["b", "accuracy_drop"]) < 0.05  # without b: nothing lost
    a, b = table.loc["a"], table.loc["b"]  # 95% intervals: a's excludes 0, each holds its drop
    assert 0 < a["accuracy_drop_low"] <= a["accuracy_drop"] <= a["accuracy_drop_high"]
    assert b["accuracy_drop_low"] <= b["accuracy_drop"] <= b["accuracy_drop_high"]


def test_the_drop_interval_is_a_paired_bootstrap_of_the_rows():
    from polymodal.evaluation.attribution import drop_interval

    right = np.array([True] * 20)
    assert drop_interval(right, right) == (0.0, 0.0)  # the same rows right: no drop, no doubt
    one = right.copy()
    one[0] = False  # one row in twenty lost: the interval reaches 0, as it should
    low, high = drop_interval(right, one)
    assert low == 0.0 and 0.05 <= high <= 0.15
    half = np.arange(200) % 2 == 0  # a large, certain drop over many rows
    low, high = drop_interval(np.ones(200, bool), half)
    assert 0.4 < low < 0.5 < high < 0.6


def test_an_explanation_prints_as_one_line_with_the_shares(a_only):
    _, test, explanation = a_only
    text = repr(explanation)
    assert "\n" not in text and len(text) < 300
    assert text.startswith(f"Explanation({len(explanation.rows)} rows x 2 modalities ['a', 'b'], exact Shapley values")
    assert f"a {share(explanation, 'a'):.2f}" in text


def test_when_both_are_needed_both_get_a_large_share_and_the_interaction_shows(xor, a_only):
    _, _, explanation = xor
    assert 0.3 < share(explanation, "a") < 0.7 and 0.3 < share(explanation, "b") < 0.7
    table = explanation.importance.set_index("modality")
    assert table.loc["a", "accuracy_all"] > 0.9
    assert (table["accuracy_alone"] < 0.65).all(), "one modality alone should be near chance under xor"
    interaction = float(explanation.interaction_table()["mean_interaction"].iloc[0])
    baseline = float(a_only[2].interaction_table()["mean_interaction"].iloc[0])
    assert interaction > 0.25
    assert interaction > 10 * abs(baseline)


@pytest.mark.parametrize("case", ["a_only", "xor"])
def test_shapley_values_add_up_to_all_present_minus_none_present_for_every_sample(case, request):
    _, _, explanation = request.getfixturevalue(case)
    np.testing.assert_allclose(explanation.phi.sum(axis=1), explanation.full - explanation.base, atol=1e-9)
    values = explanation.values
    np.testing.assert_allclose(values["base"] + values[["a", "b"]].sum(axis=1), values["prediction"], atol=1e-9)
    assert (values["prediction"] >= 0.5).all(), "classification explains the predicted (most probable) class"


def test_coalition_outputs_match_running_the_model_with_the_other_modalities_missing(a_only):
    predictor, test, _ = a_only
    data = load_eval_data(predictor, test, require_target=True)
    batched = coalition_outputs(predictor, data.table, [frozenset({"a"}), frozenset({"b"}), frozenset()])
    for k, subset in enumerate([["a"], ["b"]]):
        alone = predictor.predict_proba(test, modalities=subset).to_numpy()
        np.testing.assert_allclose(to_scores(predictor, batched[k]), alone, atol=1e-5)
    full = predictor.predict_proba(test).to_numpy()
    np.testing.assert_allclose(to_scores(predictor, coalition_outputs(predictor, data.table, [frozenset("ab")])[0]),
                               full, atol=1e-5)


def test_beyond_the_exact_limit_sampled_orders_are_used_and_stay_efficient(a_only, monkeypatch):
    predictor, test, exact = a_only
    monkeypatch.setattr(shapley, "EXACT_MAX_MODALITIES", 1)
    sampled = predictor.explain(test, samples=0, permutations=8)
    assert not sampled.exact and sampled.interactions is None
    np.testing.assert_allclose(sampled.phi.sum(axis=1), sampled.full - sampled.base, atol=1e-9)
    np.testing.assert_allclose(sampled.phi, exact.phi, atol=1e-9)  # two modalities: both orders = all orders
    assert "accuracy_drop" in sampled.importance


def test_unlabelled_rows_and_a_missing_modality(a_only):
    predictor, test, _ = a_only
    rows = test.drop(columns=["label"]).head(20).copy()
    rows.loc[rows.index[:5], ["b1", "b2"]] = np.nan  # these rows hold only modality a
    explanation = predictor.explain(rows, samples=0)
    assert not any(c.startswith("accuracy") for c in explanation.importance.columns)
    values = explanation.values
    assert len(values) == 20
    assert (values["b"].iloc[:5] == 0.0).all(), "a modality a row does not hold cannot contribute"
    assert (values["b"].iloc[5:] != 0.0).any()


def test_a_modality_no_row_holds_has_no_accuracy_alone(a_only):
    """Alone, it would score predictions made from nothing."""
    predictor, test, _ = a_only
    rows = test.head(30).copy()
    rows[["b1", "b2"]] = np.nan
    table = predictor.explain(rows, samples=0).importance.set_index("modality")
    assert np.isnan(table.loc["b", "accuracy_alone"]) and table.loc["a", "accuracy_alone"] > 0.8


@pytest.mark.parametrize("max_rows", [0, -2])
def test_a_row_sample_without_a_row_is_refused_not_explained_as_zero_rows(a_only, max_rows):
    predictor, test, _ = a_only
    with pytest.raises(OptionError, match=rf"^max_rows: the number of rows to sample must be an integer of at least "
                                          rf"1 \(None: every row\); got {max_rows}$"):
        predictor.explain(test, samples=0, max_rows=max_rows)
    assert len(predictor.explain(test, samples=0, max_rows=3).values) == 3


def test_the_output_to_explain_must_exist(a_only):
    predictor, test, _ = a_only
    with pytest.raises(SchemaMismatchError, match=r"'maybe'.*\['no', 'yes'\]"):
        predictor.explain(test, samples=0, output="maybe")
    forced = predictor.explain(test.head(10), samples=0, output="yes")
    assert (forced.values["explained"] == "yes").all()


def test_a_base_that_already_predicts_one_class_is_said(a_only, tmp_path):
    """With no modality present a classifier may predict one class confidently (that path never
    trains): its rows' values are then small whatever they show, which the page and the
    explanation say; an even base says nothing."""
    import dataclasses

    _, _, explanation = a_only
    k = len(explanation.outputs)
    even = dataclasses.replace(explanation, base=np.full_like(explanation.base, 1.0 / k))
    assert even.base_bias() is None and "<b>Note</b>" not in even.to_html(tmp_path / "even").read_text("utf-8")
    skewed = np.full_like(explanation.base, 0.05 / (k - 1))
    skewed[:, 0] = 0.95
    biased = dataclasses.replace(explanation, base=skewed)
    said = biased.base_bias()
    assert said.startswith(f"with no modality present the model predicts {explanation.outputs[0]!r} (probability "
                           "0.95): rows of that class are explained against a base that already predicts them")
    assert "<b>Note</b>: with no modality present" in biased.to_html(tmp_path / "biased").read_text("utf-8")
    assert dataclasses.replace(biased, task="regression").base_bias() is None


def test_the_page_and_tables_are_written(a_only, tmp_path):
    _, _, explanation = a_only
    page = explanation.to_html(tmp_path / "explain")
    text = page.read_text(encoding="utf-8")
    assert text.count("<img") >= 1 and "Global importance" in text and "Interactions" in text
    shapley = pd.read_csv(tmp_path / "explain" / "shapley.csv")
    assert len(shapley) == len(explanation.values) and {"a", "b", "base", "prediction"} <= set(shapley.columns)
    assert list(pd.read_csv(tmp_path / "explain" / "importance.csv")["modality"]) == ["a", "b"]


def test_the_sampled_rows_cover_the_predicted_classes_and_a_mistake_first():
    """A manifest sorted by class must not give maps of its first class only."""
    full = np.array([[0.9, 0.1, 0.0]] * 4 + [[0.1, 0.8, 0.1]] * 3 + [[0.0, 0.2, 0.8]] * 3)
    truth = np.array([0, 0, 0, 0, 1, 2, 1, 2, 2, 2])  # row 5: a class-2 row predicted 1
    rows = attribution.mapped_rows("classification", full, truth, 3)
    assert 5 in rows, "a misclassified row comes first"
    assert set(full[rows].argmax(axis=1)) == {0, 1, 2}, "then each predicted class in turn"
    unlabelled = attribution.mapped_rows("classification", full, None, 3)
    assert list(unlabelled) == [0, 4, 7]
    assert len(attribution.mapped_rows("classification", full, truth, 50)) == 10
    assert list(attribution.mapped_rows("regression", full[:, :1], None, 3)) == [0, 4, 9], "spread over the rows"


def test_regression_and_multilabel_maps_show_the_worst_predicted_rows_first_then_spread():
    """Mirroring classification's mistake first: the largest errors of the explained output, up to
    half of the maps, then rows spread over the others; without targets, spread as before."""
    full = np.column_stack([np.arange(10.0), np.zeros(10)])  # predicted y1 = row number, y2 = 0
    truth = full.copy()
    truth[6, 0], truth[2, 0], truth[8, 0] = 16.0, -5.0, np.nan  # errors 10 and 7; row 8's truth blank
    truth[3, 1] = 100.0  # a large error of the other target
    rows = attribution.mapped_rows("regression", full, truth, 4)
    assert list(rows) == [0, 2, 6, 9], "rows 6 and 2 (worst first), then 0 and 9 spread over the rest"
    assert list(attribution.mapped_rows("regression", full, truth, 1)) == [6]
    assert list(attribution.worst_rows("regression", full, truth)) == [6, 2, 0, 1, 3, 4, 5, 7, 9]  # blank left out
    assert 3 in attribution.mapped_rows("regression", full, truth, 2, explained=np.ones(10, np.int64))
    assert list(attribution.mapped_rows("regression", full, None, 3)) == [0, 4, 9], "no targets: spread"
    proba = np.array([[0.9], [0.2], [0.6], [0.1], [0.45], [0.8]])
    labels = np.array([[1.0], [0.0], [0.0], [0.0], [1.0], [1.0]])  # rows 2 (called 1, truly 0) and 4 (called 0) wrong
    assert list(attribution.worst_rows("multilabel", proba, labels)) == [2, 4]  # 0.6 off, then 0.55 off
    assert list(attribution.mapped_rows("multilabel", proba, labels, 3)) == [0, 2, 4]
    assert list(attribution.mapped_rows("multilabel", proba, labels, 5)) == [0, 2, 3, 4, 5], \
        "only the wrongly called rows count as worst (2 of 5 maps), however many maps"


def test_the_page_names_each_rows_true_and_predicted_class(a_only, tmp_path):
    predictor, test, _ = a_only
    explanation = predictor.explain(test, samples=2)
    assert explanation.labels is not None and (explanation.labels == test["label"].to_numpy()).all()
    text = explanation.to_html(tmp_path / "explain").read_text(encoding="utf-8")
    first = explanation.within[0].row
    truth = test["label"].iloc[first]
    assert f"<h3>Row {first} (true class &#x27;{truth}&#x27;, predicted " in text
    assert "<th>true class</th><th>predicted class</th><th>explained</th><th>score</th>" in text
    importance = text[text.index("Global importance"):text.index("Interactions")]
    assert "<th>explained</th>" not in importance, "the sentence above the table names the explained output"


def test_values_are_indexed_like_predict_proba_so_they_join_onto_the_callers_frame(a_only):
    predictor, test, _ = a_only
    rows = test.drop(columns=["label"]).iloc[::2].head(12)  # index 0, 2, 4, ... as a filtered frame keeps it
    values = predictor.explain(rows, samples=0).values
    assert list(values.index) == list(predictor.predict_proba(rows).index) == list(rows.index)
    joined = rows.join(values)
    assert joined["prediction"].notna().all()
    named = rows.set_index(pd.Index([f"id{i}" for i in range(len(rows))], name="id"))
    sampled = predictor.explain(named, samples=0, max_rows=5, seed=1).values  # a sample keeps each row's label
    assert len(sampled) == 5 and set(sampled.index) <= set(named.index)
    np.testing.assert_allclose(sampled["prediction"], predictor.predict_proba(named).loc[sampled.index].max(axis=1),
                               atol=1e-5)  # the explained output of each row is that row's predicted class
    plain = rows.reset_index(drop=True)
    assert values.index.name != "row" and predictor.explain(plain, samples=0).values.index.name == "row"



def test_the_page_of_a_dataframe_with_its_own_index_names_rows_and_labels(a_only, tmp_path):
    predictor, test, _ = a_only
    named = test.head(6).set_index(pd.Index([f"id{i}" for i in range(6)], name="id"))
    page = predictor.explain(named, samples=1).to_html(tmp_path / "explain")
    text = page.read_text(encoding="utf-8")
    assert "<th>index</th>" in text and "id5" in text and "Inside each modality" in text
    assert "(index &#x27;id" in text, "each map's heading names the row's index label too"


@pytest.mark.parametrize(("changes", "absent", "untrained"), [
    ({}, {"a": 0, "b": 0}, ["a", "b"]),
    ({}, {"a": 0, "b": 12}, ["a"]),  # training rows that lacked b: its missing path trained on them, a's did not
    ({}, None, None),  # a run fitted before the gaps were recorded: not known, no note
    ({"train": {"modality_dropout": 0.3}}, None, []),
    ({"train": {"modality_dropout": {"a": 0.2}}}, {"a": 0, "b": 0}, ["b"]),  # b was never hidden
    ({"train": {"modality_dropout": {"a": 0.2}}}, None, None),
    ({"loss": {"subset_weight": 1.0}}, None, []),  # each modality alone: every other one hidden
    ({"fusion": {"name": "late"}}, None, []),  # a coalition is its present modalities' own heads
])
def test_which_modalities_missing_path_trained_follows_dropout_the_subset_loss_the_data_and_the_fusion(
        changes, absent, untrained):
    from types import SimpleNamespace

    from polymodal.config import load_config

    config = tabular_config()
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values} if section != "fusion" else values
    info = {} if absent is None else {"train_absent": absent}
    assert attribution.untrained_absences(SimpleNamespace(config=load_config(config), info=info)) == untrained


def test_an_anomaly_detectors_missing_path_trains_only_with_modality_dropout():
    from types import SimpleNamespace

    from polymodal.config import load_config

    config = {**tabular_config(), "task": "anomaly", "target": None, "head": None, "loss": {"subset_weight": 1.0}}
    config.pop("head")
    detector = SimpleNamespace(config=load_config(config), info={"train_absent": {"a": 0, "b": 0}})
    assert attribution.untrained_absences(detector) == ["a", "b"]  # it has no subset loss: the weight trains nothing
    config["train"]["modality_dropout"] = 0.3
    assert attribution.untrained_absences(SimpleNamespace(config=load_config(config), info={})) == []
    config["train"]["modality_dropout"] = 0.0
    config["anomaly"] = {"scorer": "consistency"}  # it scores the present modalities' pairs: nothing else is read
    assert attribution.untrained_absences(SimpleNamespace(config=load_config(config), info=detector.info)) == []


@pytest.fixture(scope="module")
def never_hidden():
    """A model trained on whole rows only: no modality dropout, no subset loss."""
    config = tabular_config(dropout=0.0, epochs=2, report={"rows": 0})
    predictor = MultimodalPredictor.from_config(config).fit(two_tabular(100, "a", 0), two_tabular(40, "a", 1))
    return predictor, predictor.explain(two_tabular(30, "a", 2), samples=0)


def test_a_model_never_trained_with_a_modality_hidden_says_its_coalitions_are_unseen_inputs(never_hidden, a_only,
                                                                                          tmp_path):
    """Shapley values hide modalities through the missing path; a model that never trained it
    scores every partial coalition on inputs it never saw: the explanation, its page and its repr
    say so, and name the settings that train it. A model trained with modality dropout says nothing."""
    import dataclasses

    _, explanation = never_hidden
    assert explanation.untrained == ["a", "b"]
    note = explanation.missing_path_note()
    assert note.startswith("this model never trained on rows with a modality hidden (train.modality_dropout is 0 for "
                           "every modality and loss.subset_weight is 0). Shapley values hide modalities through "
                           "that missing path")
    assert "train with train.modality_dropout (e.g. 0.3) or loss.subset_weight (e.g. 1.0)" in note
    assert explanation.caveats()[0] == note
    assert "caveat(s): see .caveats()" in repr(explanation)
    page = explanation.to_html(tmp_path / "unseen").read_text("utf-8")
    assert f"<b>Note</b>: {html.escape(note)}." in page
    trained = a_only[2]
    assert trained.untrained == [] and trained.missing_path_note() is None
    assert "this model never trained" not in trained.to_html(tmp_path / "trained").read_text("utf-8")
    # an anomaly detector has no subset loss: only modality dropout is suggested
    detector = dataclasses.replace(explanation, task="anomaly", reference="normal").missing_path_note()
    assert "loss.subset_weight" not in detector and "train with train.modality_dropout (e.g. 0.3) (see docs/robustness-and-attribution.md)" in detector
    assert "Measuring against normal rows under the same coalition removes only a shift common to every row" in detector
    one = dataclasses.replace(explanation, modalities=["a"])  # its only coalitions: all or none (base_bias's case)
    assert one.missing_path_note() is None


def test_a_modality_some_training_rows_lacked_has_a_trained_missing_path_and_the_others_do_not(tmp_path):
    """Reports missing from 12% of training rows train the path without a report, not the one
    without the image: the warnings and the caveat name only the modality never missing."""
    import warnings

    train = two_tabular(100, "a", 0)
    train.loc[::8, ["b1", "b2"]] = np.nan  # some training rows lack b; every one holds a
    predictor = MultimodalPredictor.from_config(tabular_config(epochs=1, report={"rows": 0})).fit(
        train, two_tabular(40, "a", 1))
    rows = two_tabular(12, "a", 3)
    rows.loc[[2, 7], ["b1", "b2"]] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor.predict_frame(rows)  # without b: a path training took
    rows.loc[[4], ["a1", "a2"]] = np.nan
    with pytest.warns(UserWarning, match=r"rows without 'a' are predicted from the other modalities, and this model "
                                         r"never trained without it"):
        predictor.predict_frame(rows)
    note = predictor.explain(rows, samples=0).missing_path_note()
    assert note.startswith("this model never trained on rows without 'a' (train.modality_dropout is 0 for it and "
                           "loss.subset_weight is 0, and every training row held it)")
    assert "so every coalition that hides 'a' is scored on inputs the model never saw" in note


def test_the_report_shows_the_explanations_caveats_in_its_importance_section(never_hidden, tmp_path):
    from polymodal.config.report import ReportConfig
    from polymodal.evaluation.diagnostics import diagnose
    from polymodal.evaluation.report_sections import diagnostic_sections

    predictor, explanation = never_hidden
    diagnostics = diagnose(predictor, two_tabular(30, "a", 2), "test", ReportConfig(rows=30, robustness=False))
    assert diagnostics["importance_caveats"] == explanation.caveats() != []
    section = diagnostic_sections(diagnostics, tmp_path)["Modality importance"]
    for caveat in explanation.caveats():
        assert f"<b>Note</b>: {html.escape(caveat)}." in section
    skewed = {**diagnostics, "importance_caveats": ["with no modality present the model predicts 'no'"]}
    assert "<b>Note</b>: with no modality present the model predicts &#x27;no&#x27;." in \
        diagnostic_sections(skewed, tmp_path)["Modality importance"]


def test_the_untrained_gap_warning_says_what_each_command_does_with_those_rows(never_hidden, tmp_path):
    """evaluate writes no predictions: it says the rows count in its metrics and where predict
    names them; predict_frame, whose own 'absent' column names them, says that."""
    predictor, _ = never_hidden
    rows = two_tabular(12, "a", 5)
    rows.loc[[2, 7], ["b1", "b2"]] = np.nan
    for scoring in (True, False):  # a file of its own each: the warning is said once per manifest
        path = tmp_path / f"{'evaluated' if scoring else 'predicted'}.csv"
        rows.to_csv(path, index=False)
        with pytest.warns(UserWarning, match="never trained without") as caught:
            predictor.evaluate(path) if scoring else predictor.predict_frame(path)
        [said] = [str(w.message) for w in caught if "never trained without" in str(w.message)]
        assert ("their predictions, counted in these metrics, may be far less accurate" in said) == scoring
        assert "'polymodal predict', predict_frame in Python, names them in its 'absent' column" in said
        assert "the predictions' 'absent' column" not in said


def test_predicting_rows_that_lack_a_modality_the_model_never_trained_without_warns_once(never_hidden, tmp_path):
    import warnings

    from polymodal.deploy.batch import predict_to_file

    predictor, _ = never_hidden
    rows = two_tabular(12, "a", 3)
    rows.loc[[2, 7], ["b1", "b2"]] = np.nan  # two rows without modality b
    with pytest.warns(UserWarning, match=r"DataFrame: rows without 'b' are predicted from the other modalities, and "
                                         r"this model never trained without it \(no modality dropout for it"):
        predictor.predict_frame(rows)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_to_file(predictor, tmp_path / "rows.csv", tmp_path / "p.csv", chunk_rows=3, progress=False)
    said = [str(w.message) for w in caught if "never trained without" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("rows.csv: rows without 'b'")  # once for the chunks that lack it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor.predict_frame(rows.drop(index=[2, 7]))  # whole rows: nothing to say
        predictor.predict_frame(rows, modalities=["a"])  # a subset chosen on purpose: nothing either
