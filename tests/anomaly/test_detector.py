"""``task: anomaly`` end to end on tiny synthetic two-sensor data written into tmp_path (the
``data`` fixture: see :mod:`tests.anomaly.helpers`)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import get_args

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from polymodal import MultimodalPredictor
from polymodal.anomaly import SCORERS, AnomalyDetector
from polymodal.config import load_config
from polymodal.config.anomaly import Scorer
from polymodal.errors import ConfigError, ManifestError, RunFolderError, SchemaMismatchError

from .helpers import config


def test_a_finished_deep_svdd_run_resumes_only_when_its_last_phase_would_train_further(data, tmp_path):
    """Epochs are shared between the phases; a resume extends the last one only (the first is
    done): the run is finished when its last phase has run its share, not when the total has."""
    run = tmp_path / "run"
    AnomalyDetector.from_config(config("deep_svdd", epochs=4)).fit(data / "train.csv", data / "valid.csv", out=run)
    with pytest.raises(RunFolderError, match="already finished its 2 epochs .* its last training phase runs 2"):
        AnomalyDetector.from_config(config("deep_svdd", epochs=5)).fit(data / "train.csv", data / "valid.csv",
                                                                       out=run, resume=True)  # 5: 3, then 2
    longer = AnomalyDetector.from_config(config("deep_svdd", epochs=6)).fit(data / "train.csv", data / "valid.csv",
                                                                            out=run, resume=True)
    assert list(longer.history["phase"]) == ["pretrain"] * 2 + ["svdd"] * 3
    with pytest.raises(RunFolderError, match="already finished its 3 epochs"):
        AnomalyDetector.from_config(config("deep_svdd", epochs=6)).fit(data / "train.csv", data / "valid.csv",
                                                                       out=run, resume=True)


def test_the_registered_scorers_are_the_choices_of_anomaly_scorer():
    assert sorted(SCORERS) == sorted(get_args(Scorer))


@pytest.mark.parametrize("scorer", ["autoencoder", "mahalanobis",
                                    pytest.param("deep_svdd", marks=pytest.mark.slow)])
def test_scorer_trained_on_normals_detects_unseen_faults(data, tmp_path, scorer):
    det = MultimodalPredictor.from_config(config(scorer)).fit(data / "train.csv", data / "valid.csv",
                                                              test=data / "test.csv", out=tmp_path / "run")
    assert isinstance(det, AnomalyDetector)
    test = det.metrics["test"]
    assert test["per_label_auroc"]["fault"] > 0.85, test
    assert test["normals"] == 24 and test["anomalies"] == 48
    # the threshold was set on validation normals at the target rate
    assert det.metrics["valid"]["flag_fpr"] <= 0.05 + 1e-9
    assert {"auroc", "auprc", "fpr@95tpr", "flag_tpr"} <= set(test)


def test_consistency_scorer_detects_mismatched_sensors(data):
    det = AnomalyDetector.from_config(config("consistency", epochs=25)).fit(data / "train.csv", data / "valid.csv")
    scores = det.evaluate(data / "test.csv")["per_label_auroc"]
    assert scores["mismatch"] > 0.8, scores


def test_run_folder_round_trip_gives_identical_scores_and_flags(data, tmp_path):
    det = MultimodalPredictor.from_config(config("mahalanobis", epochs=2)).fit(data / "train.csv", data / "valid.csv",
                                                                               test=data / "test.csv",
                                                                               out=tmp_path / "run")
    before = det.predict_frame(data / "test.csv")
    again = MultimodalPredictor.load(tmp_path / "run")
    assert isinstance(again, AnomalyDetector)
    after = again.predict_frame(data / "test.csv")
    pd.testing.assert_frame_equal(before, after)
    assert list(after.columns) == ["score", "flag", "absent"]
    again.config.anomaly.target_fpr = 0.5  # the threshold was chosen for the fitted value
    with pytest.raises(ConfigError, match="anomaly.target_fpr"):
        again.predict_frame(data / "test.csv")
    threshold = again.info["threshold"]
    assert (after["flag"] == (after["score"] > threshold)).all()
    assert not any(p.suffix in (".pt", ".pkl", ".ckpt") for p in (tmp_path / "run").iterdir())
    with pytest.raises(RunFolderError) as refused:  # a finished run, not a save interrupted
        AnomalyDetector.from_config(config("mahalanobis", epochs=2)).fit(data / "train.csv", out=tmp_path / "run")
    assert "already holds a trained model;" in str(refused.value) and "--resume" not in str(refused.value)


def test_evaluate_by_a_column_gives_each_value_the_metrics_of_its_rows_alone(data):
    det = AnomalyDetector.from_config(config("mahalanobis", epochs=1)).fit(data / "train.csv", data / "valid.csv")
    test = pd.read_csv(data / "test.csv")
    test["line"] = np.where(np.arange(len(test)) % 2 == 0, "A", "B")
    test.to_csv(data / "test_lines.csv", index=False)
    scores = det.evaluate(data / "test_lines.csv", by="line")
    absolute = test.assign(a=[str(data / p) for p in test["a"]], b=[str(data / p) for p in test["b"]])
    for line in ("A", "B"):
        alone = det.evaluate(absolute[absolute["line"] == line])
        assert {k: v for k, v in scores["by"]["line"][line].items() if k != "rows"} == \
               {k: v for k, v in alone.items() if k != "rows"}
        assert scores["by"]["line"][line]["rows"] == alone["rows"] == 36


def test_a_refit_uses_the_anomaly_settings_as_edited_after_the_first_fit(data):
    det = AnomalyDetector.from_config(config("mahalanobis", epochs=1))
    det.fit(data / "train.csv", data / "valid.csv")
    assert det.info["scorer"] == "mahalanobis"
    det.config.anomaly = {"scorer": "autoencoder", "latent_dim": 8, "recon_size": 64, "decoder_hidden": 32,
                          "target_fpr": 0.25}
    det.fit(data / "train.csv", data / "valid.csv")
    assert det.info["scorer"] == "autoencoder" and det.settings.target_fpr == 0.25
    assert 0.1 < det.metrics["valid"]["flag_fpr"] <= 0.25 + 1e-9  # the threshold set at the edited rate


def test_an_anomaly_run_writes_a_report_with_per_label_auroc_and_the_score_distribution(data, tmp_path):
    det = AnomalyDetector.from_config(config("mahalanobis", epochs=2)).fit(
        data / "train.csv", data / "valid.csv", test=data / "test.csv", out=tmp_path / "run")
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    per_label = det.metrics["test"]["per_label_auroc"]
    for label in ("fault", "mismatch"):
        assert f"<td>{label}</td><td>-</td><td>{per_label[label]:.4f}</td>" in page  # valid: normal rows only
    assert f"{det.info['threshold']:.4g}</b> are flagged" in page
    assert (tmp_path / "run" / "plots" / "anomaly_scores.png").stat().st_size > 1000
    assert "<td>encoder: a</td>" in page and "<td>encoder: b</td>" in page and "<td>decoders</td>" in page
    # the test rows' diagnostics: AUROC per sensor subset and which sensor each label shows in, no robustness
    subsets = {row["modalities"]: row for row in det.diagnostics["subsets"]}
    assert sorted(subsets) == ["a", "a+b", "b"] and subsets["a+b"]["auroc"] == pytest.approx(det.metrics["test"]["auroc"])
    groups = {row["label"]: row["rows"] for row in det.diagnostics["by_group"]}
    assert groups == {"fault": 24, "mismatch": 24, "normal": 24} and "robustness" not in det.diagnostics
    assert "<h2>Modality subsets</h2>" in page and "<h2>Which sensor</h2>" in page and "<h2>Robustness</h2>" not in page
    assert "against the normal validation rows" in page
    assert AnomalyDetector.load(tmp_path / "run").diagnostics == det.diagnostics



@pytest.fixture
def plotted(monkeypatch):
    """What the report's score histogram is drawn from: (split name, rows, anomalous rows) per call."""
    import polymodal.evaluation.plots as plots

    calls = []
    draw = plots.score_histogram

    def recorder(scores, anomalous, threshold, split, **kwargs):
        calls.append((split, len(scores), int(np.sum(anomalous))))
        return draw(scores, anomalous, threshold, split, **kwargs)

    monkeypatch.setattr(plots, "score_histogram", recorder)
    return calls


