"""One explained output everywhere: ``pred.explain``, the exported runtime and ``POST /explain``
attribute the same score (by default the predicted class's probability, else the first output),
name it, and compute it the same way (exact Shapley values up to 6 modalities, the same sampled
orders beyond)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from polymodal import MultimodalPredictor
from polymodal.deploy.export import export_run
from polymodal.deploy.runtime import Runtime
from polymodal.deploy.server import create_app
from polymodal.deploy.settings import ServeSettings
from polymodal.errors import SchemaMismatchError
from polymodal.utils import shapley
from polymodal.utils.shapley import EXACT_MAX_MODALITIES, shapley_plan

from .helpers import LOCAL

LABELS = ["kw_leak", "kw_noise"]
TARGETS = ["y1", "y2"]


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a1, a2, b1, b2 = rng.normal(size=(4, n))
    data = pd.DataFrame({"a1": a1, "a2": a2, "b1": b1, "b2": b2,
                         "kw_leak": (a1 + 0.5 * b1 > 0).astype(int), "kw_noise": (b1 > 0).astype(int),
                         "y1": 100.0 + 10.0 * a1 + 2.0 * b1, "y2": -3.0 * b1 + 0.1 * a2})
    data.loc[::7, ["a1", "a2"]] = np.nan  # rows without modality a
    data.loc[3::7, ["b1", "b2"]] = np.nan  # rows without modality b
    return data


def config(task: str) -> dict:
    encoder = {"dim": 8, "hidden": [16]}
    return {"task": task, "target": LABELS if task == "multilabel" else TARGETS,
            "modalities": {"a": {"kind": "tabular", "columns": ["a1", "a2"], "encoder": dict(encoder)},
                           "b": {"kind": "tabular", "columns": ["b1", "b2"], "encoder": dict(encoder)}},
            "fusion": {"name": "concat"}, "head": {"name": "mlp", "hidden": [16]},
            "train": {"epochs": 3, "batch_size": 16, "lr": 0.01, "seed": 0, "progress": False, "num_workers": 0},
            "report": {"rows": 0}}


def runtime_rows(data: pd.DataFrame) -> list[dict]:
    def cells(row: pd.Series, columns: list[str]) -> dict:
        return {c: None if math.isnan(row[c]) else float(row[c]) for c in columns}

    return [{"a": cells(row, ["a1", "a2"]), "b": cells(row, ["b1", "b2"])} for _, row in data.iterrows()]


@pytest.fixture(scope="module", params=["multilabel", "regression"])
def exported(request, tmp_path_factory, one_thread):
    task = request.param
    run = tmp_path_factory.mktemp(f"parity_{task}") / "run"
    predictor = MultimodalPredictor.from_config(config(task)).fit(frame(80, 0), frame(30, 1), out=run)
    test = frame(12, 2)
    export_run(predictor, run / "export", data=test)
    return task, predictor, test, Runtime.load(run / "export")


def test_eager_and_runtime_explain_the_same_default_output(exported):
    task, predictor, test, runtime = exported
    explanation = predictor.explain(test, samples=0)
    first = LABELS[0] if task == "multilabel" else TARGETS[0]
    assert (explanation.values["explained"] == first).all()
    assert explanation.explained_quantity == runtime.explained_quantity()
    if task == "multilabel":  # what the runtime explained before: the mean label probability, another number
        assert not np.allclose(explanation.phi[..., 0], explanation.phi.mean(axis=-1), atol=1e-3)
    assert explanation.explained_quantity == (f"probability of label '{first}'" if task == "multilabel"
                                              else f"predicted value of target '{first}'")
    phi = runtime.explain(runtime_rows(test))
    assert runtime.names == explanation.modalities == ["a", "b"]
    scale = 1.0 if task == "multilabel" else float(np.abs(explanation.values["prediction"]).max())
    np.testing.assert_allclose(phi, explanation.values[["a", "b"]].to_numpy(), atol=1e-5 * scale)


def test_another_output_is_the_same_in_both_paths(exported):
    task, predictor, test, runtime = exported
    second = LABELS[1] if task == "multilabel" else TARGETS[1]
    explanation = predictor.explain(test, samples=0, output=second)
    assert (explanation.values["explained"] == second).all()
    assert explanation.explained_quantity == runtime.explained_quantity(second)
    assert (explanation.importance["explained"] == explanation.explained_quantity).all()
    phi = runtime.explain(runtime_rows(test), output=second)
    scale = 1.0 if task == "multilabel" else float(np.abs(explanation.values["prediction"]).max())
    np.testing.assert_allclose(phi, explanation.values[["a", "b"]].to_numpy(), atol=1e-5 * scale)
    with pytest.raises(SchemaMismatchError, match=r"'nope'.*\['(kw_leak|y1)', '(kw_noise|y2)'\]"):
        runtime.explain(runtime_rows(test), output="nope")


def test_serve_names_the_explained_output_and_matches_the_runtime(exported):
    task, predictor, test, runtime = exported
    row = runtime_rows(test)[1]
    with TestClient(create_app(runtime, ServeSettings(max_wait_ms=5)), base_url=LOCAL) as client:
        out = client.post("/explain", json=row).json()
    first = LABELS[0] if task == "multilabel" else TARGETS[0]
    assert out["explained"] == first
    assert out["explained_quantity"] == runtime.explained_quantity()
    assert out["shapley"] == "exact"  # two modalities: every coalition
    if task == "multilabel":
        assert out["score"] == pytest.approx(out["probabilities"][first], abs=1e-6)
    else:
        assert out["score"] == pytest.approx(out["prediction"][first], rel=1e-6)
    expected = predictor.explain(test.iloc[[1]], samples=0).values.iloc[0]
    scale = 1.0 if task == "multilabel" else abs(float(expected["prediction"]))
    assert out["contributions"] == pytest.approx({"a": expected["a"], "b": expected["b"]}, abs=1e-5 * scale)
    assert out["base"] == pytest.approx(expected["base"], abs=1e-5 * scale)


def test_metadata_lists_classes_only_for_a_model_that_has_them(exported):
    task, _, _, runtime = exported
    with TestClient(create_app(runtime, ServeSettings()), base_url=LOCAL) as client:
        meta = client.get("/metadata").json()
    assert meta["target"] == (LABELS if task == "multilabel" else TARGETS)
    assert meta["classes"] == (LABELS if task == "multilabel" else [])  # regression predicts values, not classes


def form_fields(row: dict) -> dict:
    """A runtime row as multipart form fields: one per tabular column (None left out)."""
    return {column: (None, str(value)) for table in row.values() for column, value in table.items() if value is not None}


def test_the_output_query_parameter_explains_another_output_in_both_body_formats(exported):
    """``POST /explain?output=NAME`` attributes that label or target, as ``Runtime.explain(output=)``
    does, whether the inputs come as JSON or multipart (where a field ``output`` would be a modality)."""
    task, _, test, runtime = exported
    second = LABELS[1] if task == "multilabel" else TARGETS[1]
    row = runtime_rows(test)[2]
    expected = runtime.explain([row], output=second)[0]
    with TestClient(create_app(runtime, ServeSettings(max_wait_ms=5)), base_url=LOCAL) as client:
        answers = [client.post("/explain", params={"output": second}, json=row),
                   client.post(f"/explain?output={second}", files=form_fields(row))]
        default = client.post("/explain", json=row).json()
    for response in answers:
        assert response.status_code == 200, response.text
        out = response.json()
        assert out["explained"] == second and out["explained_quantity"] == runtime.explained_quantity(second)
        assert out["score"] == pytest.approx((out["probabilities"] if task == "multilabel" else out["prediction"])[second],
                                             rel=1e-6)
        assert out["contributions"] == pytest.approx(dict(zip(runtime.names, expected.tolist())), rel=1e-5, abs=1e-6)
        assert out["base"] + sum(out["contributions"].values()) == pytest.approx(out["score"], rel=1e-5, abs=1e-6)
    assert default["explained"] != second and default["contributions"] != answers[0].json()["contributions"]


def test_an_unknown_output_or_query_parameter_is_refused_listing_what_is_taken(exported):
    task, _, test, runtime = exported
    names = LABELS if task == "multilabel" else TARGETS
    row = runtime_rows(test)[0]
    with TestClient(create_app(runtime, ServeSettings(max_wait_ms=5)), base_url=LOCAL) as client:
        unknown = client.post("/explain", params={"output": "rpm"}, json=row)
        twice = client.post(f"/explain?output={names[0]}&output={names[1]}", json=row)
        misspelt = client.post("/explain", params={"ouptut": names[1]}, json=row)
        on_predict = client.post("/predict", params={"output": names[1]}, json=row)
        in_the_form = client.post("/explain", files={**form_fields(row), "output": (None, names[1])})
        busted = client.post("/explain", params={"output": names[1], "_": "1712"}, json=row)  # a cache-buster
        plain = client.post("/explain", params={"output": names[1]}, json=row)
    error = unknown.json()["error"]
    assert unknown.status_code == 422 and (error["code"], error["field"]) == ("unknown_output", "output")
    assert "'rpm'" in error["message"] and str(names) in error["message"]
    assert twice.status_code == 422 and twice.json()["error"]["code"] == "duplicate_parameter"
    error = misspelt.json()["error"]
    assert misspelt.status_code == 422 and (error["code"], error["field"]) == ("unknown_parameter", "ouptut")
    assert "takes only ['output']" in error["message"] and "did you mean 'output'" in error["message"]
    assert busted.status_code == 200 and busted.json() == plain.json()  # not one of the service's names: ignored
    error = on_predict.json()["error"]
    assert on_predict.status_code == 422 and (error["code"], error["field"]) == ("unknown_parameter", "output")
    assert "POST /predict takes none" in error["message"]
    error = in_the_form.json()["error"]
    assert (error["code"], error["field"]) == ("unknown_field", "output") and "POST /explain?output=NAME" in error["message"]


def test_the_openapi_spec_and_metadata_name_the_outputs_explain_takes(exported):
    task, _, _, runtime = exported
    names = LABELS if task == "multilabel" else TARGETS
    with TestClient(create_app(runtime, ServeSettings()), base_url=LOCAL) as client:
        spec = client.get("/openapi.json").json()
        meta = client.get("/metadata").json()
    (parameter,) = spec["paths"]["/explain"]["post"]["parameters"]
    assert (parameter["name"], parameter["in"], parameter["required"]) == ("output", "query", False)
    assert parameter["schema"] == {"type": "string", "enum": names}
    assert "parameters" not in spec["paths"]["/predict"]["post"]
    assert meta["outputs"] == names


# ---------------------------------------------------------------- beyond the exact limit

SENSORS = [f"s{i}" for i in range(EXACT_MAX_MODALITIES + 1)]  # seven one-column tabular modalities


def sensor_frame(n: int, seed: int) -> pd.DataFrame:
    """A target that mixes the sensors through products (Shapley values that sampled orders only
    estimate), each sensor missing in some rows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(SENSORS), n))
    data = pd.DataFrame(dict(zip(SENSORS, x)))
    data["y"] = 3.0 * x[0] * x[1] + 2.0 * np.abs(x[2]) - x[3] * x[4] + x[5] + np.maximum(x[6], 0.0)
    for i, name in enumerate(SENSORS):
        data.loc[i::9, name] = np.nan
    return data


