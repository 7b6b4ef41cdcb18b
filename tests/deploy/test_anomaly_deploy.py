"""Anomaly detectors export and serve: one score per row in the graph, the flag threshold in
``deploy.json``, ``/predict`` answering score, flag and threshold (``null`` and flagged where the
scorer cannot score a row), ``/explain`` each modality's share of the score above the normal rows' mean."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from polymodal import MultimodalPredictor
from polymodal.anomaly import SCORERS, AnomalyDetector
from polymodal.cli import app
from polymodal.cli import deploy as commands
from polymodal.data.manifest import read_manifest
from polymodal.deploy.export import export_run
from polymodal.deploy.graph import _adaptive_avg_pool1d
from polymodal.deploy.parity import manifest_rows, output_difference
from polymodal.deploy.runtime import Runtime
from polymodal.deploy.server import create_app
from polymodal.deploy.settings import ServeSettings
from polymodal.errors import SchemaMismatchError
from polymodal.run_files import saved_fingerprint

from .conftest import anomaly_config
from .helpers import LOCAL, png_bytes, serving

runner = CliRunner()


@pytest.mark.parametrize(("length", "size"), [(10, 4), (7, 7), (5, 12), (1000, 1024), (3 * 224 * 224, 1024)])
def test_the_exported_pooling_equals_adaptive_average_pooling(length, size):
    """The reconstruction target pools any input length to ``recon_size`` values; ONNX translates
    adaptive pooling only where the size divides the length, so the export pools by running sums."""
    x = torch.randn(3, 1, length) * 10 + 5
    expected = torch.nn.functional.adaptive_avg_pool1d(x, size)
    assert torch.allclose(_adaptive_avg_pool1d(x, size), expected, rtol=1e-5, atol=1e-5)


def test_output_difference_is_relative_for_scores_and_agrees_on_rows_neither_side_scores():
    eager = np.array([[1000.0], [0.5], [np.nan]])
    assert output_difference(np.array([[1000.05], [0.5], [np.nan]]), eager, "relative") == pytest.approx(5e-5)
    assert output_difference(np.array([[1000.05], [0.5]]), eager[:2], "absolute") == pytest.approx(0.05, rel=1e-6)
    assert output_difference(np.array([[1000.0], [0.5], [3.0]]), eager, "relative") == math.inf  # one side scores
    assert output_difference(np.array([[1000.0], [np.nan], [np.nan]]), eager, "relative") == math.inf
    assert output_difference(np.array([[1000.0], [0.5], [np.nan]]), eager, "absolute") == math.inf  # logits: never


@pytest.mark.parametrize("scorer", sorted(SCORERS))
def test_every_scorer_exports_and_the_runtime_scores_and_flags_rows_as_the_detector(scorer, dataset, tmp_path):
    detector = AnomalyDetector.from_config(anomaly_config(scorer)).fit(dataset["train"], dataset["test"],
                                                                       out=tmp_path / "run")
    report = export_run(detector, tmp_path / "export", data=dataset["test"])
    assert report.parity["measure"] == "relative" and report.parity["runtime_rows"] == 18
    assert report.parity["graph_max_abs_diff"] <= 1e-4 and report.parity["runtime_max_abs_diff"] <= 1e-4
    runtime = Runtime.load(tmp_path / "export")
    # a runtime of format 2 would misread the scores (3); its table's categories are normalised (4); its
    # text keeps the punctuation of numbers (5); a runtime of format 5 would flag a row with a modality missing at
    # the full set's threshold (6); its text deletes an apostrophe inside a word, "can't" read 'cant' (7)
    assert runtime.meta["format_version"] == 7
    by_subset = detector.row_thresholds(np.arange(16))  # every subset of the 4 modalities, NaN resolved
    assert runtime.meta["anomaly"] == {"scorer": scorer, "threshold": pytest.approx(float(detector.model.scorer.threshold)),
                                       "unscored_reason": detector.model.scorer.unscored_reason,
                                       "normal_coalitions": pytest.approx(detector.coalition_reference().tolist()),
                                       "subset_thresholds": pytest.approx(by_subset.tolist())}
    test = pd.read_csv(dataset["test"], keep_default_na=False)
    test.loc[0, ["image", "audio", "text", "x1", "color"]] = ["", "", "", "", ""]  # one modality left: notes
    test.loc[0, "text"] = "the red small one"
    rows_csv = dataset["root"] / f"rows_{scorer}.csv"  # beside the files it names
    test.to_csv(rows_csv, index=False)
    eager = detector.predict_frame(rows_csv)
    rows = manifest_rows(runtime, read_manifest(rows_csv), len(test))
    scores = runtime.scores(runtime.outputs(rows))
    assert output_difference(scores, eager[["score"]].to_numpy(), "relative") <= 1e-4
    # the same flags, but where a score ties its row's threshold (that of the modalities it holds; a
    # validation row's score is a threshold itself), float rounding may flip one: those rows are not compared
    held = runtime.held(runtime.transform(rows))
    threshold, eager_scores = runtime.row_thresholds(held), eager["score"].to_numpy()
    clear = np.isnan(eager_scores) | (np.abs(eager_scores - threshold) > 1e-4 * np.maximum(1.0, np.abs(threshold)))
    assert clear.sum() >= len(rows) - len(np.unique(held))  # at most one tie per subset: its threshold's row
    assert np.asarray(runtime.predict(rows))[clear].tolist() == eager["flag"].to_numpy()[clear].tolist()
    # the consistency scorer compares modalities; the autoencoder does not reconstruct texts
    assert np.isnan(scores[0, 0]) == (scorer in ("consistency", "autoencoder"))
    assert 0 < sum(runtime.predict(rows)) < len(rows)  # the threshold flags some rows, not all
    # the runtime attributes the score as the detector does, against the same normal reference
    explanation = detector.explain(rows_csv, samples=0)
    assert explanation.reference == "normal" and runtime.explained_quantity() == explanation.explained_quantity
    eager_phi = explanation.values[runtime.names].to_numpy()
    phi = runtime.explain(rows)
    np.testing.assert_array_equal(np.isnan(phi), np.isnan(eager_phi))
    scale = max(1.0, float(np.nanmax(np.abs(eager_phi))))
    np.testing.assert_allclose(phi, eager_phi, atol=1e-4 * scale)


def test_the_runtime_flags_each_row_at_the_threshold_of_its_modalities_as_the_detector(dataset, tmp_path):
    """Rows holding every subset of the four modalities in turn: the runtime picks the same
    threshold per row as the detector, and flags alike; an export of format 5 (no thresholds per
    subset) flags every row at the one threshold, and says so once."""
    import json
    import warnings

    detector = AnomalyDetector.from_config(anomaly_config("mahalanobis")).fit(dataset["train"], dataset["test"],
                                                                              out=tmp_path / "run")
    export_run(detector, tmp_path / "export", data=dataset["test"])
    runtime = Runtime.load(tmp_path / "export")
    test = pd.read_csv(dataset["test"], keep_default_na=False)
    columns = {"audio": ["audio"], "image": ["image"], "labs": ["x1", "color"], "notes": ["text"]}  # sorted names
    given = sum((test[cols] != "").any(axis=1).to_numpy().astype(int) << k for k, cols in enumerate(columns.values()))
    expected = []
    for i in range(len(test)):  # row i keeps what it holds of bit mask i % 15 + 1 (bit k: the k-th sorted name)
        keep = given[i] & (i % 15 + 1) or given[i]  # (all it holds where that would leave nothing)
        for k, name in enumerate(columns):
            if not keep >> k & 1:
                test.loc[i, columns[name]] = ""
        expected.append(keep)
    assert len(set(expected)) >= 8
    rows_csv = dataset["root"] / "rows_subsets.csv"
    test.to_csv(rows_csv, index=False)
    eager = detector.predict_frame(rows_csv)
    rows = manifest_rows(runtime, read_manifest(rows_csv), len(test))
    feeds = runtime.transform(rows)
    held = runtime.held(feeds)
    assert held.tolist() == expected
    np.testing.assert_allclose(runtime.row_thresholds(held), detector.row_thresholds(held), rtol=1e-6)
    at = detector.row_thresholds(held)
    assert len(set(np.round(at, 6))) > 4  # the subsets' thresholds differ
    # the validation rows are these rows, so some scores are their subset's threshold itself: float
    # rounding may flip those flags, which are not compared
    eager_scores = eager["score"].to_numpy()
    clear = np.isnan(eager_scores) | (np.abs(eager_scores - at) > 1e-4 * np.maximum(1.0, np.abs(at)))
    assert clear.sum() >= len(rows) - 4
    assert np.asarray(runtime.predict(rows))[clear].tolist() == eager["flag"].to_numpy()[clear].tolist()
    # an export written before: one threshold for every row, and a warning the first time it flags an incomplete row
    meta = json.loads((tmp_path / "export" / "deploy.json").read_text())
    del meta["anomaly"]["subset_thresholds"]
    (tmp_path / "export" / "deploy.json").write_text(json.dumps({**meta, "format_version": 5}))
    old = Runtime.load(tmp_path / "export")
    full = float(detector.model.scorer.threshold)
    scores = old.scores(old.run(feeds)[:, :1])
    assert (old.row_thresholds(held) == full).all()
    with pytest.warns(UserWarning, match="this model has one flag threshold for every row"):
        flagged = old.predict(rows)
    assert flagged == (scores[:, 0] > full).tolist()
    assert sum(flagged) > sum(eager["flag"])  # incomplete rows raised for being incomplete
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*one flag threshold for every row")
        old.predict(rows)  # said once


def test_export_prints_what_int8_changes_in_the_flags(anomaly_exported, dataset, tmp_path):
    detector, _ = anomaly_exported
    run = detector.run_dir
    result = runner.invoke(app, ["export", str(run), "--data", str(dataset["test"]), "--quantize", "--out",
                                 str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    assert "max |exported - eager| / max(1, |eager|) =" in result.output
    assert "the same flag on" in result.output and "AUROC" in result.output
    quantized = Runtime.load(tmp_path / "exp").meta["quantized"]
    assert quantized["rows"] == 18 and quantized["flag_agreement"] >= 15 / 18  # int8 moves a few scores across at most
    assert quantized["auroc"] == pytest.approx(detector.evaluate(dataset["test"])["auroc"], abs=1e-6)  # the float graph
    assert f"AUROC {quantized['auroc']:.4f} -> {quantized['auroc_int8']:.4f}" in result.output


def test_serve_refuses_an_export_of_another_model_than_the_runs(anomaly_exported, tmp_path, monkeypatch):
    """A run trained again into its folder keeps its older export: serving it would answer with the
    old model; the export records which model it holds."""
    import json
    import shutil

    detector, _ = anomaly_exported
    run = shutil.copytree(detector.run_dir, tmp_path / "run")
    meta_file = run / "export" / "deploy.json"
    meta = json.loads(meta_file.read_text())
    assert meta["model_fingerprint"] == AnomalyDetector.load(run).model_fingerprint()
    assert saved_fingerprint(run / "model.safetensors") == meta["model_fingerprint"]  # what serve reads, no torch
    monkeypatch.setattr(commands, "run_server", lambda app, settings: None)

    def not_loaded(*_, **__):
        raise AssertionError("serve loaded the model to check its export")

    with monkeypatch.context() as patch:  # the weights' header tells: the model is not loaded
        patch.setattr(MultimodalPredictor, "load", not_loaded)
        result = runner.invoke(app, ["serve", str(run)])
        assert result.exit_code == 0, result.output
    meta_file.write_text(json.dumps({**meta, "model_fingerprint": "0" * 32}))
    result = runner.invoke(app, ["serve", str(run)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {run / 'export'} was exported from another model than {run}'s (the run "
                                    "was trained again, or its decision or anomaly threshold set, since): export it again with 'polymodal export")
    # a run saved before its weights recorded the fingerprint: the model is loaded to compute it
    save_file(load_file(run / "model.safetensors"), run / "model.safetensors", metadata={})
    assert saved_fingerprint(run / "model.safetensors") is None
    result = runner.invoke(app, ["serve", str(run)])
    assert result.exit_code == 2 and "was exported from another model" in result.stderr
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "model_fingerprint"}))
    with pytest.warns(UserWarning, match="records no fingerprint of the model it was exported from"):
        result = runner.invoke(app, ["serve", str(run)])  # an export from before the record: served, with a warning
    assert result.exit_code == 0, result.output


def test_serve_runs_an_anomaly_run(anomaly_exported, monkeypatch):
    detector, _ = anomaly_exported
    served = []
    monkeypatch.setattr(commands, "run_server", lambda app, settings: served.append(app))
    result = runner.invoke(app, ["serve", str(detector.run_dir)])
    assert result.exit_code == 0, result.output
    from fastapi.testclient import TestClient

    meta = TestClient(served[0], base_url=LOCAL).get("/metadata").json()  # the app serve would have run
    assert meta["task"] == "anomaly" and meta["anomaly"]["scorer"] == "consistency"


def test_the_runtime_refuses_probabilities_of_a_detector_as_the_detector_does(anomaly_exported, dataset):
    """It raised the HTTP layer's RequestError, which a Python caller does not catch as a model mismatch."""
    detector, folder = anomaly_exported
    runtime = Runtime.load(folder)
    rows = manifest_rows(runtime, read_manifest(dataset["test"]), 2)
    with pytest.raises(SchemaMismatchError, match="^predict_proba needs a classification or multilabel model; this one "
                                                  r"does anomaly; an anomaly detector's scores are rt.scores"):
        runtime.predict_proba(rows)
    with pytest.raises(SchemaMismatchError):
        detector.predict_proba(dataset["test"])


