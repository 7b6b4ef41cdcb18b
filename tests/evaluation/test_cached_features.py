"""The report's analyses and a saved run's predictions reuse the outputs of frozen encoders the fit
cached (``encoder.cache: true``) instead of running the encoders again, and give the numbers that
running them gives.

The "pretrained" encoders are a random timm ``mobilenetv3_small_050`` and a tiny random BERT saved
to a temp folder (:mod:`helpers_pretrained`).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from helpers_models import assert_same_numbers
from helpers_pretrained import EncoderRows, cached_frozen_config, cached_frozen_setup

from polymodal import MultimodalPredictor
from polymodal.config import ReportConfig
from polymodal.evaluation.attribution import explain
from polymodal.evaluation.corruptions import SEVERITIES
from polymodal.evaluation.data import load_eval_data
from polymodal.evaluation.diagnostics import diagnose
from polymodal.evaluation.robustness import robustness_sweep
from polymodal.evaluation.subsets import evaluate_subsets

CACHED = ["cap", "img"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    return cached_frozen_setup(tmp_path_factory.mktemp("cached-frozen"))


@pytest.fixture(scope="module")
def fitted(setup, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "cached"
    config = cached_frozen_config(setup, setup["root"] / "cache", report={"rows": 64})
    predictor = MultimodalPredictor.from_config(config).fit(setup["train"], setup["valid"], test=setup["test"],
                                                            out=run)
    return predictor, run


def run_encoders_every_time(monkeypatch) -> None:
    """What inference did before it read the cache: the network runs every encoder on the inputs."""
    monkeypatch.setattr(MultimodalPredictor, "network_table", lambda self, manifest, table, **_: table)


def present_rows(predictor, data) -> dict[str, int]:
    _, table = predictor.encode_data(data, require_target=False)
    return {name: int(table.modalities[name].present.sum()) for name in CACHED}


def without_timings(diag: dict) -> dict:
    out = {k: v for k, v in diag.items() if k not in ("seconds", "complexity")}
    out["complexity"] = {k: v for k, v in diag["complexity"].items()
                         if k in ("parameters", "train_seconds", "device")}
    return out


def test_the_report_reads_cached_features_and_gives_the_numbers_of_running_the_encoders(fitted, setup, monkeypatch):
    predictor, _ = fitted
    cfg = ReportConfig(rows=64)
    present = present_rows(predictor, setup["test"])
    with EncoderRows(predictor.net, CACHED) as reused:
        fast = diagnose(predictor, setup["test"], "test", cfg)
    run_encoders_every_time(monkeypatch)
    with EncoderRows(predictor.net, CACHED) as live:
        slow = diagnose(predictor, setup["test"], "test", cfg)
    assert_same_numbers(without_timings(fast), without_timings(slow))
    assert {c["modality"] for c in fast["robustness"]["curves"]} == {"cap", "img", "tab"}
    # before: subsets, importance, calibration, and the clean + 3 x 5 corrupted sweep evaluations each ran every
    # encoder on every row (19 passes); now only the 5 corrupted copies of each cached encoder's own modality do
    # (the test rows were stored when the fit evaluated them; the latency runs the same in both)
    for name in CACHED:
        assert live.rows[name] - reused.rows[name] == 14 * present[name], name


def test_clean_row_analyses_run_no_cached_encoder(fitted, setup):
    predictor, _ = fitted
    with EncoderRows(predictor.net, CACHED) as counted:
        data = load_eval_data(predictor, setup["test"], require_target=True)  # its rows: in the cache since the fit
        evaluate_subsets(predictor, data)
        explain(predictor, data, samples=0)
        predictor.raw_outputs(data.features)
        robustness_sweep(predictor, data, {"tab": ["missing"]})
    assert counted.rows == {"cap": 0, "img": 0}


def test_a_corrupted_modality_runs_only_its_own_encoder_once_per_severity(fitted, setup):
    predictor, _ = fitted
    data = load_eval_data(predictor, setup["test"], require_target=True)
    present = int(data.table.modalities["img"].present.sum())
    with EncoderRows(predictor.net, CACHED) as counted:
        robustness_sweep(predictor, data, {"img": ["gaussian_noise"]})
    assert counted.rows == {"cap": 0, "img": SEVERITIES * present}


def test_within_modality_attributions_still_read_the_inputs(fitted, setup):
    predictor, _ = fitted
    explanation = explain(predictor, setup["test"], samples=2, steps=4)
    kinds = {w.modality for w in explanation.within}
    assert "img" in kinds and all(np.isfinite(w.attribution).all() for w in explanation.within)


def test_a_saved_run_predicts_cached_rows_without_running_its_encoders(fitted, setup, monkeypatch):
    _, run = fitted
    loaded = MultimodalPredictor.load(run)
    with EncoderRows(loaded.net, CACHED) as counted:
        proba = loaded.predict_proba(setup["test"])
        metrics = loaded.evaluate(setup["test"])
        frame = loaded.predict_frame(setup["valid"])
    assert counted.rows == {"cap": 0, "img": 0}
    run_encoders_every_time(monkeypatch)
    np.testing.assert_allclose(proba.to_numpy(), loaded.predict_proba(setup["test"]).to_numpy(), atol=1e-5)
    assert metrics["accuracy"] == loaded.evaluate(setup["test"])["accuracy"]
    assert list(frame["prediction"]) == list(loaded.predict_frame(setup["valid"])["prediction"])


def test_new_rows_are_embedded_once_then_read_back(fitted, setup, tmp_path):
    _, run = fitted
    loaded = MultimodalPredictor.load(run)
    test = pd.read_csv(setup["test"])
    for name in test["image"].dropna():  # the same pictures, one grey level brighter: content the cache lacks
        shutil.copy(setup["root"] / name, tmp_path / name)
        from PIL import Image

        pixels = np.asarray(Image.open(tmp_path / name), np.int16)
        Image.fromarray((pixels + 1).clip(0, 255).astype(np.uint8), "L").save(tmp_path / name)
    test.to_csv(tmp_path / "new.csv", index=False)
    present = present_rows(loaded, tmp_path / "new.csv")
    with EncoderRows(loaded.net, CACHED) as first:
        proba = loaded.predict_proba(tmp_path / "new.csv")
    with EncoderRows(loaded.net, CACHED) as second:
        again = loaded.predict_proba(tmp_path / "new.csv")
    assert first.rows == {"cap": 0, "img": present["img"]}  # the captions are the test rows' own
    assert second.rows == {"cap": 0, "img": 0}
    np.testing.assert_array_equal(proba.to_numpy(), again.to_numpy())


def test_a_moved_run_fills_a_new_cache_folder_once(fitted, setup, tmp_path):
    _, run = fitted
    loaded = MultimodalPredictor.load(run)
    expected = loaded.predict_proba(setup["test"]).to_numpy()
    loaded.config.data.cache_dir = str(tmp_path / "elsewhere")  # the run moved to another machine
    with EncoderRows(loaded.net, CACHED) as first:
        proba = loaded.predict_proba(setup["test"])
    with EncoderRows(loaded.net, CACHED) as second:
        loaded.predict_proba(setup["test"])
    captions = pd.read_csv(setup["test"])["cap"].dropna().nunique()
    assert first.rows == {"cap": captions, "img": present_rows(loaded, setup["test"])["img"]}  # each input once
    assert second.rows == {"cap": 0, "img": 0}
    np.testing.assert_allclose(proba, expected, atol=1e-5)


def test_without_a_cache_folder_the_report_holds_features_in_memory_and_predict_runs_the_encoders(setup):
    config = cached_frozen_config(setup, None, report={"rows": 64, "robustness": False})
    predictor = MultimodalPredictor.from_config(config).fit(setup["train"], setup["valid"])
    present = present_rows(predictor, setup["test"])
    with EncoderRows(predictor.net, CACHED) as analyses:
        data = load_eval_data(predictor, setup["test"], require_target=True)
        evaluate_subsets(predictor, data)
        explain(predictor, data, samples=0)
    with EncoderRows(predictor.net, CACHED) as predicting:
        predictor.predict_proba(setup["test"])
    assert analyses.rows == present  # embedded once, for every analysis
    assert predicting.rows == present  # nothing stored to reuse: the network runs them, as before