def test_the_report_plots_the_test_scores_when_the_test_manifest_holds_anomalies(data, tmp_path, plotted):
    """Validation holds normal rows only (training on normal data): the plot that compares normal
    against anomalous scores is drawn from the fit's test manifest, and says so."""
    AnomalyDetector.from_config(config("mahalanobis", epochs=1)).fit(
        data / "train.csv", data / "valid.csv", test=data / "test.csv", out=tmp_path / "run")
    assert plotted == [("test", 72, 48)]
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "<figcaption>Anomaly scores of the test rows against the flag threshold.</figcaption>" in page
    assert (tmp_path / "run" / "plots" / "anomaly_scores.png").stat().st_size > 1000


def test_without_test_anomalies_the_validation_scores_are_plotted_and_the_caption_says_why(data, tmp_path, plotted):
    pd.read_csv(data / "test.csv").query("label == 'normal'").to_csv(data / "normal_test.csv", index=False)
    for name, test in (("no_test", None), ("normal_test", data / "normal_test.csv")):
        AnomalyDetector.from_config(config("mahalanobis", epochs=1)).fit(
            data / "train.csv", data / "valid.csv", test=test, out=tmp_path / name)
        page = (tmp_path / name / "report.html").read_text(encoding="utf-8")
        assert "Anomaly scores of the validation rows against the flag threshold. The validation rows hold no " \
               "anomalies, so only normal rows are shown; give the fit a test manifest with anomalies" in page
    assert plotted == [("validation", 24, 0), ("validation", 24, 0)]


NO_ANOMALIES = ("validation holds no anomalies: AUROC, AUPRC and FPR@95TPR need both classes, flag_tpr needs "
                "anomalies; the threshold is chosen on its normal rows")


def test_validation_metrics_left_undefined_by_normal_rows_only_say_why(data, tmp_path):
    """AUROC... need both classes: the values stay null in metrics.json, and a note beside them,
    printed by ``polymodal train`` and shown in the report, says why."""
    import json

    import yaml
    from typer.testing import CliRunner

    from polymodal.cli import app

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config("mahalanobis", epochs=1)), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(path), "--train", str(data / "train.csv"), "--valid",
                                      str(data / "valid.csv"), "--test", str(data / "test.csv"), "--out",
                                      str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert " ".join(NO_ANOMALIES.split()) in " ".join(result.output.replace("│", " ").split())
    stored = json.loads((tmp_path / "run" / "metrics.json").read_text(encoding="utf-8"))
    valid, test = stored["valid"], stored["test"]
    assert valid["note"] == NO_ANOMALIES and valid["anomalies"] == 0 and valid["normals"] == 24
    assert valid["auroc"] is None and valid["auprc"] is None and valid["fpr@95tpr"] is None
    assert valid["flag_tpr"] is None and isinstance(valid["flag_fpr"], float)
    assert "note" not in test and isinstance(test["auroc"], float)  # both classes: nothing undefined
    assert NO_ANOMALIES in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")

    det = AnomalyDetector.load(tmp_path / "run")
    pd.read_csv(data / "test.csv").query("label == 'fault'").to_csv(data / "faults.csv", index=False)
    assert det.evaluate(data / "faults.csv")["note"] == ("the evaluated rows hold no normal rows: AUROC, AUPRC and FPR@95TPR "
                                                 "need both classes, flag_fpr needs normal rows")


