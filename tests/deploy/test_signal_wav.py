"""Signals given as audio-format files (WAV; FLAC with soundfile), end to end: a model trained on
2-channel 16-bit WAV windows exports (its parity check reads them through the numpy runtime), the
runtime featurises them with training's samples, and both refuse alike a file at another rate than
the training files', a corrupt or truncated one, and a ``.npy`` file that holds text. Eager
prediction notes a window cut or padded to the model's length in the runtime's words."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile

from polymodal.config.modalities import SignalModality
from polymodal.data.modalities import build_preprocessor
from polymodal.deploy.errors import RequestError
from polymodal.deploy.export import export_run, modality_meta
from polymodal.deploy.features import SignalFeatures
from polymodal.deploy.runtime import Runtime
from polymodal.errors import DecodeError

from .helpers import CLASSES, LOCAL, signal_run

LENGTH = 64
RATE = 12_000


def stereo(k: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 2) samples in (-1, 1): a vibration whose frequency class ``k`` sets, and a slower channel."""
    t = np.arange(n)
    vib = 0.5 * np.sin(2 * np.pi * (0.05 + 0.08 * k) * t) + 0.05 * rng.standard_normal(n)
    slow = 0.3 * np.sin(2 * np.pi * 0.01 * (k + 1) * t) + 0.05 * rng.standard_normal(n)
    return np.stack([vib, slow], axis=1)


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> Path:
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


@pytest.fixture(scope="module")
def wav_run(tmp_path_factory, one_thread):
    """A model trained on 2-channel 16-bit WAV windows at 12 kHz (lengths either side of the model's
    64) beside a tabular modality, some rows missing the signal."""
    root = tmp_path_factory.mktemp("wav_signals")

    def write(folder, i, k, rng):
        write_wav(folder / f"s{i}.wav", stereo(k, rng, int(rng.integers(40, 90))))
        return f"s{i}.wav"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the windows cut or padded to 64 samples
        predictor, run = signal_run(root, write, LENGTH)
    return predictor, run, root


@pytest.fixture(scope="module")
def wav_export(wav_run):
    predictor, run, root = wav_run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_run(predictor, run / "export", data=root / "test.csv")
    return Runtime.load(run / "export")


def test_a_model_trained_on_wav_signals_exports_with_parity(wav_run, wav_export):
    """The runtime refused WAV signals, so the export's parity check (and the export) failed."""
    _, run, _ = wav_run
    meta = json.loads((run / "export" / "deploy.json").read_text())
    assert meta["modalities"]["sig"]["state"]["n_channels"] == 2
    assert meta["modalities"]["sig"]["state"]["file_rate"] == RATE
    assert meta["parity"]["runtime_max_abs_diff"] <= 1e-4 and meta["parity"]["runtime_rows"] > 0


@pytest.mark.parametrize("frames", [LENGTH, 23, 150])
def test_runtime_features_of_a_stereo_wav_equal_the_training_pipelines(wav_run, wav_export, tmp_path, frames):
    predictor, _, _ = wav_run
    path = write_wav(tmp_path / "x.wav", stereo(1, np.random.default_rng(7), frames))
    prep = predictor.pipeline.preprocessors["sig"]
    want = prep.featurize([prep.decode(str(path))])
    assert want["x"].shape == (1, 2, LENGTH)
    features = wav_export.features["sig"]
    for value in (str(path), path, path.read_bytes()):  # a path (as the parity check and batch use) or an upload
        got = features.transform([value])
        assert got["length"].tolist() == want["length"].tolist() == [min(frames, LENGTH)]
        np.testing.assert_array_equal(got["x"], want["x"])  # the same samples, not a mix-down
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = predictor.predict_proba(pd.DataFrame({"sig": [str(path)], "x1": [1.0]}))
    np.testing.assert_allclose(wav_export.predict_proba([{"sig": str(path), "labs": {"x1": 1.0}}]), eager,
                               atol=1e-5)


