"""Modality attribution of anomaly scores: Shapley values over modalities measured against the
normal rows, subset evaluation, and modality dropout in anomaly training (data: see
:mod:`tests.anomaly.helpers`; fault rows carry their fault in sensor ``b``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.anomaly import AnomalyDetector
from polymodal.anomaly.scorers import AnomalyScorer
from polymodal.evaluation.subsets import evaluate_subsets

from .helpers import config


@pytest.fixture(scope="module")
def autoencoder(data) -> AnomalyDetector:
    cfg = config("autoencoder", epochs=12)
    cfg["train"]["modality_dropout"] = 0.3
    return AnomalyDetector.from_config(cfg).fit(data / "train.csv", data / "valid.csv")


def test_the_faulty_sensor_gets_the_blame_and_normal_rows_next_to_none(autoencoder, data):
    explanation = autoencoder.explain(data / "test.csv", samples=0)
    values = explanation.values
    assert explanation.reference == "normal" and explanation.explained_quantity == "anomaly score"
    assert "Shapley values of the anomaly score against normal rows" in repr(explanation)
    assert list(values["label"]) == list(pd.read_csv(data / "test.csv")["label"])
    fault, normal = values[values["label"] == "fault"], values[values["label"] == "normal"]
    assert (fault["b"] > fault["a"]).mean() >= 0.8  # b runs at three times its frequency on these rows
    assert fault["b"].mean() > 3 * abs(normal["b"].mean()) and fault["b"].mean() > 3 * abs(normal["a"].mean())
    # base + contributions = the score, the base being the normal validation rows' mean score
    scores = autoencoder.predict_frame(data / "test.csv")["score"].to_numpy()
    np.testing.assert_allclose(values["base"] + values["a"] + values["b"], scores, rtol=1e-4, atol=1e-5)
    valid = autoencoder.predict_frame(data / "valid.csv")["score"].to_numpy()
    np.testing.assert_allclose(values["base"], valid.mean(), rtol=1e-4)
    groups = explanation.by_group().set_index("label")
    assert groups.loc["fault", "b"] == pytest.approx(fault["b"].mean()) and groups.loc["normal", "rows"] == 24
    assert groups.loc["fault", "b first"] == pytest.approx((fault["b"] > fault["a"]).mean())
    assert (groups["a first"] + groups["b first"]).eq(1).all()
    assert (values["flag"] == autoencoder.predict_frame(data / "test.csv")["flag"]).all()  # the rows' own flags
    importance = explanation.importance.set_index("modality")
    assert importance.loc["b", "auroc_drop"] > importance.loc["a", "auroc_drop"]


def test_within_modality_maps_go_to_the_highest_scores(autoencoder, data, tmp_path):
    explanation = autoencoder.explain(data / "test.csv", samples=2, steps=8)
    scores = autoencoder.predict_frame(data / "test.csv")["score"]
    top = sorted(int(i) for i in np.argsort(-scores.to_numpy())[:2])
    assert sorted({item.row for item in explanation.within}) == top
    assert {item.modality for item in explanation.within} == {"a", "b"}
    assert all(np.isfinite(item.attribution).all() and np.abs(item.attribution).sum() > 0 for item in explanation.within)
    page = explanation.to_html(tmp_path).read_text()
    assert "Mean Shapley value by label" in page and "normal validation rows' mean score" in page
    assert "anomaly score" in page and "(flagged)" in page


def test_a_pair_of_modalities_shares_an_inconsistency_evenly_and_an_unscored_row_gets_none(data):
    """Two modalities: nothing tells which of a mismatched pair is wrong, so each gets half; a row
    with one modality has no score (consistency) and nothing to attribute."""
    det = AnomalyDetector.from_config(config("consistency", epochs=2)).fit(data / "train.csv", data / "valid.csv")
    rows = pd.read_csv(data / "test.csv")
    rows.loc[0, "b"] = None
    rows.to_csv(data / "test_one_missing.csv", index=False)
    with pytest.warns(UserWarning, match="could not be scored"):
        scores = det.predict_frame(data / "test_one_missing.csv")["score"].to_numpy()
    values = det.explain(data / "test_one_missing.csv", samples=0).values
    assert np.isnan(values.loc[0, ["a", "b", "prediction"]].to_numpy(np.float64)).all()
    np.testing.assert_allclose(values["a"][1:], values["b"][1:])
    groups = det.explain(data / "test_one_missing.csv", samples=0).by_group().set_index("label")
    np.testing.assert_allclose(groups["a first"], 0.5)  # an even split: a tie shares each row
    np.testing.assert_allclose((values["base"] + values["a"] + values["b"])[1:], scores[1:], rtol=1e-4, atol=1e-4)


def test_subsets_score_auroc_with_the_other_sensors_missing(autoencoder, data):
    table = evaluate_subsets(autoencoder, data / "test.csv").set_index("modalities")
    assert list(table.index) == ["a+b", "a", "b"]
    labels = pd.read_csv(data / "test.csv")["label"].ne("normal").to_numpy()
    with_a = pd.read_csv(data / "test.csv").assign(b=None)
    with_a.to_csv(data / "test_a_only.csv", index=False)
    from sklearn.metrics import roc_auc_score

    alone = autoencoder.predict_frame(data / "test_a_only.csv")["score"]
    assert table.loc["a", "auroc"] == pytest.approx(roc_auc_score(labels, alone), abs=1e-6)
    assert table.loc["b", "auroc"] > table.loc["a", "auroc"]  # the faults are in b


def test_modality_dropout_hides_sensors_from_training_rows_only(data, monkeypatch):
    seen: list[tuple[bool, float]] = []
    loss = AnomalyScorer.loss

    def spy(self, net, batch, phase):
        seen.append((net.training, batch["present"]["a"].float().mean().item()))
        return loss(self, net, batch, phase)

    monkeypatch.setattr(AnomalyScorer, "loss", spy)
    cfg = config("autoencoder", epochs=1)
    cfg["train"]["modality_dropout"] = {"a": 0.5}
    detector = AnomalyDetector.from_config(cfg)
    assert detector._dropout_rates() == {"a": 0.5}
    # a hidden from every training row (b keeps each row non-empty): a rate the config refuses (a modality never
    # trained on), given to the training module directly so that what it hides is certain
    monkeypatch.setattr(AnomalyDetector, "_dropout_rates", lambda self: {"a": 1.0})
    detector.fit(data / "train.csv", data / "valid.csv")
    assert {present for training, present in seen if training} == {0.0}
    assert {present for training, present in seen if not training} == {1.0}  # validation sees whole rows


def test_a_run_saved_before_the_normal_reference_loads_and_explains_against_no_modality(autoencoder, data, tmp_path):
    from safetensors.torch import load_file, save_file

    run = autoencoder.save(tmp_path / "run")
    weights = load_file(run / "model.safetensors")
    del weights["scorer.normal_coalitions"]
    save_file(weights, run / "model.safetensors", metadata={})  # an older save: no digest of its preprocessing either
    old = AnomalyDetector.load(run)
    assert old.coalition_reference() is None
    pd.testing.assert_frame_equal(old.predict_frame(data / "test.csv"), autoencoder.predict_frame(data / "test.csv"))
    explanation = old.explain(data / "test.csv", samples=0)
    assert explanation.reference == "none"
    assert "records no normal rows' scores to measure against" in explanation.to_html(tmp_path / "page").read_text()
    np.testing.assert_allclose(explanation.values["base"], 0.0, atol=1e-6)  # the autoencoder scores no modality 0
    assert torch.isnan(old.model.scorer.normal_coalitions).all()


@pytest.fixture(scope="module")
def mahalanobis(data) -> AnomalyDetector:
    return AnomalyDetector.from_config(config("mahalanobis", epochs=4)).fit(data / "train.csv", data / "valid.csv")


def test_the_normal_reference_holds_each_coalitions_mean_validation_score(mahalanobis, data):
    """Bit i stands for the i-th sorted modality: a (bit 0), b (bit 1)."""
    valid = pd.read_csv(data / "valid.csv")
    valid.assign(b=None).to_csv(data / "valid_a.csv", index=False)
    valid.assign(a=None).to_csv(data / "valid_b.csv", index=False)
    reference = mahalanobis.coalition_reference()
    with pytest.warns(UserWarning, match="has no value in any row"):
        only_a = mahalanobis.predict_frame(data / "valid_a.csv")["score"].mean()
        only_b = mahalanobis.predict_frame(data / "valid_b.csv")["score"].mean()
    assert abs(only_a - only_b) > 1e-3 * abs(only_a)  # the check below tells the two apart
    np.testing.assert_allclose(reference[1:], [only_a, only_b, mahalanobis.predict_frame(data / "valid.csv")["score"].mean()],
                               rtol=1e-5)


def test_a_row_without_a_sensor_is_measured_against_normal_rows_without_it(mahalanobis, data):
    rows = pd.read_csv(data / "test.csv")
    rows.loc[[0, 30], "b"] = None  # a normal row and a fault row, sensor b missing
    rows.to_csv(data / "test_b_gone.csv", index=False)
    values = mahalanobis.explain(data / "test_b_gone.csv", samples=0).values
    scores = mahalanobis.predict_frame(data / "test_b_gone.csv")["score"]
    reference = mahalanobis.coalition_reference()
    for row in (0, 30):
        assert values.loc[row, "b"] == 0.0  # what the row lacks moved nothing
        assert values.loc[row, "base"] == pytest.approx(reference[1])  # normal rows scored with a alone
        assert values.loc[row, "a"] == pytest.approx(scores[row] - reference[1], rel=1e-4, abs=1e-4)
    assert values.loc[1, "base"] == pytest.approx(reference[3])  # a whole row: against whole normal rows
    rows.loc[[0]].to_csv(data / "one_normal_b_gone.csv", index=False)
    explanation = mahalanobis.explain(data / "one_normal_b_gone.csv", samples=0)
    assert explanation.by_group()[["a first", "b first"]].to_numpy().tolist() == [[1.0, 0.0]]  # b, absent, never first


def test_resuming_a_checkpoint_written_before_the_normal_reference_keeps_it_as_built():
    from polymodal.anomaly.module import AnomalyModule
    from polymodal.training.module import OptimSettings

    rows = pd.DataFrame({"x1": np.arange(16.0), "x2": np.arange(16.0) % 3})
    cfg = {"task": "anomaly", "modalities": {"tab": {"kind": "tabular", "columns": ["x1", "x2"]}},
           "fusion": {"name": "concat"}, "anomaly": {"scorer": "autoencoder", "latent_dim": 2},
           "train": {"epochs": 1, "batch_size": 8, "progress": False, "early_stopping": None}}
    model = AnomalyDetector.from_config(cfg).fit(rows, rows).model
    module = AnomalyModule(model, "train", OptimSettings(1e-3, 0.0, "none", 0, 1.0))
    old = {"state_dict": {k: v for k, v in module.state_dict().items() if "normal_coalitions" not in k}}
    with pytest.raises(RuntimeError, match="normal_coalitions"):
        module.load_state_dict(old["state_dict"])
    module.on_load_checkpoint(old)
    module.load_state_dict(old["state_dict"])  # strict, as Lightning resumes
    assert torch.isfinite(module.model.scorer.normal_coalitions).all()  # the fitted values, kept