def test_labelled_anomalies_in_training_are_dropped_unless_asked_for(data, tmp_path):
    mixed = pd.concat([pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv").query("label == 'fault'")])
    mixed.to_csv(data / "mixed.csv", index=False)
    det = AnomalyDetector.from_config(config("autoencoder", epochs=1)).fit(data / "mixed.csv", data / "valid.csv")
    assert det.info["train_anomalies_dropped"] == 24 and det.info["train_rows"] == 96
    sad = AnomalyDetector.from_config(config("deep_svdd", epochs=2, use_labelled_anomalies=True)).fit(
        data / "mixed.csv", data / "valid.csv")
    assert sad.info["train_anomalies"] == 24 and sad.info["train_rows"] == 120
    best = sad.history.iloc[sad.info["best_epoch"] - 1]  # the report's curves count epochs across the phases
    assert best["phase"] == "svdd" and list(sad.history["phase"]) == ["pretrain", "svdd"]


def test_training_on_anomalies_only_is_refused_naming_the_labels_and_the_one_meant(data):
    with pytest.raises(ManifestError, match="labelled anomalous") as info:
        AnomalyDetector.from_config(config("autoencoder", epochs=1, normal=["Normal", "nothing"])).fit(
            data / "train.csv", data / "valid.csv")
    assert ("anomaly.normal ['Normal', 'nothing'] matches no label of target column 'label' of train.csv (its "
            "labels: ['normal']), so no row is normal; 'Normal' (did you mean 'normal'?)") in info.value.problems[0]


@pytest.mark.parametrize("use_labelled", [False, True])
def test_validation_without_a_normal_row_is_refused_naming_the_file_and_its_labels(data, use_labelled):
    """Before preprocessing, not as 'the validation data holds no row' from the trainer: the flag
    threshold is chosen on the validation normal rows, labelled anomalies used or not."""
    faults = pd.read_csv(data / "test.csv").query("label != 'normal'")
    faults.to_csv(data / "valid_faults.csv", index=False)
    with pytest.raises(ManifestError, match="no normal row") as info:
        AnomalyDetector.from_config(config("autoencoder", epochs=1, use_labelled_anomalies=use_labelled)).fit(
            data / "train.csv", data / "valid_faults.csv")
    assert info.value.problems == [
        "valid_faults.csv has no normal row: no 'label' value is in anomaly.normal ['normal', 0] (it holds ['fault', "
        "'mismatch']); the detector validates and sets its flag threshold on normal rows: give validation rows that "
        "hold normal ones (labelled anomalies beside them are scored for the validation AUROC), or valid=None "
        "to hold out train.val_fraction of the training rows"]
    assert "valid_faults.csv" in str(info.value).splitlines()[0]


def test_without_a_target_every_training_row_is_normal_and_evaluate_takes_the_labels_column(data, tmp_path):
    cfg = config("autoencoder", epochs=1)
    del cfg["target"]
    det = AnomalyDetector.from_config(cfg).fit(data / "train.csv", data / "valid.csv", out=tmp_path / "run")
    assert len(det.predict(data / "test.csv")) == 72
    assert (tmp_path / "run" / "plots" / "anomaly_scores.png").is_file()  # every validation row as normal
    with pytest.raises(SchemaMismatchError, match="no target column") as info:
        det.evaluate(data / "test.csv")
    assert "evaluate(data, target=COLUMN, normal=[...])" in str(info.value)
    assert "--target COLUMN [--normal VALUE ...]" in str(info.value)
    metrics = AnomalyDetector.load(tmp_path / "run").evaluate(data / "test.csv", target="label")
    assert (metrics["normals"], metrics["anomalies"]) == (24, 48)  # anomaly.normal's default: 'normal'
    assert set(metrics["per_label_auroc"]) == {"fault", "mismatch"}
    assert det.evaluate(data / "test.csv", target="label", normal=["normal", "fault"])["anomalies"] == 24
    with pytest.raises(ManifestError, match=r"target column 'lable' is not in test.csv \(did you mean 'label'\?\)"):
        det.evaluate(data / "test.csv", target="lable")
    with pytest.warns(UserWarning, match="normal value 'Normal' is no label of target column 'label' of test.csv"):
        misspelt = det.evaluate(data / "test.csv", target="label", normal=["Normal"])
    assert misspelt["normals"] == 0


def test_a_training_manifest_without_the_target_column_says_an_anomaly_detector_needs_none(data, tmp_path):
    pd.read_csv(data / "train.csv").drop(columns="label").to_csv(data / "train_nolabel.csv", index=False)
    with pytest.raises(ManifestError) as info:
        AnomalyDetector.from_config(config("autoencoder", epochs=1)).fit(data / "train_nolabel.csv",
                                                                         data / "valid.csv")
    assert info.value.problems == ["target column 'label' is not in train_nolabel.csv (columns: ['a', 'b']); an "
                                   "anomaly detector trained on normal rows alone needs no target: set target: null "
                                   "(overrides={'target': None})"]


def test_a_test_manifest_without_a_target_column_is_refused_before_training(data, tmp_path):
    cfg = config("autoencoder", epochs=1)
    del cfg["target"]
    with pytest.raises(SchemaMismatchError, match="no target column; set target"):
        AnomalyDetector.from_config(cfg).fit(data / "train.csv", data / "valid.csv", test=data / "test.csv",
                                             out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


class StopInSecondEpoch(L.Callback):
    """Ctrl-C in the second epoch of the phase it is given to (the first is checkpointed by then)."""

    def on_train_batch_start(self, trainer, *_):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


@pytest.mark.parametrize("scorer", ["autoencoder", "deep_svdd"])
def test_an_interrupted_anomaly_run_resumes_where_it_stopped(data, tmp_path, scorer, capsys):
    """Deep SVDD trains in two phases and checkpoints its last: the run resumes there (and says
    so), its first phase's history kept in the checkpoint, and scores as a whole run does."""
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        AnomalyDetector.from_config(config(scorer, epochs=4)).fit(data / "train.csv", data / "valid.csv", out=run,
                                                                  callbacks=[StopInSecondEpoch()])
    from polymodal.training.checkpoints import checkpoint_state

    state = checkpoint_state(run / "checkpoints" / "last.ckpt")  # read without unpickling objects
    assert (state["epoch"], state["earlier_epochs"]) == (0, 2 if scorer == "deep_svdd" else 0)
    with pytest.raises(RunFolderError, match="holds an interrupted run.*resume=True to continue it"):
        AnomalyDetector.from_config(config(scorer, epochs=4)).fit(data / "train.csv", data / "valid.csv", out=run)
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    shown = config(scorer, epochs=4)
    shown["train"]["progress"] = True
    capsys.readouterr()
    resumed = AnomalyDetector.from_config(shown).fit(data / "train.csv", data / "valid.csv", out=run, resume=True)
    said = (f"resuming {run} at epoch 2 of 2 of its last training phase" if scorer == "deep_svdd"
            else f"resuming {run} at epoch 2 of 4")
    assert capsys.readouterr().err.splitlines().count(said) == 1
    if scorer == "deep_svdd":  # the centre fixed when its phase began comes from the checkpoint, not recomputed
        center = next(v for k, v in saved.items() if k.endswith("scorer.center"))
        assert torch.equal(resumed.model.scorer.center, center) and center.abs().sum() > 0
    phases = ["pretrain", "pretrain", "svdd", "svdd"] if scorer == "deep_svdd" else ["train"] * 4
    assert list(resumed.history["phase"]) == phases
    assert list(pd.read_csv(run / "history.csv")["phase"]) == phases
    # the whole fit's training time, the sessions before the resume included (each epoch's within it)
    assert resumed.info["train_seconds"] >= resumed.history["seconds"].sum() - 1e-6
    assert np.isfinite(resumed.predict_frame(data / "test.csv")["score"]).all()
    assert np.isfinite(float(resumed.model.scorer.threshold))
    with pytest.raises(RunFolderError, match="valid"):  # the data it was trained with, as a classifier's resume
        AnomalyDetector.from_config(config(scorer, epochs=6)).fit(data / "train.csv", data / "test.csv", out=run,
                                                                  resume=True)


@pytest.mark.parametrize(("change", "message"), [
    ({"task": "classification", "anomaly": {"scorer": "autoencoder"}}, "used by task 'anomaly' only"),
    ({"fusion": {"name": "late"}}, "fusion 'late'"),
    ({"anomaly": {"target_fpr": 1.5}}, "anomaly.target_fpr"),
    ({"anomaly": {"scorer": "isolation_forest"}}, "anomaly.scorer"),
])
def test_config_errors_name_the_problem(change, message):
    cfg = {**config("autoencoder"), **change}
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)


def test_consistency_needs_two_modalities():
    cfg = config("consistency")
    del cfg["modalities"]["b"]
    with pytest.raises(ConfigError, match="at least 2"):
        load_config(cfg)


def test_cli_trains_evaluates_and_predicts_an_anomaly_run(data, tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from polymodal.cli import app

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config("mahalanobis", epochs=1)))
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(tmp_path / "cfg.yaml"), "--train", str(data / "train.csv"),
                                 "--valid", str(data / "valid.csv"), "--out", str(run)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(data / "test.csv"), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert set(metrics["per_label_auroc"]) == {"fault", "mismatch"} and metrics["rows"] == 72
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(data / "test.csv")])
    assert "per_label_auroc.fault" in result.output and "per_label_auroc.mismatch" in result.output
    result = runner.invoke(app, ["predict", str(run), "--data", str(data / "test.csv"), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(tmp_path / "p.csv").columns) == ["row", "score", "flag", "absent"]
    result = runner.invoke(app, ["predict", str(run), "--data", str(data / "test.csv"), "--out", str(tmp_path / "k.csv"),
                                 "--keep", "label"])
    assert result.exit_code == 0, result.output
    kept = pd.read_csv(tmp_path / "k.csv")
    assert list(kept.columns) == ["row", "label", "score", "flag", "absent"]
    assert kept["label"].tolist() == pd.read_csv(data / "test.csv")["label"].tolist()
    pd.read_csv(data / "test.csv").assign(score=1.0).to_csv(data / "scored.csv", index=False)
    result = runner.invoke(app, ["predict", str(run), "--data", str(data / "scored.csv"), "--out", str(tmp_path / "f.csv"),
                                 "--keep", "score"])  # an output column's name: refused, nothing written
    assert result.exit_code == 2 and "--keep score: the predictions have a column of that name" in result.stderr
    assert not (tmp_path / "f.csv").exists()
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(data / "test.csv"), "--target", "label",
                                 "--normal", "normal", "--normal", "fault", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["normals"] == 48 and set(json.loads(result.output)["per_label_auroc"]) == {
        "mismatch"}
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(data / "test.csv"), "--missing", "--target",
                                 "label"])
    assert result.exit_code == 2 and "--target applies only to the plain evaluation" in result.stderr
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(data / "test.csv"), "--missing"])
    assert result.exit_code == 0, result.output
    subsets = pd.read_csv(run / "evaluation" / "missing.csv").set_index("modalities")
    assert list(subsets.index) == ["a+b", "a", "b"] and subsets["auroc"].between(0, 1).all()
    result = runner.invoke(app, ["explain", str(run), "--data", str(data / "test.csv"), "--samples", "1"])
    assert result.exit_code == 0, result.output
    assert "mean Shapley value by label" in result.output
    assert "explained: the anomaly score against the normal rows' mean score" in result.output
    groups = pd.read_csv(run / "explain" / "by_group.csv")
    assert sorted(groups["label"]) == ["fault", "mismatch", "normal"] and groups["rows"].tolist() == [24, 24, 24]
    assert "auroc_drop" in pd.read_csv(run / "explain" / "importance.csv").columns
    result = runner.invoke(app, ["explain", str(run), "--data", str(data / "test.csv"), "--rows", "1", "--samples", "0",
                                 "--out", str(tmp_path / "one")])
    assert result.exit_code == 0, result.output
    assert "auroc: undefined on these rows" in " ".join(result.output.split())  # one row: no AUROC, said
    # what an anomaly run cannot do is refused with the reason, not a traceback
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(data / "test.csv"), "--robustness"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "--robustness" in result.stderr and "not available for task 'anomaly'" in result.stderr
    assert "a corrupted input is what an anomaly detector should flag" in result.stderr


