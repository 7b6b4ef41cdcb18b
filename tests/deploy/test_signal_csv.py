"""Signals given as CSV files, end to end: a model trained on them exports (its parity check reads
them through the numpy runtime), the runtime featurises them exactly as training does, and the
service takes CSV uploads (multipart and base64 JSON), answering a malformed one with a 4xx that
names the problem."""

from __future__ import annotations

import base64
import io
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from polymodal.cli import app as cli_app
from polymodal.config.modalities import SignalModality
from polymodal.data.modalities import build_preprocessor
from polymodal.deploy.errors import RequestError
from polymodal.deploy.export import export_run, modality_meta, runtime_limitation
from polymodal.deploy.features import SignalFeatures
from polymodal.deploy.runtime import Runtime
from polymodal.deploy.server import create_app
from polymodal.deploy.settings import ServeSettings
from polymodal.errors import DecodeError

from .helpers import CLASSES, LOCAL, signal_run

LENGTH = 64


def signal_csv(k: int, rng: np.random.Generator, n: int, *, header: bool = True, newline: str = "\n") -> str:
    """Two channels (a vibration and a temperature) of ``n`` samples; class ``k`` sets both."""
    t = np.arange(n)
    vib = np.sin(2 * np.pi * (0.05 + 0.08 * k) * t) + 0.1 * rng.standard_normal(n)
    temp = 20 + 5 * k + rng.standard_normal(n)
    rows = (["vib,temp"] if header else []) + [f"{a:.5f},{b:.4f}" for a, b in zip(vib, temp)]
    return newline.join(rows) + newline


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory, one_thread):
    """A model trained on CSV signals (most with a header, some without; lengths either side of
    the model's 64; CRLF in some) beside a tabular modality, some rows missing the signal."""
    root = tmp_path_factory.mktemp("csv_signals")

    def write(folder, i, k, rng):
        name = f"s{i}.csv"
        text = signal_csv(k, rng, int(rng.integers(40, 90)), header=i % 5 != 0, newline="\r\n" if i % 4 == 1 else "\n")
        (folder / name).write_text(text, newline="")
        return name

    predictor, run = signal_run(root, write, LENGTH)
    return predictor, run, root


@pytest.fixture(scope="module")
def csv_export(csv_run):
    predictor, run, root = csv_run
    export_run(predictor, run / "export", data=root / "test.csv")
    return Runtime.load(run / "export")


