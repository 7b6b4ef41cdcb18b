"""Re-thresholding a fitted anomaly detector without retraining: ``set_threshold`` and
``polymodal threshold``, the validation scores the run folder keeps for it (``scores.npz``), and
the warning for a target rate finer than the validation normals can measure."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.anomaly import AnomalyDetector
from polymodal.cli import app
from polymodal.errors import ConfigError, OptionError, RunFolderError
from polymodal.metrics.anomaly import threshold_at_fpr
from polymodal.run_files import SCORES_FILE
from polymodal.utils.tables import format_value

from .helpers import config


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A mahalanobis run (one epoch) fitted with a test manifest; tests work on copies of it."""
    folder = tmp_path_factory.mktemp("threshold") / "run"
    AnomalyDetector.from_config(config("mahalanobis", epochs=1)).fit(data / "train.csv", data / "valid.csv",
                                                                     test=data / "test.csv", out=folder)
    return folder


@pytest.fixture
def copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def normal_valid_scores(det: AnomalyDetector) -> np.ndarray:
    scores, labels = det.valid_scores
    return scores[labels != 1]


def test_set_threshold_at_a_rate_follows_the_validation_normals_and_the_config_records_it(data, copy):
    det = AnomalyDetector.load(copy)
    assert det.valid_scores is not None and det.test_scores is not None  # read back from scores.npz
    assert len(det.valid_scores[0]) == 24 and len(det.test_scores[0]) == 72
    before = float(det.model.scorer.threshold)
    assert before == pytest.approx(threshold_at_fpr(normal_valid_scores(det), 0.05))
    change = det.set_threshold(fpr=0.25)
    new = threshold_at_fpr(normal_valid_scores(det), 0.25)
    subsets = change.pop("subsets")  # each subset of modalities follows at the same rate
    assert change.pop("unscored_subsets") == {}  # mahalanobis scores every subset
    assert change == {"old": before, "new": pytest.approx(new), "valid_fpr": 0.25, "valid_normals": 24}
    assert {label: (s["valid_fpr"], s["valid_normals"]) for label, s in subsets.items()} == {
        "a+b": (0.25, 24), "a": (0.25, 24), "b": (0.25, 24)}
    assert det.config.anomaly.target_fpr == 0.25 and det.config.anomaly.threshold is None
    assert det.info["threshold"] == pytest.approx(new) and det.metrics["valid"]["flag_fpr"] == 0.25
    test_scores, test_y = det.test_scores
    assert det.metrics["test"]["flag_tpr"] == pytest.approx(float((test_scores[test_y == 1] > new).mean()))
    frame = det.predict_frame(data / "test.csv")  # the config the model is bound to: not refused as changed
    assert (frame["flag"] == (frame["score"] > new)).all()
    det.config.anomaly.latent_dim = 4  # any other change is still refused
    with pytest.raises(ConfigError, match="anomaly.latent_dim: 8 when fitted, now 4"):
        det.predict_frame(data / "test.csv")


def test_a_new_threshold_survives_save_and_load(data, copy):
    det = AnomalyDetector.load(copy)
    det.set_threshold(fpr=0.125)
    det.save(copy)
    again = AnomalyDetector.load(copy)
    assert float(again.model.scorer.threshold) == float(det.model.scorer.threshold)
    assert again.config.anomaly.target_fpr == 0.125 and again.metrics["valid"]["flag_fpr"] == 0.125
    np.testing.assert_array_equal(again.valid_scores[0], det.valid_scores[0])
    pd.testing.assert_frame_equal(again.predict_frame(data / "valid.csv"), det.predict_frame(data / "valid.csv"))
    assert f"{float(det.model.scorer.threshold):.4g}</b> are flagged" in (copy / "report.html").read_text("utf-8")
    with np.load(copy / SCORES_FILE, allow_pickle=False) as stored:  # numpy arrays, no pickle
        assert sorted(stored.files) == ["test_held", "test_labels", "test_scores", "valid_held", "valid_labels",
                                        "valid_scores", "valid_subset_scores"]