def test_a_signal_run_exports_and_its_exported_scores_match(data, tmp_path):
    """Two raw-signal modalities reconstructed to recon_size 64 from 64 samples each; the export
    checks itself on the validation manifest the run recorded."""
    from polymodal.deploy.export import export_run

    detector = AnomalyDetector.from_config(config("autoencoder", epochs=1)).fit(data / "train.csv", data / "valid.csv",
                                                                                out=tmp_path / "run")
    report = export_run(detector, tmp_path / "run" / "export")  # on the run's recorded validation manifest
    assert report.recorded[0] == "valid" and report.parity["runtime_rows"] == 24
    assert report.parity["graph_max_abs_diff"] <= 1e-4 and report.parity["runtime_max_abs_diff"] <= 1e-4


def test_the_rows_without_a_score_are_counted_out_of_every_row_predicted(data):
    """Under data.on_error: missing, rows with nothing readable are kept (NaN, flagged): the warning
    counts them, by reason, out of every row returned (it once said "18 of 54")."""
    det = AnomalyDetector.from_config(config("consistency", epochs=1)).fit(data / "train.csv", data / "valid.csv")
    det.config.data.on_error = "missing"
    rows = pd.read_csv(data / "test.csv")
    rows.loc[rows.index % 4 == 0, "b"] = None  # one modality: not scored
    rows.loc[rows.index % 4 == 1, ["a", "b"]] = "gone.npy"  # nothing readable
    rows.to_csv(data / "test_emptied.csv", index=False)
    with pytest.warns(UserWarning, match=r"^36 of 72 rows could not be scored \(18 rows: fewer than two modalities "
                                         r"present: the consistency scorer compares modalities; 18 rows: no modality "
                                         r"could be read\): their score is NaN"):
        frame = det.predict_frame(data / "test_emptied.csv")
    assert len(frame) == 72 and int(frame["score"].isna().sum()) == 36