def test_a_model_trained_on_csv_signals_exports_with_parity(csv_run, tmp_path):
    """The user's walkthrough: ``polymodal export RUN --format onnx`` with the run's own manifest;
    its parity check reads the CSV files through the numpy runtime."""
    _, run, _ = csv_run
    result = CliRunner().invoke(cli_app, ["export", str(run), "--format", "onnx", "--out", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    assert "numpy runtime + ONNX vs eager predictor" in result.output
    meta = json.loads((tmp_path / "exp" / "deploy.json").read_text())
    assert meta["modalities"]["sig"]["state"]["n_channels"] == 2
    assert meta["parity"]["runtime_max_abs_diff"] <= 1e-4 and meta["parity"]["runtime_rows"] > 0


CASES = {
    "header": lambda rng: signal_csv(1, rng, LENGTH),
    "no header": lambda rng: signal_csv(2, rng, LENGTH, header=False),
    "shorter than training": lambda rng: signal_csv(0, rng, 23),
    "longer than training": lambda rng: signal_csv(2, rng, 150, header=False),
    "byte-order mark and CRLF": lambda rng: "\ufeff" + signal_csv(1, rng, 70, newline="\r\n"),
    "quotes, blank lines, spaces": lambda rng: '"vib","temp"\n\n' + signal_csv(0, rng, 40, header=False)
                                               .replace(",", " , ").replace("\n", "\n  \n", 3),
    "a missing marker as a column name": lambda rng: "vib,n/a\n" + signal_csv(2, rng, 50, header=False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_runtime_features_of_a_csv_equal_the_training_pipelines(csv_run, csv_export, tmp_path, case):
    predictor, _, _ = csv_run
    path = tmp_path / "x.csv"
    path.write_text(CASES[case](np.random.default_rng(7)), encoding="utf-8", newline="")
    prep = predictor.pipeline.preprocessors["sig"]
    want = prep.featurize([prep.decode(str(path))])
    features = csv_export.features["sig"]
    for value in (str(path), path.read_bytes()):  # a path (as the parity check and batch use) or an upload's bytes
        got = features.transform([value])
        assert got["length"].tolist() == want["length"].tolist()
        assert np.allclose(got["x"], want["x"]) and got["x"].dtype == want["x"].dtype
    eager = predictor.predict(pd.DataFrame({"sig": [str(path)]}), modalities=["sig"])
    assert csv_export.predict([{"sig": str(path)}]) == eager.tolist()


@pytest.mark.parametrize(("text", "where"), [
    ("vib,temp\n0.1,20\n0.2,NA\n0.3,21\n", "channel 1, sample 1 (CSV line 3)"),
    ("0.1260,n/a\n0.2,20\n", "channel 1, sample 0 (CSV line 1)"),  # a missing marker: a sample, not a header
    ("vib,temp\n0.1,20\n\n,21\n", "channel 0, sample 1 (CSV line 4)"),
    ("vib,temp\n0.1,20\n0.2\n", "channel 1, sample 1 (CSV line 3)"),  # a short row
])
def test_missing_markers_are_refused_by_both_naming_the_same_line(csv_run, csv_export, tmp_path, text, where):
    predictor, _, _ = csv_run
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(DecodeError) as trained:
        predictor.pipeline.preprocessors["sig"].decode(str(path))
    assert where in trained.value.reason
    with pytest.raises(RequestError) as runtime:
        csv_export.features["sig"].decode(str(path))
    assert trained.value.reason in str(runtime.value) and str(path) in str(runtime.value)
    assert runtime.value.status == 422 and runtime.value.field == "sig"


def test_the_runtime_takes_a_list_of_samples_as_the_array_it_holds(csv_export):
    """A list was read as a file path ('cannot read the signal file (file [-0.13, ...')."""
    samples = np.random.default_rng(5).standard_normal((2, LENGTH)).round(3)
    want = csv_export.predict_proba([{"sig": samples, "labs": {"x1": 1.5}}])
    got = csv_export.predict_proba([{"sig": samples.tolist(), "labs": {"x1": 1.5}}])
    np.testing.assert_array_equal(got, want)
    with pytest.raises(RequestError, match=r"modality 'sig' \(signal\): expected an array or a list of samples .*"
                                           r"got a dict"):
        csv_export.predict([{"sig": {"vib": [0.1, 0.2]}}])

# -- the service ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(csv_export):
    with TestClient(create_app(csv_export, ServeSettings(max_request_bytes=50_000, max_wait_ms=1)), base_url=LOCAL) as c:
        yield c


def test_metadata_and_openapi_list_csv_for_signals(client):
    assert client.get("/metadata").json()["modalities"]["sig"]["accept"] == ["CSV", "NPY", "WAV"]
    body = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "CSV, NPY, WAV" in body["multipart/form-data"]["schema"]["properties"]["sig"]["description"]
    assert "CSV, NPY, WAV" in body["application/json"]["schema"]["properties"]["sig"]["description"]


def test_serve_takes_a_csv_signal_upload_and_gives_the_runtimes_prediction(client, csv_export):
    data = signal_csv(2, np.random.default_rng(3), 70).encode()
    want = csv_export.predict_proba([{"sig": data, "labs": {"x1": 1.5}}])[0]
    label = CLASSES[int(want.argmax())]
    answers = [
        client.post("/predict", files={"sig": ("reading.csv", data, "text/csv")}, data={"x1": "1.5"}),
        client.post("/predict", json={"sig": base64.b64encode(data).decode(), "labs": {"x1": 1.5}}),
        client.post("/predict", json={"sig": "data:text/csv;base64," + base64.encodebytes(data).decode(),
                                      "labs": {"x1": 1.5}}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["prediction"] == label
        assert np.allclose([body["probabilities"][c] for c in CLASSES], want, atol=1e-6)
    alone = client.post("/explain", files={"sig": ("r.csv", data, "application/octet-stream")})  # content decides
    assert alone.status_code == 200 and alone.json()["prediction"] == csv_export.predict([{"sig": data}])[0]
    buffer = io.BytesIO()
    np.save(buffer, np.loadtxt(io.StringIO(data.decode()), delimiter=",", skiprows=1, dtype=np.float32))
    npy = client.post("/predict", files={"sig": ("r.npy", buffer.getvalue(), "application/octet-stream")})
    assert npy.status_code == 200 and npy.json()["prediction"] == csv_export.predict([{"sig": buffer.getvalue()}])[0]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(("content", "status", "code", "fragment"), [
    (b"vib,temp\n0.1,20\n0.2,hot\n", 422, "corrupt_file", "CSV line 3, column 'temp' holds 'hot'; signal samples must be numbers"),
    (b"vib,temp\n0.1,20\n0.2,21,22\n", 422, "corrupt_file", "CSV line 3 has 3 fields, more than the 2 of its header row"),
    (b"vib,temp\n", 422, "corrupt_file", "the signal holds no samples"),
    (b"vib,temp\n0.1,20\n0.2,n/a\n", 422, "bad_input", "the first (nan) at channel 1, sample 1 (CSV line 3)"),
    (b"a,b,c\n1,2,3\n4,5,6\n", 422, "bad_input", "expected 2 channel(s) as in training; got a CSV file of 3 channel "
                                                "column(s)"),
    (npy_bytes(np.zeros((70, 3), np.float32)), 422, "bad_input", "expected 2 channel(s) as in training; got an array "
     "of shape (70, 3), read as 3 channel(s) of 70 samples (preprocess.layout auto: the longer axis is time)"),
    (b"vib,temp\n1e999,20\n", 422, "bad_input", "the first (inf) at channel 0, sample 0 (CSV line 2)"),
    ("vib,temp\n0,20\n# caf\u00e9\n".encode("latin-1"), 415, "unsupported_type", "accepted: CSV, NPY, WAV"),
    (b"PK\x03\x04\x14\x00\x00\x00", 415, "unsupported_type", "accepted: CSV, NPY, WAV"),
    (b"\x93NUMPY\x01\x00garbage", 422, "corrupt_file", "not a readable .npy array"),
])
def test_a_malformed_csv_upload_is_a_4xx_naming_the_problem(client, content, status, code, fragment):
    for answer in (client.post("/predict", files={"sig": ("bad.csv", content, "text/csv")}),
                   client.post("/predict", json={"sig": base64.b64encode(content).decode()})):
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert error["code"] == code and error["field"] == "sig" and fragment in error["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.text(alphabet=st.sampled_from(list("0123456789.,-+eE \t\r\n\"naNA?x")), max_size=80)
                         .map(str.encode),
                         st.builds(lambda head, rest: head + rest, st.sampled_from([b"vib,temp\n", b"", b"\xef\xbb\xbf"]),
                                   st.binary(max_size=60))))
def test_whatever_the_bytes_the_runtime_answers_with_a_request_error(csv_export, content):
    try:
        csv_export.features["sig"].decode(content)
    except RequestError as err:
        assert 400 <= err.status < 500 and err.field == "sig"


# -- channels, and what export still refuses --------------------------------------------------
def signal_features(cfg: SignalModality, fit_on: str) -> tuple[object, SignalFeatures]:
    prep = build_preprocessor(cfg, "sig")
    prep.fit([fit_on])
    fake = SimpleNamespace(config=SimpleNamespace(modalities={"sig": cfg}),
                           pipeline=SimpleNamespace(preprocessors={"sig": prep}))
    return prep, SignalFeatures("sig", modality_meta(fake, "sig", []))


@pytest.mark.parametrize("channels", [["temp", "vib"], ["temp"], [1], [-1, 0]])
def test_channels_by_csv_column_name_or_index_are_selected_as_in_training(tmp_path, channels):
    path = tmp_path / "r.csv"
    lines = signal_csv(1, np.random.default_rng(0), 40).splitlines()
    path.write_text("\n".join(f"{t}," + line for t, line in zip(["time", *range(40)], lines)) + "\n")
    cfg = SignalModality(kind="signal", column="sig", preprocess={"length": 32, "channels": channels,
                                                                  "normalize": "none"})
    assert runtime_limitation(cfg) is None
    prep, features = signal_features(cfg, str(path))
    want = prep.featurize([prep.decode(str(path))])
    got = features.transform([path.read_bytes()])
    assert got["x"].shape == want["x"].shape == (1, len(channels), 32)
    np.testing.assert_allclose(got["x"], want["x"])
    if isinstance(channels[0], str):  # names only a CSV has: an array is refused, as in training
        np.save(tmp_path / "r.npy", np.zeros((40, 3), np.float32))
        with pytest.raises(DecodeError, match="which only a .csv file has"):
            prep.decode(str(tmp_path / "r.npy"))
        with pytest.raises(RequestError, match="which only a CSV file has"):
            features.decode((tmp_path / "r.npy").read_bytes())


@pytest.mark.parametrize("key", ["fe", None])
def test_a_npz_signal_is_featurised_as_in_training_with_or_without_preprocess_key(tmp_path, key):
    """The runtime said 'neither a .npy array nor a CSV file' of the .npz files training read, and
    export refused preprocess.key, which picks one of their arrays."""
    rng = np.random.default_rng(4)
    path = tmp_path / "r.npz"
    np.savez(path, **({"de": rng.standard_normal((40, 2)), "fe": rng.standard_normal((40, 2))} if key
                      else {"data": rng.standard_normal((40, 2)), "ba": np.zeros(3)}))
    cfg = SignalModality(kind="signal", column="sig", preprocess={"length": 32, "key": key})
    assert runtime_limitation(cfg) is None
    prep, features = signal_features(cfg, str(path))
    want = prep.featurize([prep.decode(str(path))])
    for value in (path, path.read_bytes()):
        got = features.transform([value])
        assert got["x"].shape == want["x"].shape == (1, 2, 32)
        np.testing.assert_allclose(got["x"], want["x"], rtol=1e-6)


def test_export_still_refuses_what_the_runtime_cannot_read():
    resampled = SignalModality(kind="signal", column="sig", preprocess={"sample_rate": 100, "resample_to": 50})
    assert "resampling" in runtime_limitation(resampled)