def test_a_threshold_set_as_a_score_is_recorded_and_a_fit_refuses_it(data, copy):
    det = AnomalyDetector.load(copy)
    highest = float(normal_valid_scores(det).max())
    change = det.set_threshold(score=highest)
    assert change["new"] == highest and change["valid_fpr"] == 0.0
    assert det.config.anomaly.threshold == highest and det.config.anomaly.target_fpr == 0.05
    det.save(copy)
    assert AnomalyDetector.load(copy).config.anomaly.threshold == highest
    with pytest.raises(ConfigError, match="anomaly.threshold: .* a fit chooses its own threshold"):
        AnomalyDetector.load(copy).fit(data / "train.csv", data / "valid.csv")
    det.set_threshold(fpr=0.05)  # back to a rate: the score is dropped from the config
    assert det.config.anomaly.threshold is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "give either fpr .* got neither"),
    ({"fpr": 0.1, "score": 1.0}, "got both"),
    ({"fpr": 1.0}, r"fpr: a false-positive rate between 0 and 1 \(both excluded\); got 1.0"),
    ({"fpr": True}, "got True"),
    ({"score": float("nan")}, "score: a finite anomaly score; got nan"),
])
def test_bad_threshold_arguments_are_refused(copy, kwargs, message):
    det = AnomalyDetector.load(copy)
    with pytest.raises(OptionError, match=message):
        det.set_threshold(**kwargs)
    assert det.config.anomaly.target_fpr == 0.05


def test_a_run_saved_without_its_validation_scores_says_to_fit_again_or_give_a_score(copy):
    (copy / SCORES_FILE).unlink()  # as a run saved before they were kept
    det = AnomalyDetector.load(copy)
    assert det.valid_scores is None
    with pytest.raises(RunFolderError, match=f"keeps no validation scores .*{SCORES_FILE}.*fit it again, or set the "
                                             "threshold as a score"):
        det.set_threshold(fpr=0.1)
    with pytest.warns(UserWarning, match="thresholds per subset of modalities cannot follow .* now flagged above 1.5"):
        change = det.set_threshold(score=1.5)
    assert change["valid_fpr"] is None and float(det.model.scorer.threshold) == 1.5 and change["subsets"] is None
    assert det.metrics["valid"]["flag_fpr"] is None and "not known at the threshold set after the fit" in \
        det.metrics["valid"]["note"]
    det.set_threshold(score=1.6)  # set again: the note is said once
    assert det.metrics["valid"]["note"].count("not known at the threshold set after the fit") == 1


def test_a_saved_run_whose_config_loads_only_as_a_saved_run_can_be_rethresholded(copy):
    """A setting a newer polymodal refuses for a new run (modality_dropout 1.0) loads with a warning;
    setting the threshold must not validate the whole config again as a new one."""
    import yaml

    saved = yaml.safe_load((copy / "config.yaml").read_text())
    first = next(iter(saved["modalities"]))
    saved["train"]["modality_dropout"] = {first: 1.0}
    (copy / "config.yaml").write_text(yaml.safe_dump(saved), encoding="utf-8")
    with pytest.warns(UserWarning, match="would be refused for a new run"):
        det = AnomalyDetector.load(copy)
    change = det.set_threshold(score=2.5)
    assert change["new"] == 2.5 and det.config.anomaly.threshold == 2.5
    det.save(copy, overwrite=True)
    with pytest.warns(UserWarning, match="would be refused for a new run"):
        assert float(AnomalyDetector.load(copy).model.scorer.threshold) == 2.5


def test_a_damaged_scores_file_is_named_and_the_run_still_loads_without_it(copy, data):
    (copy / SCORES_FILE).write_bytes(b"PK\x03\x04 cut short")
    with pytest.warns(UserWarning, match=f"damaged: {SCORES_FILE} cannot be read.*loads without its kept scores"):
        det = AnomalyDetector.load(copy)
    assert det.valid_scores is None and len(det.predict_frame(data / "test.csv"))  # it still predicts
    with pytest.raises(RunFolderError, match="keeps no validation scores"):
        det.set_threshold(fpr=0.1)