@pytest.mark.parametrize(("epochs", "phases"), [(1, [1, 1]), (2, [1, 1]), (3, [2, 1]), (5, [3, 2]), (6, [3, 3])])
def test_deep_svdd_shares_train_epochs_between_its_phases(epochs, phases):
    """The phases sum to train.epochs (3 epochs once ran 2 + 2, 5 ran 2 + 2: rounding half to even),
    one each where there are fewer epochs than phases (said)."""
    from polymodal.anomaly.training import phase_epochs, split_epochs

    assert split_epochs(epochs, [0.5, 0.5]) == phases
    assert split_epochs(10, [0.25, 0.75]) == [3, 7] and split_epochs(4, [0.9, 0.1]) == [3, 1]
    det = AnomalyDetector.from_config(config("deep_svdd", epochs=epochs))
    if epochs < 2:
        with pytest.warns(UserWarning, match=r"train.epochs 1 is fewer than the 2 training phases of anomaly.scorer "
                                             r"'deep_svdd' \(pretrain, then svdd\): each runs one epoch, 2 in all"):
            assert phase_epochs(det) == [("pretrain", 1), ("svdd", 1)]
    else:
        assert phase_epochs(det) == list(zip(["pretrain", "svdd"], phases))


def test_deep_svdd_names_each_phase_before_its_epoch_lines(data, capsys):
    cfg = config("deep_svdd", epochs=3)
    cfg["train"]["progress"] = True
    det = AnomalyDetector.from_config(cfg).fit(data / "train.csv", data / "valid.csv")
    assert list(det.history["phase"]) == ["pretrain", "pretrain", "svdd"]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("deep_svdd", "epoch"))]
    assert [line.split("  ")[0] for line in lines] == [
        "deep_svdd phase 1 of 2, pretrain: 2 epochs", "epoch 1/2", "epoch 2/2", "deep_svdd phase 2 of 2, svdd: 1 epoch",
        "epoch 1/1"]


def test_the_autoencoder_leaves_a_row_holding_only_texts_unscored(data):
    """Texts are not reconstructed: a row holding only its text scored 0.0, below every threshold,
    never flagged whatever it said. It has no score (NaN, flagged, with the reason), its subset no
    threshold; a config of texts only is refused by key."""
    words = ["pump ok", "motor fine", "steady hum"]
    for split in ("train", "valid", "test"):
        frame = pd.read_csv(data / f"{split}.csv")
        frame["note"] = [words[i % 3] for i in range(len(frame))]
        frame.to_csv(data / f"{split}_noted.csv", index=False)
    cfg = config("autoencoder", epochs=2)
    cfg["modalities"] = {"a": cfg["modalities"]["a"],
                         "note": {"kind": "text", "column": "note", "encoder": {"name": "embedding_bag", "dim": 8}}}
    det = AnomalyDetector.from_config(cfg).fit(data / "train_noted.csv", data / "valid_noted.csv")
    assert set(det.info["subset_thresholds"]) == {"a+note", "a"}
    rows = pd.read_csv(data / "test_noted.csv").iloc[:3].assign(a=lambda f: f["a"].where(f.index == 0))
    with pytest.warns(UserWarning, match=r"2 of 3 rows could not be scored \(no reconstructed modality present"):
        frame = det.predict_frame(rows.assign(a=lambda f: f["a"].map(lambda p: p if pd.isna(p) else str(data / p))))
    assert np.isfinite(frame["score"][0]) and np.isnan(frame["score"][1:]).all() and frame["flag"][1:].all()
    assert frame["note"][1:].str.startswith("not scored: no reconstructed modality present").all()
    cfg["modalities"].pop("a")
    with pytest.raises(ConfigError, match=r"anomaly.scorer: 'autoencoder' learns by reconstructing the inputs, and "
                                          r"texts are not reconstructed .*only texts \['note'\]"):
        AnomalyDetector.from_config(cfg)


def test_a_short_clips_padding_frames_leave_its_reconstruction_target():
    """stride sampling pads a short clip with frames the encoder masks (so cannot tell the decoder
    of): its real frames are spread over the slots, so a clip of one frame held for 4 or 8 frames
    reads alike, and the order of frames is kept."""
    import torch

    from polymodal.anomaly.model import modality_target

    frame = torch.randn(3, 4, 4)
    long, short = torch.stack([frame] * 8), torch.cat([torch.stack([frame] * 4), torch.full((4, 3, 4, 4), -1.7)])
    mask = torch.tensor([[True] * 8, [True] * 4 + [False] * 4])
    targets = modality_target({"x": torch.stack([long, short]), "mask": mask}, 16)
    torch.testing.assert_close(targets[0], targets[1])
    ramp = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 4, 4)  # frames 0, 1, 2, 3 then padding
    clip = torch.cat([ramp, torch.zeros(4, 3, 4, 4)]).unsqueeze(0)
    spread = modality_target({"x": clip, "mask": torch.tensor([[True] * 4 + [False] * 4])}, 8)
    torch.testing.assert_close(spread[0], torch.tensor([0.0, 0, 1, 1, 2, 2, 3, 3]))


