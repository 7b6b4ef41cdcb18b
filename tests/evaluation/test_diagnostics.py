"""The automatic diagnostics of every fit and the report sections drawn from them, on a model with
one modality of every kind (so corruptions also run through every real preprocessor)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from polymodal import MultimodalPredictor
from polymodal.config import ReportConfig
from polymodal.evaluation.corruptions import CORRUPTIONS
from polymodal.evaluation.data import load_eval_data
from polymodal.evaluation.diagnostics import diagnose
from polymodal.evaluation.report import write_report
from polymodal.evaluation.robustness import REPORT_CORRUPTIONS, corrupt_table

from .helpers import all_kinds_config, all_kinds_dataset

SECTIONS = ("Modality subsets", "Modality importance", "Robustness", "Calibration", "Complexity")


def top_class_ece(proba: np.ndarray, classes: np.ndarray, truth: np.ndarray, bins: int = 15) -> float:
    """ECE written out: per equal-width bin of the top-class confidence, |accuracy - confidence|,
    weighted by the bin's share of the rows."""
    confidence = proba.max(axis=1)
    correct = classes[proba.argmax(axis=1)] == truth
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(sum((which == b).mean() * abs(correct[which == b].mean() - confidence[which == b].mean())
                     for b in np.unique(which)))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    frame = all_kinds_dataset(root, n=36)
    paths = {}
    for name, part in (("train", frame.iloc[:24]), ("valid", frame.iloc[24:30]), ("test", frame.iloc[30:])):
        paths[name] = root / f"{name}.csv"
        part.to_csv(paths[name], index=False)
    config = {**all_kinds_config(), "report": {"rows": 512, "seed": 0}}
    run = tmp_path_factory.mktemp("runs") / "kinds"
    predictor = MultimodalPredictor.from_config(config).fit(paths["train"], paths["valid"], test=paths["test"], out=run)
    return predictor, paths, run


def test_fit_computes_every_diagnostic_on_the_test_rows(fitted):
    predictor, paths, _ = fitted
    diag = predictor.diagnostics
    assert diag["split"] == "test" and diag["rows"] == 6 and diag["metric"] == "accuracy"
    assert len(diag["subsets"]) == 2 ** 5 - 1
    one = next(r for r in diag["subsets"] if r["modalities"] == "audio+text")
    assert one["accuracy"] == pytest.approx(predictor.evaluate(paths["test"], modalities=["audio", "text"])["accuracy"])
    assert [r["modality"] for r in diag["importance"]] == ["audio", "image", "signal", "table", "text"]
    assert sum(r["share"] for r in diag["importance"]) == pytest.approx(1.0)
    assert len(diag["interactions"]) == 10
    curves = diag["robustness"]["curves"]
    assert {(c["modality"], c["corruption"]) for c in curves} == {
        (n, REPORT_CORRUPTIONS[m.kind]) for n, m in predictor.config.modalities.items()}
    assert len(curves) == 5 * 6 and all(c["failed"] == 0 for c in curves)
    calibration = diag["calibration"]
    assert sum(b["count"] for b in calibration["bins"]) == 6
    proba = predictor.predict_proba(paths["test"])
    truth = pd.read_csv(paths["test"])["label"].to_numpy()[proba.index]
    assert calibration["ece"] == pytest.approx(top_class_ece(proba.to_numpy(), np.asarray(proba.columns), truth))
    complexity = diag["complexity"]
    assert complexity["parameters"] == predictor.info["parameters"]
    assert complexity["latency_ms_per_sample"] > 0 and complexity["latency_ms_per_batch_64"] > 0
    assert complexity["peak_rss_mb"] > 10