def test_a_target_rate_below_one_over_the_validation_normals_warns_at_fit_and_when_set(data, copy):
    with pytest.warns(UserWarning, match=r"anomaly.target_fpr 0.01 is below 1/N = 0.04167 for the N = 24 validation "
                                         r"normal rows: .* the threshold is the highest validation normal score"):
        det = AnomalyDetector.from_config(config("mahalanobis", epochs=1, target_fpr=0.01)).fit(
            data / "train.csv", data / "valid.csv")
    assert float(det.model.scorer.threshold) == pytest.approx(float(normal_valid_scores(det).max()))
    loaded = AnomalyDetector.load(copy)
    with pytest.warns(UserWarning, match=r"^fpr 0.01 is below 1/N .* validate on at least 100 normal rows for that "
                                         r"rate, or give fpr a rate of at least 0.04167$"):
        loaded.set_threshold(fpr=0.01)


def test_a_rate_below_one_over_the_validation_normals_is_said_of_the_threshold_commands_fpr(copy):
    """Not of anomaly.target_fpr, which the command sets but the user did not write."""
    with pytest.warns(UserWarning, match=r"^--fpr 0.01 is below 1/N = 0.04167 for the N = 24 validation normal rows: "
                                         r".*, or give --fpr a rate of at least 0.04167$"):
        result = CliRunner().invoke(app, ["threshold", str(copy), "--fpr", "0.01"])
    assert result.exit_code == 0, result.output


def test_the_threshold_command_rewrites_the_run_and_prints_the_change(data, copy):
    runner = CliRunner()
    before = float(AnomalyDetector.load(copy).model.scorer.threshold)
    result = runner.invoke(app, ["threshold", str(copy), "--fpr", "0.25"])
    assert result.exit_code == 0, result.output
    det = AnomalyDetector.load(copy)
    after = float(det.model.scorer.threshold)
    assert det.config.anomaly.target_fpr == 0.25 and after < before
    text = " ".join(result.output.split())
    assert f"threshold: {format_value(before)} -> {format_value(after)}" in text
    assert "validation FPR: 0.2500 (6 of 24 validation normal rows above it)" in text
    result = runner.invoke(app, ["predict", str(copy), "--data", str(data / "valid.csv"), "--out", str(copy / "p.csv")])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(copy / "p.csv")["flag"].sum() == 6
    result = runner.invoke(app, ["threshold", str(copy), "--score", "2.5"])
    assert result.exit_code == 0, result.output
    assert AnomalyDetector.load(copy).config.anomaly.threshold == 2.5
    for args, message in ((["--fpr", "0.1", "--score", "1"], "(not both: got --fpr and --score)"),
                          ([], "give one of --fpr, --score, --metric, --min-sensitivity, --min-specificity, --reset "
                               "(none given)"),
                          (["--metric", "f1"], "--metric sets a two-class classifier's threshold; "),
                          (["--fpr", "0"], "--fpr: a false-positive rate between 0 and 1")):
        result = runner.invoke(app, ["threshold", str(copy), *args])
        assert result.exit_code == 2 and message in result.stderr, result.output


def test_a_run_exported_before_its_threshold_is_set_is_told_to_export_again(copy):
    runner = CliRunner()
    assert runner.invoke(app, ["export", str(copy)]).exit_code == 0
    result = runner.invoke(app, ["threshold", str(copy), "--score", "2.5"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert f"{copy / 'export'} still flags at the old threshold" in said and f"'polymodal export {copy}'" in said
    served = runner.invoke(app, ["serve", str(copy), "--port", "0"])  # refused before it binds
    assert served.exit_code == 2 and "or its decision or anomaly threshold set" in served.stderr