def test_consistency_leaves_a_row_with_one_modality_unscored_and_out_of_the_metrics(data):
    """A row with one modality has nothing to compare: NaN and a note, never a neutral 0 that can
    never be flagged; evaluate leaves such rows out of every metric and counts them."""
    from sklearn.metrics import roc_auc_score

    det = AnomalyDetector.from_config(config("consistency", epochs=1)).fit(data / "train.csv", data / "valid.csv")
    rows = pd.read_csv(data / "test.csv")
    rows.loc[rows.index % 4 == 0, "b"] = None  # sensor b missing on a quarter of the rows
    rows.to_csv(data / "test_b_missing.csv", index=False)
    with pytest.warns(UserWarning, match=r"18 of 72 rows could not be scored \(fewer than two modalities present"):
        frame = det.predict_frame(data / "test_b_missing.csv")
    alone = (frame.index % 4 == 0)
    assert np.isnan(frame["score"][alone]).all() and np.isfinite(frame["score"][~alone]).all()
    assert frame["flag"][alone].all()  # a row that cannot be checked is raised
    assert (frame["absent"][alone] == "b").all() and (frame["absent"][~alone] == "").all()
    assert frame["note"][alone].str.startswith("not scored: fewer than two modalities present").all()
    assert frame["note"][~alone].isna().all()
    metrics = det.evaluate(data / "test_b_missing.csv")
    assert metrics["unscored"] == 18 and metrics["rows"] == 72 and metrics["normals"] + metrics["anomalies"] == 54
    assert "18 labelled row(s) have no score (fewer than two modalities present" in metrics["note"]
    labels = (rows["label"] != "normal").to_numpy()
    assert metrics["auroc"] == pytest.approx(roc_auc_score(labels[~alone], frame["score"][~alone]))
    assert all(value is not None for value in metrics["per_label_auroc"].values())
    with warnings.catch_warnings(record=True) as caught:  # every row scored: no warning, the note column empty
        warnings.simplefilter("always")
        complete = det.predict_frame(data / "test.csv")
    assert not [w for w in caught if "could not be scored" in str(w.message)]
    assert complete["note"].isna().all() and np.isfinite(complete["score"]).all()


def tabular_config(**train: object) -> dict:
    """One tabular modality (no files to write), no target: every row is normal."""
    return {"task": "anomaly", "modalities": {"tab": {"kind": "tabular", "columns": ["x1", "x2"],
                                                      "encoder": {"dim": 8, "hidden": [16]}}},
            "fusion": {"name": "concat"}, "anomaly": {"scorer": "autoencoder", "latent_dim": 4},
            "train": {"epochs": 1, "batch_size": 8, "progress": False, "early_stopping": None, **train}}


def tabular_rows(n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})


@pytest.mark.parametrize(("workers", "expected"), [(2, 2), (None, 0)])  # None: none without augmentation
def test_the_detector_loader_honours_the_worker_settings(workers, expected):

    det = AnomalyDetector.from_config(tabular_config(num_workers=workers))
    pipeline = det._new_pipeline()
    train_m, valid_m, _ = det._read_fit_data(pipeline, tabular_rows(), tabular_rows(), None, require_target=False)
    table, y, _, _ = det._fit_pipeline(pipeline, train_m, valid_m)
    loader = det._loader(table, y, train=True)
    assert loader.num_workers == expected and loader.persistent_workers == (expected > 0)
    assert loader.pin_memory == (det.device.type == "cuda")