@pytest.fixture(scope="module")
def anomaly_server(anomaly_exported):
    with serving(create_app(Runtime.load(anomaly_exported[1]), ServeSettings())) as url:
        yield url


def test_the_service_answers_score_flag_and_threshold_and_null_where_the_row_cannot_be_scored(
        anomaly_exported, anomaly_server, dataset):
    import httpx

    detector, folder = anomaly_exported
    threshold = float(detector.model.scorer.threshold)
    meta = httpx.get(anomaly_server + "metadata").json()
    assert meta["task"] == "anomaly" and meta["classes"] == []
    assert meta["modalities"]["audio"]["max_seconds"] == 0.25 and meta["modalities"]["image"]["size"] == 8
    assert "/explain" in httpx.get(anomaly_server + "openapi.json").json()["paths"]
    assert meta["anomaly"]["scorer"] == "consistency" and meta["anomaly"]["threshold"] == pytest.approx(threshold)
    root = dataset["root"]
    both = httpx.post(anomaly_server + "predict", files={"image": ("i0.png", (root / "i0.png").read_bytes(), "image/png"),
                                                          "audio": ("a0.wav", (root / "a0.wav").read_bytes(), "audio/wav")})
    assert both.status_code == 200, both.text
    body = both.json()
    assert body["task"] == "anomaly" and body["modalities"] == ["audio", "image"] and body["absent"] == ["labs", "notes"]
    # the threshold of the modalities sent, audio and image (bits 0 and 1 of the sorted names)
    applied = float(detector.row_thresholds(np.asarray([0b0011]))[0])
    assert applied != pytest.approx(threshold)  # not the full set's
    assert isinstance(body["score"], float) and body["flag"] == (body["score"] > applied)
    assert body["threshold"] == pytest.approx(applied) and body["warnings"] == []
    expected = detector.predict_frame(pd.DataFrame({"image": [str(root / "i0.png")], "audio": [str(root / "a0.wav")],
                                                    "text": [""], "x1": [np.nan], "color": [""]}))
    assert body["score"] == pytest.approx(float(expected["score"].iloc[0]), rel=1e-4)
    alone = httpx.post(anomaly_server + "predict", json={"notes": "the red small one"}).json()
    assert alone["score"] is None and alone["flag"] is True and alone["absent"] == ["audio", "image", "labs"]
    assert alone["warnings"] == ["not scored: fewer than two modalities present: the consistency scorer compares "
                                 "modalities; flagged, as a row that cannot be checked"]
    unexplained = httpx.post(anomaly_server + "explain", json={"notes": "the red small one"})
    assert unexplained.status_code == 200, unexplained.text  # no score: nothing to attribute, said as nulls
    assert unexplained.json()["score"] is None and unexplained.json()["base"] is None
    assert set(unexplained.json()["contributions"].values()) == {None}
    explained = httpx.post(anomaly_server + "explain",
                           files={"image": ("i0.png", (root / "i0.png").read_bytes(), "image/png"),
                                  "audio": ("a0.wav", (root / "a0.wav").read_bytes(), "audio/wav")}).json()
    assert explained["score"] == pytest.approx(body["score"]) and explained["flag"] == body["flag"]
    assert explained["reference"] == "normal" and explained["explained_quantity"] == "anomaly score"
    # measured against normal rows scored with audio and image only (bits 0 and 1 of the sorted names)
    assert explained["base"] == pytest.approx(detector.coalition_reference()[0b0011], rel=1e-4)
    assert explained["contributions"]["labs"] == 0 and explained["contributions"]["notes"] == 0  # not sent


