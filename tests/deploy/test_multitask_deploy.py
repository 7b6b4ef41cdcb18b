"""A multi-task model exported and served: deploy.json records every task, the parity check
compares every task's outputs, and the runtime and the service answer each further task as the
eager ``predict_frame`` does. A single-task export keeps its layout and answers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from polymodal import MultimodalPredictor
from polymodal.data.manifest import read_manifest
from polymodal.deploy.export import export_run
from polymodal.deploy.parity import manifest_rows
from polymodal.deploy.runtime import Runtime
from polymodal.deploy.server import create_app
from polymodal.deploy.settings import ServeSettings
from polymodal.errors import SchemaMismatchError

from .helpers import LOCAL

WORDS = {0: "red small", 1: "green medium", 2: "blue large"}
TABLE = {"kind": "tabular", "columns": ["x1", "x2"], "encoder": {"dim": 4, "hidden": [8]}}
TEXT = {"kind": "text", "column": "notes", "encoder": {"name": "embedding_bag", "dim": 8}}
TRAIN = {"epochs": 1, "batch_size": 8, "lr": 0.01, "seed": 0, "progress": False, "num_workers": 0}
# the main task, and the further ones, of each model
MODELS = {
    "classifier": {"task": "classification", "target": "label",
                   "tasks": {"level": {"task": "regression", "target": ["y", "z"]},
                             "tags": {"task": "multilabel", "target": ["even", "big"]}}},
    "regressor": {"task": "regression", "target": "y", "tasks": {"kind": {"task": "classification", "target": "label"}}},
    "single": {"task": "classification", "target": "label"},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory, one_thread) -> dict:
    root = tmp_path_factory.mktemp("multitask_deploy")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        k = i % 3
        rows.append({"notes": "" if i % 5 == 1 else f"the {WORDS[k]} one {i % 4}",
                     "x1": "" if i % 7 == 3 else round(float(k + rng.normal(0, 0.3)), 3),
                     "x2": round(float(rng.normal()), 3), "label": "abc"[k],
                     "y": round(float(k + rng.normal(0, 0.2)), 3), "z": round(float(10 * rng.normal()), 3),
                     "even": int(i % 2 == 0), "big": int(k == 2)})
    frame = pd.DataFrame(rows)
    frame.iloc[:36].to_csv(root / "train.csv", index=False)
    frame.iloc[36:].to_csv(root / "test.csv", index=False)
    return {"root": root, "train": root / "train.csv", "test": root / "test.csv"}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request, data) -> dict:
    """A tiny model of ``MODELS`` (text + table, 1 epoch), exported with its check on the test rows."""
    cfg = {**MODELS[request.param], "modalities": {"notes": TEXT, "labs": TABLE}, "fusion": {"name": "concat"},
           "head": {"name": "mlp", "hidden": [8]}, "train": TRAIN}
    predictor = MultimodalPredictor.from_config(cfg).fit(data["train"], data["test"])
    folder = data["root"] / request.param / "export"
    report = export_run(predictor, folder, data=data["test"])
    manifest = read_manifest(data["test"])
    runtime = Runtime.load(folder)
    return {"name": request.param, "predictor": predictor, "folder": folder, "report": report, "runtime": runtime,
            "rows": manifest_rows(runtime, manifest, len(manifest)), "frame": predictor.predict_frame(data["test"])}


def further(model: dict) -> dict:
    return MODELS[model["name"]].get("tasks", {})


def assert_same_columns(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns in the same order; numbers within 1e-4, labels and ``absent`` equal."""
    assert list(got.columns) == list(expected.columns)
    for column in expected.columns:
        if expected[column].dtype.kind in "fiu":
            np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float), atol=1e-4,
                                       err_msg=column)
        else:
            assert got[column].tolist() == expected[column].tolist(), column


def test_deploy_json_records_every_task_and_its_slice_of_the_outputs(model):
    meta = json.loads((model["folder"] / "deploy.json").read_text())
    width = model["runtime"].session.get_outputs()[0].shape[-1]
    if not further(model):  # a single-task export is laid out as before
        assert "tasks" not in meta and "task_max_abs_diff" not in meta["parity"]
        assert meta["main_outputs"] == [0, width] and list(model["runtime"].tasks) == ["main"]
        return
    encoders = model["predictor"].pipeline.targets.encoders
    tasks = meta["tasks"]
    assert [t["name"] for t in tasks] == ["main", *sorted(further(model))]
    assert tasks[0]["outputs"] == meta["main_outputs"] and tasks[0]["classes"] == meta["classes"]
    stops = [t["outputs"] for t in tasks]
    assert stops[0][0] == 0 and stops[-1][1] == width  # the graph's outputs hold every task's, side by side
    assert all(a[1] == b[0] for a, b in zip(stops, stops[1:]))
    for entry in tasks:
        encoder = encoders[entry["name"]]
        spec = MODELS[model["name"]] if entry["name"] == "main" else further(model)[entry["name"]]
        assert entry["task"] == spec["task"] and entry["target"] == encoder.columns
        if entry["task"] == "classification":
            assert entry["classes"] == list(encoder.classes) and entry["threshold"] is None
        elif entry["task"] == "multilabel":
            assert entry["classes"] == entry["target"] and entry["threshold"] is None
        else:
            np.testing.assert_allclose(entry["target_scaling"], [encoder.mean, encoder.std], rtol=1e-6)
    checked = meta["parity"]["task_max_abs_diff"]
    assert list(checked) == [t["name"] for t in tasks] and max(checked.values()) <= 1e-4
    assert max(checked.values()) == meta["parity"]["graph_max_abs_diff"]