def sensor_rows(data: pd.DataFrame) -> list[dict]:
    return [{n: {n: None if math.isnan(row[n]) else float(row[n])} for n in SENSORS} for _, row in data.iterrows()]


@pytest.fixture(scope="module")
def seven(tmp_path_factory, one_thread):
    """A regression model over seven tabular modalities, its export and rows to explain."""
    run = tmp_path_factory.mktemp("parity_seven") / "run"
    cfg = {"task": "regression", "target": "y",
           "modalities": {n: {"kind": "tabular", "columns": [n], "encoder": {"dim": 4, "hidden": [8]}} for n in SENSORS},
           "fusion": {"name": "concat"}, "head": {"name": "mlp", "hidden": [16]},
           "train": {"epochs": 30, "batch_size": 16, "lr": 0.02, "seed": 0, "progress": False, "num_workers": 0},
           "report": {"rows": 0}}
    predictor = MultimodalPredictor.from_config(cfg).fit(sensor_frame(120, 0), sensor_frame(40, 1), out=run)
    test = sensor_frame(10, 2)
    export_run(predictor, run / "export", data=test)
    return predictor, test, Runtime.load(run / "export")


def counted_runs(runtime: Runtime, monkeypatch) -> list[int]:
    """The graph runs (the onnxruntime session's ``run`` calls) from now on, one entry per call."""
    calls: list[int] = []
    real = runtime.session.run

    def run(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runtime.session, "run", run)
    return calls