def test_report_shows_the_sections_and_the_run_keeps_them(fitted, tmp_path):
    predictor, _, run = fitted
    page = (run / "report.html").read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    for plot in ("modality_importance", "robustness", "reliability"):
        assert (run / "plots" / f"{plot}.png").stat().st_size > 1000
    noise = CORRUPTIONS.get("image", "gaussian_noise")  # each swept corruption's levels, said in words
    assert (f"image: <code>gaussian_noise</code> ({noise.unit} {noise.levels[0]:g} to {noise.levels[-1]:g})"
            in page), "the robustness section does not say what its severities mean"
    stored = json.loads((run / "diagnostics.json").read_text(encoding="utf-8"))
    loaded = MultimodalPredictor.load(run)
    assert loaded.diagnostics == stored and stored["rows"] == predictor.diagnostics["rows"]
    again = write_report(loaded, tmp_path, loaded.net).read_text(encoding="utf-8")
    assert all(f"<h2>{title}</h2>" in again for title in SECTIONS)


def test_rows_zero_switches_the_diagnostics_off(fitted, tmp_path):
    predictor, paths, _ = fitted
    assert diagnose(predictor, paths["test"], "test", ReportConfig(rows=0)) == {}
    few = diagnose(predictor, paths["test"], "test", ReportConfig(rows=4, robustness=False))
    assert few["rows"] == 4 and "robustness" not in few
    predictor_copy = MultimodalPredictor.load(fitted[2])
    predictor_copy.diagnostics = {}
    page = write_report(predictor_copy, tmp_path, predictor_copy.net).read_text(encoding="utf-8")
    assert not any(f"<h2>{title}</h2>" in page for title in SECTIONS)


def test_in_a_log_the_report_says_when_each_analysis_is_done(fitted, capsys, monkeypatch):
    """Where no bar is drawn (a pipe, a CI log), the report says what it runs on how many rows, then
    when each analysis is done and how long it took."""
    from polymodal.utils import progress

    predictor, paths, _ = fitted
    monkeypatch.setattr(progress, "watched", lambda console=None: False)
    monkeypatch.setattr(predictor.config.train, "progress", True)  # what train.progress (default true) shows
    diagnose(predictor, paths["test"], "test", ReportConfig(rows=4))
    lines = capsys.readouterr().err.splitlines()
    said = [line.split(" (")[0] for line in lines if line.startswith("report:")]
    assert said == ["report: subsets, importance, robustness on 4 test rows", "report: subsets and importance done",
                    "report: robustness done"], lines


@pytest.mark.parametrize("modality", ["audio", "image", "signal", "table", "text"])
def test_every_kinds_corruptions_run_through_its_real_preprocessor(fitted, modality):
    predictor, paths, _ = fitted
    data = load_eval_data(predictor, paths["test"], require_target=True)
    kind = predictor.config.modalities[modality].kind
    clean = {k: np.asarray(v) for k, v in data.table.modalities[modality].arrays.items()}
    for name in CORRUPTIONS.names(kind):
        corruption = CORRUPTIONS.get(kind, name)
        same, failed = corrupt_table(predictor, data, modality, corruption, 0)
        assert failed == 0
        for key, value in clean.items():
            np.testing.assert_array_equal(np.asarray(same.modalities[modality].arrays[key]), value)
        worst, failed = corrupt_table(predictor, data, modality, corruption, 5, seed=1)
        assert failed == 0
        changed = any(not np.array_equal(np.asarray(worst.modalities[modality].arrays[k]), v) for k, v in clean.items())
        assert changed, f"{kind}/{name} at severity 5 left every encoded {modality} unchanged"


def test_a_diverged_models_calibration_section_says_why_it_has_no_figures(tmp_path):
    from polymodal.evaluation.calibration import calibration_summary
    from polymodal.evaluation.report_sections import diagnostic_sections

    logits = np.array([[0.0, 2.0], [np.nan, np.nan], [1.0, 0.0]])
    calibration = calibration_summary(logits, np.array([1, 0, 0]))
    assert calibration["ece"] is None and "bins" not in calibration
    section = diagnostic_sections({"rows": 3, "split": "test", "calibration": calibration}, tmp_path)["Calibration"]
    assert "1 of 3 row(s) have outputs that are not finite" in section and "<img" not in section
    assert calibration_summary(logits[[0, 2]], np.array([1, 0]))["ece"] == pytest.approx(0.5 * (1 - 0.8808) + 0.5 * (1 - 0.7311), abs=1e-4)