def test_runtime_records_are_predict_frames_columns(model):
    """Every task's predictions, named as predict_frame names them (the absent column too), agree
    with the eager model's on the test rows, some of which lack a modality."""
    records = pd.DataFrame(model["runtime"].predict_records(model["rows"]))
    assert_same_columns(records, model["frame"].reset_index(drop=True))
    assert model["frame"]["absent"].str.len().gt(0).any(), "some rows must lack a modality"
    for name in further(model):
        assert any(c.startswith(f"{name}_") for c in records.columns)


def test_runtime_predicts_each_task_by_name(model):
    runtime, rows, frame = model["runtime"], model["rows"], model["frame"]
    assert runtime.predict(rows) == runtime.predict(rows, task="main")
    for name, spec in further(model).items():
        targets = [spec["target"]] if isinstance(spec["target"], str) else spec["target"]
        got = runtime.predict(rows, task=name)
        if spec["task"] == "classification":
            assert got == frame[f"{name}_prediction"].tolist()
            proba = runtime.predict_proba(rows, task=name)
            classes = runtime.tasks[name]["classes"]
            np.testing.assert_allclose(proba, frame[[f"{name}_proba_{c}" for c in classes]], atol=1e-4)
        elif spec["task"] == "multilabel":
            assert got == frame[[f"{name}_pred_{c}" for c in targets]].to_numpy().tolist()
        else:
            np.testing.assert_allclose(got, frame[[f"{name}_pred_{c}" for c in targets]], atol=1e-4)
            with pytest.raises(ValueError, match=f"task '{name}' does regression"):
                runtime.predict_proba(rows, task=name)
    with pytest.raises(SchemaMismatchError, match=r"task 'nope' is not one of this model's tasks; it has \['main'"):
        runtime.predict(rows, task="nope")


def test_predict_answers_every_further_task_as_predict_frame(model):
    runtime, frame = model["runtime"], model["frame"]
    with TestClient(create_app(runtime, ServeSettings()), base_url=LOCAL) as client:
        metadata = client.get("/metadata").json()
        assert client.get("/").status_code == 200
        for i, row in enumerate(model["rows"]):
            out = client.post("/predict", json=row).json()
            expected = frame.iloc[i]
            main = MODELS[model["name"]]
            if main["task"] == "classification":  # the main task's fields stay at the top
                assert out["prediction"] == expected["prediction"]
                assert out["probabilities"] == pytest.approx({c: expected[f"proba_{c}"] for c in "abc"}, abs=1e-4)
            else:
                assert out["prediction"] == pytest.approx({"y": expected["pred_y"]}, abs=1e-4)
            if not further(model):
                assert "tasks" not in out
                continue
            assert list(out["tasks"]) == sorted(further(model))
            for name, spec in further(model).items():
                answer = out["tasks"][name]
                assert answer["task"] == spec["task"]
                if spec["task"] == "classification":
                    assert answer["prediction"] == expected[f"{name}_prediction"]
                    assert answer["probabilities"] == pytest.approx(
                        {c: expected[f"{name}_proba_{c}"] for c in "abc"}, abs=1e-4)
                elif spec["task"] == "multilabel":
                    assert answer["prediction"] == [c for c in spec["target"] if expected[f"{name}_pred_{c}"] == 1]
                    assert answer["probabilities"] == pytest.approx(
                        {c: expected[f"{name}_proba_{c}"] for c in spec["target"]}, abs=1e-4)
                else:
                    assert answer["prediction"] == pytest.approx(
                        {c: expected[f"{name}_pred_{c}"] for c in spec["target"]}, abs=1e-4)
        explained = client.post("/explain", json=model["rows"][0]).json()
        assert ("tasks" in explained) == bool(further(model)) and "contributions" in explained
    if further(model):
        assert {name: entry["task"] for name, entry in metadata["tasks"].items()} == {
            name: spec["task"] for name, spec in further(model).items()}
    else:
        assert "tasks" not in metadata


def test_an_export_written_before_tasks_were_recorded_answers_its_main_task_with_a_warning(model, tmp_path):
    if not further(model):
        pytest.skip("a single-task export describes every output")
    old = tmp_path / "old_export"
    shutil.copytree(model["folder"], old)
    meta = json.loads((old / "deploy.json").read_text())
    del meta["tasks"]
    (old / "deploy.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="beyond the main task's that its deploy.json does not describe"):
        runtime = Runtime.load(old)
    assert list(runtime.tasks) == ["main"]
    rows = model["rows"]
    assert runtime.predict(rows) == model["runtime"].predict(rows)
    with TestClient(create_app(runtime, ServeSettings()), base_url=LOCAL) as client:
        assert "tasks" not in client.post("/predict", json=rows[0]).json()