def test_only_rank_zero_writes_the_run(tmp_path, monkeypatch):
    """Other DDP ranks return after training: no threshold, evaluation or run folder from them."""
    from polymodal.training import trainer

    fit_module = trainer.fit_module
    monkeypatch.setattr(trainer, "fit_module", lambda *a, **k: dataclasses.replace(fit_module(*a, **k), rank=1))
    det = AnomalyDetector.from_config(tabular_config()).fit(tabular_rows(), tabular_rows(), out=tmp_path / "run")
    assert det.info == {"rank": 1} and det.metrics == {}
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_the_configured_schedule_drives_an_anomaly_fit(data, monkeypatch):
    """train.scheduler: onecycle was once dropped by the anomaly module (no schedule, no word)."""
    made = []

    class Recorded(torch.optim.lr_scheduler.OneCycleLR):
        def __init__(self, optimizer, **options):
            made.append(options["total_steps"])
            super().__init__(optimizer, **options)

    monkeypatch.setattr(torch.optim.lr_scheduler, "OneCycleLR", Recorded)
    cfg = config("autoencoder", epochs=2)
    cfg["train"]["scheduler"] = "onecycle"
    AnomalyDetector.from_config(cfg).fit(data / "train.csv", data / "valid.csv")
    assert made == [2 * 96 // 16]  # one schedule over every step of the fit


def test_a_saved_detector_is_rebuilt_for_its_weights_not_for_training(data, tmp_path):
    """Loading restores the saved weights: no weight file is read, no training-time warning (a
    frozen random encoder) is repeated."""
    cfg = config("autoencoder", epochs=1)
    cfg["modalities"]["a"]["encoder"]["freeze"] = "all"
    with pytest.warns(UserWarning, match=r"modalities\.a\.encoder\.freeze: 'all' freezes"):
        AnomalyDetector.from_config(cfg).fit(data / "train.csv", data / "valid.csv", out=tmp_path / "run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AnomalyDetector.load(tmp_path / "run")
    assert not [w for w in caught if "freezes" in str(w.message)]


def corrupt_rows(data, name: str) -> pd.DataFrame:
    """The first 12 test rows, written to ``name``: row 3's only files corrupt, row 7 with no cell
    filled in, row 9's file ``b`` corrupt (``a`` still read)."""
    rows = pd.read_csv(data / "test.csv").head(12)
    for key in ("a", "b"):
        (data / f"corrupt_{key}.npy").write_bytes(b"not a numpy file")
    rows.loc[3, ["a", "b"]] = ["corrupt_a.npy", "corrupt_b.npy"]
    rows.loc[7, ["a", "b"]] = None
    rows.loc[9, "b"] = "corrupt_b.npy"
    rows.to_csv(data / name, index=False)
    return rows


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory) -> tuple[AnomalyDetector, object]:
    """A mahalanobis detector saved to a run folder (one epoch: its scores, not their quality, matter)."""
    run = tmp_path_factory.mktemp("fitted") / "run"
    det = AnomalyDetector.from_config(config("mahalanobis", epochs=1)).fit(data / "train.csv", data / "valid.csv",
                                                                           test=data / "test.csv", out=run)
    return det, run


def test_a_row_with_no_readable_modality_is_kept_flagged_under_on_error_missing(data, fitted):
    """A row that cannot be checked is raised: one whose every file is unreadable (or which names
    none) keeps its place, NaN and flagged, instead of vanishing from the output."""
    det = AnomalyDetector.load(fitted[1])
    corrupt_rows(data, "corrupt.csv")
    det.config.data.on_error = "missing"
    with pytest.warns(UserWarning, match=r"a row left with no modality present is kept and flagged, with a NaN score"):
        frame = det.predict_frame(data / "corrupt.csv")
    assert list(frame.index) == list(range(12)) and list(frame.columns) == ["score", "flag", "absent", "note"]
    for row in (3, 7):
        assert np.isnan(frame.loc[row, "score"]) and frame.loc[row, "flag"]
        assert frame.loc[row, "absent"] == "a, b" and frame.loc[row, "note"] == "not scored: no modality could be read"
    assert frame.loc[9, "absent"] == "b" and np.isfinite(frame.loc[9, "score"]) and frame.loc[9, "note"] is None
    others = frame.drop(index=[3, 7])
    assert np.isfinite(others["score"]).all() and others["note"].isna().all()
    assert sorted(det.eval_skipped["row"]) == [3, 3, 7, 9]
    complete = det.predict_frame(data / "valid.csv")  # nothing skipped: the note column all the same
    assert list(complete.columns) == ["score", "flag", "absent", "note"] and complete["note"].isna().all()
    det.config.data.on_error = "skip"  # as asked for: the rows with an unreadable file are left out
    with pytest.warns(UserWarning, match="rows with one are left out"):
        skipped = det.predict_frame(data / "corrupt.csv")
    assert list(skipped.index) == [0, 1, 2, 4, 5, 6, 8, 10, 11] and list(skipped.columns) == ["score", "flag", "absent"]


def test_batch_prediction_under_on_error_missing_writes_every_manifest_row(data, fitted):
    from typer.testing import CliRunner

    from polymodal.cli import app

    rows = corrupt_rows(data, "corrupt_cli.csv")
    out = data / "p.csv"
    result = CliRunner().invoke(app, ["predict", str(fitted[1]), "--data", str(data / "corrupt_cli.csv"),
                                      "--out", str(out), "--on-error", "missing", "--chunk-rows", "4"])
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    assert len(written) == len(rows) and written["row"].tolist() == list(range(12))
    assert written.loc[3, "note"] == written.loc[7, "note"] == "not scored: no modality could be read"
    assert written.loc[[3, 7], "flag"].all() and written.loc[[3, 7], "score"].isna().all()
    assert "a row left with no modality present is kept and flagged, with a NaN score" in result.stderr
    assert sorted(pd.read_csv(data / "p.skipped.csv")["row"]) == [3, 3, 7, 9]
    said = " ".join(result.stdout.split())
    assert said.startswith("12 rows written to") and "(2 without a score, flagged: their note says why)" in said


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_chunk_of_rows_without_a_score_joins_with_the_types_of_one_pass(data, fitted, suffix):
    """Under on_error: missing, a batch chunk whose every row has no modality (its `absent` and
    `note` text pandas holds as objects, the others' as strings) joined with the others: the
    Parquet join refused the parts. The output is now what one chunk writes, types included."""
    from polymodal.deploy.batch import predict_to_file

    det = AnomalyDetector.load(fitted[1])
    det.config.data.on_error = "missing"
    rows = pd.read_csv(data / "test.csv").head(12)
    rows[["a", "b"]] = rows[["a", "b"]].map(lambda name: str(data / name))  # a DataFrame's paths: from the cwd
    rows.loc[4:7, ["a", "b"]] = None  # chunk 1 of 4 rows
    tables = []
    for chunk_rows in (4, 12):
        out = data / f"emptied{chunk_rows}{suffix}"
        with pytest.warns(UserWarning, match="kept and flagged, with a NaN score"):
            report = predict_to_file(det, rows, out, chunk_rows=chunk_rows, progress=False, overwrite=True)
        assert report.rows == 12 and report.unpredicted == 4
        tables.append(pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out))
    got, want = tables
    assert got["score"].isna().tolist() == [row in (4, 5, 6, 7) for row in range(12)] and got["flag"].iloc[4:8].all()
    assert (got.loc[4:7, "note"] == "not scored: no modality could be read").all()
    pd.testing.assert_frame_equal(got, want, atol=1e-5)  # dtypes included


@pytest.mark.parametrize(("scorer", "others"), [("mahalanobis", "autoencoder, deep_svdd"),
                                                ("consistency", "autoencoder, deep_svdd, mahalanobis")])
