"""A flag threshold per subset of modalities: a row with a sensor missing is scored through the
model's missing path, on another scale than a complete row, so it is flagged at the threshold of
the modalities it holds, each chosen at the validation false-positive rate of the full set's.

The rows with a modality missing are made here by blanking a column of the manifest, so the
scores come through ``predict_frame``'s own path, not from the arrays the thresholds were chosen on.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from polymodal.anomaly import AnomalyDetector
from polymodal.cli import app
from polymodal.run_files import MODEL_FILE, SCORES_FILE

from .helpers import config

MASKS = {"a+b": 0b11, "a": 0b01, "b": 0b10}  # bit i: the i-th modality in sorted order (a, b)
# a column blanked in every row, on a model trained without modality dropout: said, and meant here
pytestmark = pytest.mark.filterwarnings("ignore:.*has no value in any row", "ignore:.*never trained without")


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A mahalanobis run: its latent with a sensor hidden lies far from the normal Gaussian, so a
    row missing one scores orders of magnitude above a complete one."""
    folder = tmp_path_factory.mktemp("subsets") / "run"
    AnomalyDetector.from_config(config("mahalanobis", epochs=4)).fit(data / "train.csv", data / "valid.csv",
                                                                     test=data / "test.csv", out=folder)
    return folder


@pytest.fixture
def copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def with_only(data, split: str, subset: str, label: str | None = None) -> pd.DataFrame:
    """The ``split`` manifest (its rows of ``label``) with the modalities outside ``subset`` blanked."""
    frame = pd.read_csv(data / f"{split}.csv")
    if label is not None:
        frame = frame[frame["label"] == label].reset_index(drop=True)
    for column in ("a", "b"):
        frame[column] = [str(data / v) if column in subset.split("+") else None for v in frame[column]]
    return frame


def test_each_subset_is_flagged_at_the_full_sets_validation_rate(data, run):
    det = AnomalyDetector.load(run)
    full = float(det.model.scorer.threshold)
    chosen = det.subset_thresholds()
    assert chosen is not None and chosen[0b11] == full
    rate = (det.predict_frame(data / "valid.csv")["score"] > full).mean()
    assert rate == 1 / 24  # floor(0.05 x 24) of the 24 validation normals
    for subset, mask in MASKS.items():
        frame = det.predict_frame(with_only(data, "valid", subset))
        assert (frame["score"] > chosen[mask]).mean() == rate, subset
        assert frame["flag"].mean() == rate, subset  # predict_frame flags at the subset's own threshold
    assert set(det.info["subset_thresholds"]) == set(MASKS)
    assert det.info["subset_thresholds"]["a"] == pytest.approx(chosen[0b01])


def test_a_normal_row_missing_a_sensor_is_not_flagged_for_being_incomplete(data, run):
    det = AnomalyDetector.load(run)
    full = float(det.model.scorer.threshold)
    for subset in ("a", "b"):
        frame = det.predict_frame(with_only(data, "test", subset, "normal"))
        assert (frame["score"] > full).mean() >= 0.9, subset  # the one threshold of before flagged them
        assert frame["flag"].mean() <= 0.25, subset
    faults = det.predict_frame(with_only(data, "test", "b", "fault"))  # b carries the fault: still found
    assert faults["flag"].mean() >= 0.5


def test_evaluate_missing_gives_every_subset_its_flag_rates_at_its_threshold(data, run):
    from polymodal.evaluation.subsets import evaluate_subsets

    det = AnomalyDetector.load(run)
    table = evaluate_subsets(det, data / "test.csv").set_index("modalities")
    for subset in MASKS:  # the same rows blanked through the manifest: the same flags
        frame = with_only(data, "test", subset)
        flagged = det.predict_frame(frame)["flag"].to_numpy()
        normal = (frame["label"] == "normal").to_numpy()
        assert table.loc[subset, "flag_fpr"] == pytest.approx(flagged[normal].mean()), subset
        assert table.loc[subset, "flag_tpr"] == pytest.approx(flagged[~normal].mean()), subset
        assert table.loc[subset, "flag_fpr"] <= 0.25, subset