def test_the_page_shows_an_anomaly_verdict_with_its_score(anomaly_server, tmp_path):
    import shutil

    playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the 'dev' extra)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    (tmp_path / "bright.png").write_bytes(png_bytes(np.full((10, 12), 250, np.uint8)))
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(anomaly_server, wait_until="networkidle")
        page.wait_for_selector("#file-image", state="attached")
        assert "anomaly over audio, image, labs, notes; scorer consistency" in page.inner_text("#about")
        page.set_input_files("#file-image", str(tmp_path / "bright.png"))
        page.fill("#text-notes", "the blue large one")
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])")
        assert page.inner_text("#prediction") in {"anomaly", "normal"}
        assert page.is_visible("#score-note") and "higher = more anomalous" in page.inner_text("#score-note")
        assert not page.is_visible("#probabilities-part") and page.is_visible("#contrib-part")
        assert "on average over normal rows with these modalities; red pushed it towards a flag, at " in \
            page.inner_text("#contrib-note")
        missing = page.eval_on_selector_all("#contributions .bar-row.missing", "rows => rows.map(r => r.dataset.label)")
        assert missing == ["audio", "labs"]  # not sent: no bar
        # red where a value raised the score, the widths against the span from the normal mean to the threshold
        bars = page.eval_on_selector_all("#contributions .bar", "bars => bars.map(b => [b.classList.contains('up'), "
                                                                "parseFloat(b.style.width)])")
        values = [float(v) for v in page.eval_on_selector_all("#contributions .bar-row:not(.missing) span:last-child",
                                                              "spans => spans.map(s => s.textContent)")]
        assert [up for up, _ in bars] == [v > 0 for v in values] and all(0 <= width <= 100 for _, width in bars)
        page.fill("#text-notes", "")  # the image alone: nothing to compare, so no score and a flag
        assert not page.is_visible("#result")  # the text was cleared: the verdict shown was for other inputs
        page.set_input_files("#file-image", str(tmp_path / "bright.png"))
        page.click("#submit")
        page.wait_for_function("document.getElementById('score-note').textContent === 'no score'")
        assert page.inner_text("#prediction") == "anomaly" and page.is_visible("#score-note")
        assert not page.is_visible("#contrib-part")  # no score: nothing to attribute
        assert "not scored: fewer than two modalities present" in page.inner_text("#warnings")
        assert "not sent: audio, labs, notes" in page.inner_text("#warnings")
        assert not page.is_visible("#error")
        browser.close()