def test_eager_prediction_notes_a_window_cut_or_padded_as_the_runtime_does_one_by_one(wav_run, wav_export, tmp_path):
    predictor, _, _ = wav_run
    rng = np.random.default_rng(3)
    short = write_wav(tmp_path / "short.wav", stereo(0, rng, 23))
    long = write_wav(tmp_path / "long.wav", stereo(2, rng, 150))
    runtime = [note for path in (short, long) for note in wav_export.features["sig"].notes(str(path))]
    assert runtime == ["23 samples where the model reads 64: zero-padded to 64",
                       "150 samples where the model reads 64: cropped to its first 64"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor.predict(pd.DataFrame({"sig": [str(short), str(long)], "x1": [1.0, 2.0]}))
    said = [str(w.message) for w in caught if "the model reads" in str(w.message)]
    assert len(said) == 1, said  # one warning for the manifest, a note per direction with its rows
    assert "fewer samples than the 64 the model reads: zero-padded to 64 (row 0)" in said[0]
    assert "more samples than the 64 the model reads: cropped to its first 64 (row 1)" in said[0]


def test_a_copy_at_another_rate_is_refused_by_both_naming_the_rates(wav_run, wav_export, tmp_path):
    """A 48 kHz copy of 12 kHz training windows was read as if it were at 12 kHz."""
    predictor, _, _ = wav_run
    path = write_wav(tmp_path / "fast.wav", stereo(1, np.random.default_rng(1), 200), rate=48_000)
    reason = ("the file's header declares 48,000 Hz; this modality reads signals at 12,000 Hz (the rate of its "
              "training files): resample the file to 12,000 Hz")
    with pytest.raises(DecodeError) as trained:
        predictor.pipeline.preprocessors["sig"].decode(str(path))
    assert trained.value.reason == reason and trained.value.path == str(path)
    for value in (str(path), path.read_bytes()):
        with pytest.raises(RequestError) as runtime:
            wav_export.features["sig"].decode(value)
        assert reason in str(runtime.value)
        assert runtime.value.status == 422 and runtime.value.code == "bad_input" and runtime.value.field == "sig"


def header_44(frames: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros((frames, 2)), RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()[:44]


@pytest.mark.parametrize(("content", "reason"), [
    (b"RIFFxxxxWAVEjunk", "unreadable or corrupt audio ("),  # then libsndfile's words
    (header_44(1000), "truncated WAV: header declares 1000 frames, the file holds 0"),
])
def test_a_corrupt_or_truncated_wav_is_refused_by_both_alike(wav_run, wav_export, tmp_path, content, reason):
    predictor, _, _ = wav_run
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(DecodeError) as trained:
        predictor.pipeline.preprocessors["sig"].decode(str(path))
    assert trained.value.reason.startswith(reason) and trained.value.path == str(path)
    for value in (str(path), content):
        with pytest.raises(RequestError) as runtime:
            wav_export.features["sig"].decode(value)
        assert trained.value.reason in str(runtime.value) and "BytesIO" not in str(runtime.value)
        assert runtime.value.status == 422 and runtime.value.code == "corrupt_file"


def test_a_npy_file_holding_text_is_said_to_lack_the_npy_magic_bytes(wav_run, wav_export, tmp_path):
    """The runtime read it as a CSV: 'the CSV has a header row ['hello world'] and no rows below it'."""
    predictor, _, _ = wav_run
    path = tmp_path / "x.npy"
    path.write_text("hello world")
    with pytest.raises(DecodeError, match=r"not a readable \.npy array \(the magic string is not correct"):
        predictor.pipeline.preprocessors["sig"].decode(str(path))
    with pytest.raises(RequestError) as runtime:
        wav_export.features["sig"].decode(str(path))
    message = str(runtime.value)
    assert "CSV" not in message and runtime.value.code == "corrupt_file"
    assert f"not a .npy array (file {path}): a .npy file starts with the bytes b'\\x93NUMPY'; got 11 bytes " \
           "starting with text 'hello world'" in message


# -- other encodings, without a trained model ------------------------------------------------------
def signal_features(cfg: SignalModality, fit_on: str) -> tuple[object, SignalFeatures]:
    prep = build_preprocessor(cfg, "sig")
    prep.fit([fit_on])
    fake = SimpleNamespace(config=SimpleNamespace(modalities={"sig": cfg}),
                           pipeline=SimpleNamespace(preprocessors={"sig": prep}))
    return prep, SignalFeatures("sig", modality_meta(fake, "sig", []))


@pytest.mark.parametrize(("suffix", "subtype"), [(".flac", "PCM_16"), (".wav", "PCM_24"), (".wav", "FLOAT")])
def test_flac_and_other_wav_encodings_are_featurised_as_in_training(tmp_path, suffix, subtype):
    path = write_wav(tmp_path / f"r{suffix}", stereo(2, np.random.default_rng(4), 100), subtype=subtype)
    cfg = SignalModality(kind="signal", column="sig", preprocess={"length": 64, "sample_rate": RATE})
    prep, features = signal_features(cfg, str(path))
    want = prep.featurize([prep.decode(str(path))])
    for value in (str(path), path.read_bytes()):
        got = features.transform([value])
        assert got["x"].shape == want["x"].shape == (1, 2, 64)
        np.testing.assert_array_equal(got["x"], want["x"])
    slower = write_wav(tmp_path / f"slow{suffix}", stereo(2, np.random.default_rng(4), 100), rate=8_000,
                       subtype=subtype)
    with pytest.raises(RequestError, match=r"declares 8,000 Hz; this modality reads signals at 12,000 Hz "
                                           r"\(preprocess.sample_rate\)"):
        features.decode(slower.read_bytes())


def test_a_wav_signal_is_refused_where_channels_name_csv_columns(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text("vib,temp\n" + "".join(f"{a},{b}\n" for a, b in stereo(0, np.random.default_rng(0), 40)))
    cfg = SignalModality(kind="signal", column="sig", preprocess={"length": 32, "channels": ["vib"]})
    _, features = signal_features(cfg, str(csv))
    wav = write_wav(tmp_path / "r.wav", stereo(0, np.random.default_rng(0), 40))
    with pytest.raises(RequestError, match=r"preprocess.channels names columns \['vib'\], which only a CSV file has; "
                                           r"got a WAV file"):
        features.decode(wav.read_bytes())


def test_the_service_takes_a_wav_signal_upload_and_refuses_flac(wav_run, wav_export, tmp_path):
    """The service listed NPY and CSV alone for a signal, so a model trained on WAV windows could not
    be called with one; FLAC stays refused there (compressed, it could decode far past the request
    limit), naming what is accepted."""
    from fastapi.testclient import TestClient

    from polymodal.deploy.server import create_app
    from polymodal.deploy.settings import ServeSettings

    _, run, _ = wav_run
    rng = np.random.default_rng(5)
    wav = write_wav(tmp_path / "w.wav", stereo(1, rng, LENGTH)).read_bytes()
    flac = io.BytesIO()
    soundfile.write(flac, stereo(1, rng, LENGTH), RATE, format="FLAC")
    with TestClient(create_app(wav_export, ServeSettings(max_wait_ms=1)), base_url=LOCAL) as client:
        answer = client.post("/predict", files={"sig": ("w.wav", wav, "audio/wav")}, data={"x1": "1.0"})
        assert answer.status_code == 200, answer.text
        want = wav_export.predict_proba([{"sig": wav, "labs": {"x1": 1.0}}])[0]
        np.testing.assert_allclose([answer.json()["probabilities"][c] for c in CLASSES], want, atol=1e-5)
        refused = client.post("/predict", files={"sig": ("w.flac", flac.getvalue(), "audio/flac")})
    assert refused.status_code == 415
    assert "accepted: CSV, NPY, WAV" in refused.json()["error"]["message"]