def test_a_scorer_that_ranks_the_validation_anomalies_below_the_normal_rows_is_warned_about(data, scorer, others):
    """Validation whose labelled anomalies look like the training rows and whose normal-labelled rows
    are faults: the scorer ranks the anomalies lowest (AUROC < 0.5), and the fit says so, naming the
    scorer and the others to try; a validation it ranks right gives no such warning."""
    faults = pd.read_csv(data / "test.csv").query("label == 'fault'").assign(label="normal")
    quiet = pd.read_csv(data / "valid.csv").assign(label="quiet")  # normal signals, labelled anomalous
    pd.concat([faults, quiet]).to_csv(data / "valid_inverted.csv", index=False)
    with pytest.warns(UserWarning, match=rf"validation AUROC 0\.\d+ is below 0.5: the anomaly scorer '{scorer}' "
                                         r"ranks the validation's labelled anomalies below its normal rows.*Try "
                                         rf"another anomaly.scorer \({others}\)") as caught:
        det = AnomalyDetector.from_config(config(scorer, epochs=2)).fit(data / "train.csv",
                                                                        data / "valid_inverted.csv")
    assert det.metrics["valid"]["auroc"] < 0.5
    if scorer == "consistency":  # what it measures, said
        assert any("modalities that do not belong together" in str(w.message) for w in caught)
    if scorer != "mahalanobis":
        return
    pd.concat([pd.read_csv(data / "valid.csv"), pd.read_csv(data / "test.csv").query("label == 'fault'")]).to_csv(
        data / "valid_faults.csv", index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        right = AnomalyDetector.from_config(config("mahalanobis", epochs=2)).fit(data / "train.csv",
                                                                                 data / "valid_faults.csv")
    assert right.metrics["valid"]["auroc"] > 0.5
    assert not [w for w in caught if "below 0.5" in str(w.message)]


def test_max_labelled_anomalies_keeps_a_seeded_sample_of_each_label(data):
    mixed = pd.concat([pd.read_csv(data / "train.csv"), pd.read_csv(data / "test.csv").query("label != 'normal'")])
    mixed.to_csv(data / "mixed_labels.csv", index=False)  # 96 normal, 24 fault, 24 mismatch
    cfg = config("autoencoder", epochs=1, use_labelled_anomalies=True, max_labelled_anomalies=10)
    det = AnomalyDetector.from_config(cfg).fit(data / "mixed_labels.csv", data / "valid.csv")
    assert det.info["train_anomalies"] == 10 and det.info["train_anomalies_dropped"] == 38
    assert det.info["train_rows"] == 106
    everything = AnomalyDetector.from_config(config("autoencoder", epochs=1, use_labelled_anomalies=True)).fit(
        data / "mixed_labels.csv", data / "valid.csv")
    assert everything.info["train_anomalies"] == 48 and everything.info["train_anomalies_dropped"] == 0


def test_the_anomaly_sample_is_stratified_by_label_and_seeded():
    from polymodal.anomaly.targets import stratified_sample

    labels = ["fault"] * 30 + ["mismatch"] * 10 + ["drift"] * 2
    chosen = stratified_sample(labels, 8, seed=3)
    assert [labels[i] for i in chosen].count("fault") == 6 and [labels[i] for i in chosen].count("mismatch") == 2
    assert len(chosen) == 8 and list(chosen) == sorted(set(chosen.tolist()))
    np.testing.assert_array_equal(chosen, stratified_sample(labels, 8, seed=3))
    assert not np.array_equal(chosen, stratified_sample(labels, 8, seed=4))
    assert list(stratified_sample(labels, 50, seed=0)) == list(range(42)) and len(stratified_sample(labels, 0, 0)) == 0


def test_kept_anomalies_outnumbering_the_normal_rows_are_warned_about(data):
    few = pd.concat([pd.read_csv(data / "train.csv").head(10), pd.read_csv(data / "test.csv").query("label != 'normal'")])
    few.to_csv(data / "few_normals.csv", index=False)  # 10 normal, 48 anomalies
    with pytest.warns(UserWarning, match=r"48 labelled anomalies are kept in training, more than its 10 normal rows.*"
                                         r"set anomaly.max_labelled_anomalies"):
        AnomalyDetector.from_config(config("autoencoder", epochs=1, use_labelled_anomalies=True)).fit(
            data / "few_normals.csv", data / "valid.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        det = AnomalyDetector.from_config(config("autoencoder", epochs=1, use_labelled_anomalies=True,
                                                 max_labelled_anomalies=6)).fit(data / "few_normals.csv",
                                                                                data / "valid.csv")
    assert det.info["train_anomalies"] == 6 and not [w for w in caught if "labelled anomalies are kept" in str(w.message)]


@pytest.mark.parametrize(("anomaly", "message"), [
    ({"max_labelled_anomalies": 5}, "anomaly.max_labelled_anomalies: 5 limits .* but use_labelled_anomalies is false"),
    ({"use_labelled_anomalies": True, "max_labelled_anomalies": -1}, "anomaly.max_labelled_anomalies"),
])
def test_max_labelled_anomalies_is_checked(anomaly, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config("autoencoder", **anomaly))


@pytest.mark.parametrize(("method", "args", "capability"), [
    ("predict_proba", ("test.csv",), "class probabilities"),
    ("embed", ("test.csv", "a"), "a shared embedding space"),
    ("evaluate_retrieval", ("test.csv",), "a shared embedding space"),
    ("zero_shot", ("test.csv", "a", ["x"]), "a shared embedding space"),
])
def test_a_classifiers_methods_on_a_detector_say_to_use_predict_frame(data, fitted, method, args, capability):
    det = fitted[0]
    with pytest.raises(SchemaMismatchError, match=rf"^{method} is not available for task 'anomaly': .*use "
                                                  r"predict_frame \(score, flag"):
        getattr(det, method)(data / args[0], *args[1:])
    assert capability in det.unsupported and det.predict(data / "valid.csv").dtype == bool


@pytest.mark.parametrize("method", ["predict_frame", "predict", "evaluate", "explain"])
def test_a_detector_refuses_a_support_set_and_unknown_keywords(data, fitted, method):
    """A support set (a few-shot model's classes) means nothing to a detector: refused, not ignored;
    and a misspelt keyword is a TypeError, not a call that quietly does something else."""
    det = fitted[0]
    with pytest.raises(SchemaMismatchError, match=r"a support set needs a model trained with transfer.*'anomaly'"):
        getattr(det, method)(data / "valid.csv", support=data / "train.csv")
    with pytest.raises(TypeError, match="unexpected keyword argument 'supprot'"):
        getattr(det, method)(data / "valid.csv", supprot=data / "train.csv")


@pytest.mark.parametrize("command", [["embed", "--modality", "a", "--out", "e.parquet"],
                                     ["index", "build", "--modality", "a", "--out", "index"],
                                     ["zero-shot", "--modality", "a", "--classes", "x,y", "--out", "z.csv"],
                                     ["evaluate", "--retrieval"]])
def test_the_shared_space_commands_refuse_an_anomaly_run_with_a_message(data, fitted, tmp_path, command):
    from typer.testing import CliRunner

    from polymodal.cli import app

    words = [*command[:2], str(fitted[1])] if command[0] == "index" else [command[0], str(fitted[1])]
    rest = command[2:] if command[0] == "index" else command[1:]
    rest = [str(tmp_path / w) if w in ("e.parquet", "index", "z.csv") else w for w in rest]
    result = CliRunner().invoke(app, [*words, "--data", str(data / "test.csv"), *rest])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    message = " ".join(result.stderr.split())
    assert "is not available for task 'anomaly'" in message and "use predict_frame (score, flag" in message, message
    assert "train it with align" not in message  # which task 'anomaly' does not combine with