@pytest.mark.parametrize("options", [{}, {"seed": 3, "permutations": 8}], ids=["defaults", "seed-3-8-orders"])
def test_beyond_six_modalities_the_runtime_samples_the_orders_pred_explain_samples(seven, monkeypatch, options):
    """The runtime runs the graph once per coalition of the shared plan, not for all 2^7, and gets
    the values ``pred.explain`` gets (sampled with the same seed and orders), not the exact ones."""
    predictor, test, runtime = seven
    plan = runtime.explain_plan(**options)
    assert runtime.names == SENSORS and plan.method == "sampled"
    assert plan.masks == shapley_plan(len(SENSORS), **options).masks
    assert len(plan.masks) < 1 << len(SENSORS)
    rows = sensor_rows(test)
    calls = counted_runs(runtime, monkeypatch)
    phi = runtime.explain(rows, **options)
    assert len(calls) == len(plan.masks)  # one batched run per planned coalition
    explanation = predictor.explain(test, samples=0, **options)
    assert not explanation.exact
    expected = explanation.values[SENSORS].to_numpy()
    tolerance = 1e-5 * float(np.abs(explanation.values["prediction"]).max())
    np.testing.assert_allclose(phi, expected, atol=tolerance)
    np.testing.assert_allclose(phi.sum(axis=1), (explanation.values["prediction"] - explanation.values["base"]).to_numpy(),
                               atol=tolerance)
    assert (phi[np.isnan(test[SENSORS].to_numpy())] == 0).all()  # a sensor a row lacks contributes nothing
    # the check has teeth: the exact values (all 128 coalitions) are another answer on this model
    monkeypatch.setattr(shapley, "EXACT_MAX_MODALITIES", len(SENSORS))
    exact = runtime.explain(rows, **options)
    assert np.abs(exact - expected).max() > 5 * tolerance, np.abs(exact - expected).max() / tolerance


