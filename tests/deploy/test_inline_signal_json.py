"""A signal sent to the service inline in JSON, as its samples (one list, or one per channel),
answered as the runtime answers the same array; what is not a list of numbers is a 422 naming the
field, and the request size still bounds it."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from polymodal import MultimodalPredictor
from polymodal.deploy.export import export_run
from polymodal.deploy.runtime import Runtime
from polymodal.deploy.server import create_app
from polymodal.deploy.settings import ServeSettings

from .helpers import LOCAL

LENGTH = 32
CLASSES = ["a", "b", "c"]


def samples(k: int, rng: np.random.Generator) -> np.ndarray:
    """(2, LENGTH): two channels whose frequency class ``k`` sets."""
    t = np.arange(LENGTH)
    return np.stack([np.sin(2 * np.pi * (0.05 + 0.1 * k) * t), np.cos(2 * np.pi * (0.05 + 0.1 * k) * t)]
                    ) + 0.1 * rng.standard_normal((2, LENGTH))


@pytest.fixture(scope="module")
def runtime(tmp_path_factory, one_thread) -> Runtime:
    root = tmp_path_factory.mktemp("inline_signals")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(36):
        np.save(root / f"s{i}.npy", samples(i % 3, rng).astype(np.float32))
        rows.append({"sig": f"s{i}.npy", "label": CLASSES[i % 3]})
    frame = pd.DataFrame(rows)
    frame.iloc[:27].to_csv(root / "train.csv", index=False)
    frame.iloc[27:].to_csv(root / "test.csv", index=False)
    cfg = {"task": "classification", "target": "label",
           "modalities": {"sig": {"kind": "signal", "column": "sig", "preprocess": {"length": LENGTH},
                                  "encoder": {"name": "cnn1d", "dim": 8, "channels": [8, 8], "kernel": 5}}},
           "head": {"name": "mlp", "hidden": [8]},
           "train": {"epochs": 1, "batch_size": 8, "seed": 0, "progress": False, "num_workers": 0}}
    predictor = MultimodalPredictor.from_config(cfg).fit(root / "train.csv", root / "test.csv", out=root / "run")
    export_run(predictor, root / "run" / "export", data=root / "test.csv")
    return Runtime.load(root / "run" / "export")


@pytest.fixture(scope="module")
def client(runtime):
    with TestClient(create_app(runtime, ServeSettings(max_request_bytes=20_000, max_wait_ms=1)), base_url=LOCAL) as c:
        yield c


def test_samples_inline_are_answered_as_the_runtime_answers_the_array_and_the_npy(client, runtime):
    signal = samples(1, np.random.default_rng(7)).round(4)
    want = runtime.predict_proba([{"sig": signal}])[0]
    buffer = io.BytesIO()
    np.save(buffer, signal)
    answers = [client.post("/predict", json={"sig": signal.tolist()}),  # one list per channel
               client.post("/predict", json={"sig": signal.T.tolist()}),  # (L, C): the longer axis is time
               client.post("/predict", json={"sig": base64.b64encode(buffer.getvalue()).decode()})]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert np.allclose([answer.json()["probabilities"][c] for c in CLASSES], want, atol=1e-6)
    explained = client.post("/explain", json={"sig": signal.tolist()})
    assert explained.status_code == 200 and explained.json()["prediction"] == CLASSES[int(want.argmax())]


@pytest.mark.parametrize(("value", "fragment"), [
    ([[0.1, 0.2], [0.3]], "one list of numbers per channel, all of one length"),
    ([0.1, "0.2"], "inline samples in JSON must be a list of numbers"),
    ([True, False], "inline samples in JSON must be a list of numbers"),
    ([[[0.1]]], "inline samples in JSON must be a list of numbers"),
    ([0.1, None], "inline samples in JSON must be a list of numbers"),
])
def test_a_list_that_is_no_samples_is_a_422_naming_the_field(client, value, fragment):
    answer = client.post("/predict", json={"sig": value})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "sig" and error["code"] == "bad_input"
    assert error["message"].startswith("modality 'sig' (signal): ") and fragment in error["message"]


def test_samples_of_the_wrong_channel_count_or_none_are_the_runtimes_422(client):
    three = client.post("/predict", json={"sig": np.zeros((3, LENGTH)).tolist()})
    assert three.status_code == 422 and "expected 2 channel(s) as in training" in three.json()["error"]["message"]
    empty = client.post("/predict", json={"sig": []})
    assert empty.status_code == 422 and "holds no samples" in empty.json()["error"]["message"]


def test_the_request_size_bounds_inline_samples(client):
    answer = client.post("/predict", json={"sig": [[0.123456] * 2000] * 2})  # about 34 kB, over the 20,000 bytes
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"


def test_openapi_describes_the_samples_inline(client):
    body = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    field = body["application/json"]["schema"]["properties"]["sig"]
    assert [option["type"] for option in field["anyOf"]] == ["string", "array", "array"]
    assert field["anyOf"][2]["items"] == {"type": "array", "items": {"type": "number"}}
    assert "or the samples inline: a list of numbers, or one list per channel" in field["description"]