def test_a_threshold_set_as_a_score_maps_each_subset_through_its_validation_rate(data, copy, monkeypatch):
    det = AnomalyDetector.load(copy)
    normal = np.sort(det.valid_scores[0][det.valid_scores[1] != 1])
    score = float(normal[-4])  # three of the 24 validation normals above it

    def no_data(*_, **__):
        raise AssertionError("the thresholds were chosen again from the data, not from scores.npz")

    with monkeypatch.context() as patch:
        patch.setattr(AnomalyDetector, "encode_data", no_data)
        change = det.set_threshold(score=score)
    assert change["new"] == score and change["valid_fpr"] == 3 / 24
    assert {s: v["valid_fpr"] for s, v in change["subsets"].items()} == dict.fromkeys(MASKS, 3 / 24)
    chosen = det.subset_thresholds()
    for subset, mask in MASKS.items():  # scored again through the missing path: three above each
        scores = det.predict_frame(with_only(data, "valid", subset))["score"]
        assert int((scores > chosen[mask]).sum()) == 3, subset
    det.save(copy)
    np.testing.assert_array_equal(AnomalyDetector.load(copy).subset_thresholds(), chosen)


def test_polymodal_threshold_sets_every_subsets_threshold_and_prints_them(copy):
    result = CliRunner().invoke(app, ["threshold", str(copy), "--fpr", "0.125"])
    assert result.exit_code == 0, result.output
    for subset in MASKS:
        assert f"  with {subset}: threshold " in result.output
        assert "validation FPR 0.1250 (of 24 normal rows holding them)" in result.output
    det = AnomalyDetector.load(copy)
    assert det.metrics["valid"]["flag_fpr"] == 0.125
    test_scores, test_y = det.test_scores  # the test rows hold both sensors: the full set's threshold
    assert det.metrics["test"]["flag_tpr"] == pytest.approx(
        float((test_scores[test_y == 1] > float(det.model.scorer.threshold)).mean()))


def test_a_consistency_run_has_no_threshold_for_a_single_modality_it_cannot_score(data, tmp_path):
    """A row holding one modality has no consistency score: no subset threshold is listed for it
    (it was the full set's, said to be chosen on 0 rows), and the command says it is not scored."""
    import json

    folder = tmp_path / "run"
    det = AnomalyDetector.from_config(config("consistency", epochs=1)).fit(data / "train.csv", data / "valid.csv",
                                                                           out=folder)
    full = float(det.model.scorer.threshold)
    assert det.info["subset_thresholds"] == {"a+b": full}
    assert json.loads((folder / "metrics.json").read_text())["training"]["subset_thresholds"] == {"a+b": full}
    result = CliRunner().invoke(app, ["threshold", str(folder), "--fpr", "0.125"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "with a+b: threshold " in text and "validation FPR 0.1250 (of 24 normal rows holding them)" in text
    assert ("with a or b alone: not scored (fewer than two modalities present: the consistency scorer compares "
            "modalities): such a row is flagged") in text
    assert "with a:" not in text and "with b:" not in text and "unknown" not in text
    change = AnomalyDetector.load(folder).set_threshold(fpr=0.25)
    reason = "fewer than two modalities present: the consistency scorer compares modalities"
    assert list(change["subsets"]) == ["a+b"] and change["unscored_subsets"] == {"a": reason, "b": reason}


def test_a_run_saved_before_keeps_one_threshold_and_says_so_once(data, copy):
    state = load_file(copy / MODEL_FILE)
    del state["scorer.subset_thresholds"]  # as written before thresholds per subset
    save_file(state, copy / MODEL_FILE, metadata={})
    with np.load(copy / SCORES_FILE) as stored:
        kept = {name: stored[name] for name in stored.files if name.split("_")[1] in ("scores", "labels")}
    np.savez(copy / SCORES_FILE, **kept)
    det = AnomalyDetector.load(copy)
    assert det.subset_thresholds() is None and det.kept == {}
    full = float(det.model.scorer.threshold)
    frame = with_only(data, "test", "a")
    with pytest.warns(UserWarning, match=r"flagged row\(s\) miss a modality, and this model has one flag threshold "
                                         r"for every row \(fitted or exported before .*fit the run again"):
        flagged = det.predict_frame(frame)
    assert (flagged["flag"] == (flagged["score"] > full)).all() and flagged["flag"].mean() >= 0.9
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*one flag threshold for every row")
        det.predict_frame(frame)  # said once
    change = det.set_threshold(fpr=0.25)  # no scores per subset kept: still one threshold
    assert change["subsets"] is None and det.subset_thresholds() is None