def test_a_quantized_export_runs_each_row_once_per_planned_coalition(seven, monkeypatch):
    """An int8 session runs row by row: B runs per coalition of the plan, where it ran B x 2^M."""
    _, test, runtime = seven
    rows = sensor_rows(test)[:3]
    batched = runtime.explain(rows)
    monkeypatch.setattr(runtime, "quantized", True)
    calls = counted_runs(runtime, monkeypatch)
    np.testing.assert_allclose(runtime.explain(rows), batched, rtol=1e-5, atol=1e-6)
    assert len(calls) == len(rows) * len(runtime.explain_plan().masks) < len(rows) << len(SENSORS)


def test_serve_says_its_values_are_sampled_beyond_six_modalities_and_repeats_them(seven):
    predictor, test, runtime = seven
    row = sensor_rows(test)[7]  # every sensor given
    with TestClient(create_app(runtime, ServeSettings(max_wait_ms=5)), base_url=LOCAL) as client:
        first, again = (client.post("/explain", json=row).json() for _ in range(2))
    assert first["shapley"] == "sampled" and first["reference"] == "none"
    assert again == first  # seeded: the same request, the same answer
    expected = predictor.explain(test.iloc[[7]], samples=0).values.iloc[0]
    scale = abs(float(expected["prediction"]))
    assert first["contributions"] == pytest.approx({n: expected[n] for n in SENSORS}, abs=1e-5 * scale)
    assert first["base"] == pytest.approx(expected["base"], abs=1e-5 * scale)
