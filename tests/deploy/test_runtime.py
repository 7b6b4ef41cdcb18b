"""The numpy + onnxruntime runtime: torch-free, input forms, row validation, explanations."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from polymodal.deploy.errors import RequestError
from polymodal.deploy.features import read_wav
from polymodal.deploy.runtime import Runtime

from .helpers import RATE, png_bytes, tone, wav_bytes


@pytest.fixture(scope="module")
def runtime(exported) -> Runtime:
    return Runtime.load(exported[0])


def test_runs_with_torch_unimportable(exported, dataset):
    script = (
        "import sys; sys.modules['torch'] = None\n"  # any 'import torch' now raises ImportError
        "from polymodal.deploy.runtime import Runtime\n"
        f"rt = Runtime.load({str(exported[0])!r})\n"
        f"print(rt.predict([{{'image': {str(dataset['root'] / 'i2.png')!r}, 'notes': 'blue large'}}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("['a']", "['b']", "['c']")


def test_a_run_folder_given_for_its_export_is_named_with_the_export_or_the_command(exported, tmp_path):
    folder, _ = exported
    run = folder.parent  # a run folder whose export/ is written
    with pytest.raises(FileNotFoundError) as info:
        Runtime.load(run)
    assert str(info.value) == (f"{run} is not an export folder: deploy.json not found; it is a run folder: load its "
                               f"export, Runtime.load('{folder}')")
    unexported = tmp_path / "anom"
    unexported.mkdir()
    (unexported / "config.yaml").write_text("task: anomaly\n")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"it is a run folder with no export yet: write it with 'polymodal export {unexported}', then "
            f"Runtime.load('{unexported / 'export'}')")):
        Runtime.load(unexported)
    with pytest.raises(FileNotFoundError, match=re.escape("not found (write one with 'polymodal export RUN')")):
        Runtime.load(tmp_path)


def test_arrays_and_bytes_give_the_same_result(runtime):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (10, 12), dtype=np.uint8)
    wav = wav_bytes(tone(1, rng))
    samples, rate = read_wav(wav)
    from_files = runtime.predict_proba([{"image": png_bytes(pixels), "audio": wav}])
    from_arrays = runtime.predict_proba([{"image": pixels, "audio": (samples, rate)}])
    np.testing.assert_array_equal(from_files, from_arrays)


@pytest.mark.parametrize("value", ["!!!", "", "cafe\u0301 blue", "blue large", "नमस्ते blue", "我喜欢 blue",
                                   "No blue, not 3.5 or 1,000!", "number 2.5", "It can't be \u2018blue\u2019, couldn\u2019t"])
def test_text_is_tokenized_as_in_training(runtime, trained, value):
    """Including a text that cleans to nothing (one unknown token), a decomposed accent, negations
    (which ``stopwords: true`` keeps), numbers with a decimal point or a thousands separator and
    contractions (an apostrophe inside a word deleted, quotes around one stripped)."""
    predictor, _ = trained
    prep = predictor.pipeline.preprocessors["notes"]
    assert runtime.features["notes"].decode(value) == prep.decode(value)
    assert runtime.features["notes"].clean(value) == prep._clean(value)
    if value.startswith("No"):
        assert runtime.features["notes"].clean(value) == "no blue not 3.5 1,000"
    if value.startswith("It"):
        assert runtime.features["notes"].clean(value) == "cant blue couldnt"
    if not value.strip("!"):
        assert runtime.features["notes"].decode(value) == [1]
    if value:
        assert np.isfinite(runtime.predict_proba([{"notes": value}])).all()
    else:  # an empty cell: the modality is missing, as in a manifest
        with pytest.raises(RequestError, match="no modality given"):
            runtime.predict_proba([{"notes": value}])


def test_an_audio_array_is_read_as_training_reads_one(runtime, trained, tmp_path):
    """Stereo (samples, channels) mixed down, integer PCM scaled: not interleaved into one long clip."""
    predictor, _ = trained
    rng = np.random.default_rng(3)
    stereo = (rng.uniform(-0.5, 0.5, (4000, 2)) * 32767).astype(np.int16)
    np.save(tmp_path / "clip.npy", stereo)
    rate = predictor.config.modalities["audio"].preprocess.sample_rate
    served = runtime.features["audio"].decode((stereo, rate))
    trained_on = predictor.pipeline.preprocessors["audio"].decode(str(tmp_path / "clip.npy"))
    np.testing.assert_allclose(served[0], trained_on[0], atol=1e-6)
    assert served[1] == trained_on[1]
    with pytest.raises(RequestError, match=r"modality 'audio' \(audio\): an array of samples needs its sample rate: "
                                           r"give \(samples, sample_rate\); got an array of shape \(4000, 2\) alone"):
        runtime.features["audio"].decode(stereo)  # not read as a file named by the array's text


def test_a_npy_waveform_is_read_as_training_reads_it_at_the_models_rate(runtime, trained, tmp_path):
    """A .npy cell trains and predicts in Python; the runtime refused it as 'not a readable audio file'."""
    import pandas as pd

    predictor, _ = trained
    rng = np.random.default_rng(5)
    clips = {"mono.npy": tone(1, rng), "pcm.npy": (tone(2, rng) * 32767).astype(np.int16),
             "stereo.npy": np.stack([tone(0, rng), tone(0, rng)], axis=1)}
    features, prep = runtime.features["audio"], predictor.pipeline.preprocessors["audio"]
    for name, clip in clips.items():
        np.save(tmp_path / name, clip)
        path = str(tmp_path / name)
        served, trained_on = features.decode(path), prep.decode(path)
        np.testing.assert_allclose(served[0], trained_on[0], atol=1e-6)
        assert served[1] == trained_on[1]
        np.testing.assert_allclose(features.decode((tmp_path / name).read_bytes())[0], trained_on[0], atol=1e-6)
        assert features.notes(path) == []  # no rate of its own: at the model's, not resampled
    paths = [str(tmp_path / name) for name in clips]
    frame = pd.DataFrame({"audio": paths, "text": "red", "x1": 0.0, "color": "red"})  # no image, as in the rows
    rows = [{"audio": p, "notes": "red", "labs": {"x1": 0.0, "color": "red"}} for p in paths]
    with pytest.warns(UserWarning, match="no column 'image'"):
        expected = predictor.predict_proba(frame).to_numpy()
    np.testing.assert_allclose(runtime.predict_proba(rows), expected, atol=1e-4)
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4), np.float32))
    said = f"expected a .npy array of samples (file '{tmp_path / 'cube.npy'}')"
    with pytest.raises(RequestError, match=re.escape(said) + r".*got dtype float32, shape \(2, 3, 4\)"):
        features.decode(str(tmp_path / "cube.npy"))


def test_a_quantized_runtime_gives_every_row_its_answer_alone(exported, dataset):
    """Dynamic int8 quantises activations with one scale per input tensor: batched together (as the
    server's micro-batching does), rows changed each other's answers. The int8 runtime runs rows
    one by one, so any batch gives exactly the answers of the rows alone."""
    from polymodal.data.manifest import read_manifest
    from polymodal.deploy.parity import manifest_rows

    runtime = Runtime.load(exported[0], quantized=True)
    rows = manifest_rows(runtime, read_manifest(dataset["test"]), 18)
    alone = np.concatenate([runtime.predict_proba([row]) for row in rows])
    np.testing.assert_array_equal(runtime.predict_proba(rows), alone)
    np.testing.assert_array_equal(runtime.predict_proba(rows[5:12]), alone[5:12])
    feeds = runtime.transform(rows)  # what the micro-batcher runs
    np.testing.assert_array_equal(runtime.scores(runtime.run(feeds)), alone)


def test_rows_are_validated(runtime):
    with pytest.raises(RequestError, match=r"row 1: unknown modalities \['video'\]; this model has"):
        runtime.predict([{"notes": "red"}, {"video": b""}])
    with pytest.raises(RequestError, match="row 0: no modality given"):
        runtime.predict([{"notes": None}])
    with pytest.raises(RequestError, match="modality 'image' .*not a recognised image"):
        runtime.predict([{"image": b"GIF89a-not-really"}])


def test_a_file_of_another_kind_is_said_to_look_like_what_it_is(runtime):
    """As the service says it: a WAV given as the image, a PNG as the audio."""
    with pytest.raises(RequestError, match=r"not a recognised image \(PNG, .*\): it looks like a WAV audio file"):
        runtime.predict([{"image": wav_bytes(np.zeros(800, np.float32))}])
    with pytest.raises(RequestError, match=r"not a readable audio file \(WAV, FLAC, OGG\): it looks like a PNG image"):
        read_wav(png_bytes(np.zeros((4, 4, 3), np.uint8)))


def test_a_wav_with_a_chunk_past_the_end_is_an_unsupported_file():
    data = b"RIFF" + (16).to_bytes(4, "little") + b"WAVEjunk" + (1 << 24).to_bytes(4, "little") + b"\0" * 4
    with pytest.raises(RequestError, match="not a readable audio file") as info:
        read_wav(data)
    assert info.value.status == 415


def test_a_compressed_file_that_would_decode_past_the_budget_is_refused_from_its_header():
    """8 channels at 96 kHz: 768,000 samples in a second of silence a few KB long, more than 192 kHz
    stereo would decode to (384,000); 44.1 kHz stereo is read."""
    import soundfile

    def flac(rate: int, channels: int) -> bytes:
        buffer = io.BytesIO()
        soundfile.write(buffer, np.zeros((rate, channels), np.float32), rate, format="FLAC")
        return buffer.getvalue()

    with pytest.raises(RequestError, match=r"96,000 Hz x 8 channel\(s\): 768,000 samples to decode, more than "
                                           r"the 384,000 allowed") as info:
        read_wav(flac(96_000, 8), max_seconds=1.0)
    assert info.value.status == 413 and info.value.code == "too_large"
    samples, rate = read_wav(flac(44_100, 2), max_seconds=1.0)
    assert rate == 44_100 and samples.shape == (44_100,)
    assert read_wav(flac(96_000, 8))[0].shape == (96_000,)  # no limit asked: read (the Python runtime's files)


def test_a_truncated_wav_is_refused_as_a_corrupt_file(monkeypatch):
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(b"\x01\x02" * 50)
    data = buffer.getvalue()[:44] + b"\x01\x02\x03"  # claims 50 frames, holds 1
    monkeypatch.setitem(sys.modules, "soundfile", None)  # decided without libsndfile
    with pytest.raises(RequestError, match="header declares 50 frames, the file holds 1") as info:
        read_wav(data)
    assert info.value.code == "corrupt_file" and info.value.status == 422


def test_explain_is_exact_shapley_over_presence_masks(runtime):
    names = runtime.names  # audio, image, labs, notes
    rows = [{"image": png_bytes(np.full((10, 12), 200, np.uint8)), "notes": "blue large", "labs": {"x1": 2.0}},
            {"notes": "red small"}]
    phi = runtime.explain(rows)
    feeds = runtime.transform(rows)
    proba = runtime.predict_proba(rows)
    none = runtime.scores(runtime.run({**feeds, **{f"{n}.present": np.zeros(2, bool) for n in names}}))
    k = proba.argmax(axis=1)
    assert phi[:, names.index("audio")].tolist() == [0.0, 0.0]  # never given: no contribution
    np.testing.assert_allclose(phi.sum(axis=1), proba[[0, 1], k] - none[[0, 1], k], atol=1e-6)  # efficiency
    # a row with one modality: its Shapley value is all of the change from no input
    assert phi[1, names.index("notes")] == pytest.approx(proba[1, k[1]] - none[1, k[1]], abs=1e-6)
    assert phi[1, names.index("image")] == 0.0


def test_image_limits_follow_the_model(runtime):
    features = runtime.features["image"]
    features.cfg = {**features.cfg, "max_pixels": 1000}
    try:
        with pytest.raises(RequestError, match="image is 100x40 = 4,000 pixels; at most 1,000"):
            features.decode(png_bytes(np.zeros((40, 100), np.uint8)))
    finally:
        features.cfg = {**features.cfg, "max_pixels": 50_000_000}


def test_a_signal_npy_whose_header_promises_terabytes_is_a_corrupt_file():
    from polymodal.deploy.features import SignalFeatures

    meta = {"kind": "signal", "preprocess": {}, "state": {"n_channels": 1}, "inputs": {}}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1, 10**12)})
    with pytest.raises(RequestError, match="modality 'vib' .*4,000,000,000,000 bytes.*truncated or corrupt") as info:
        SignalFeatures("vib", meta).decode(header.getvalue() + b"\0" * 64)
    assert info.value.code == "corrupt_file" and info.value.status == 422


def test_a_signal_cropped_or_padded_to_the_models_length_is_noted():
    """A 1,000-sample window given to a model of 2,048 was zero-padded and misread without a word."""
    from polymodal.deploy.features import SignalFeatures

    signal = SignalFeatures("vib", {"kind": "signal", "preprocess": {"length": 4, "crop": "center"},
                                    "state": {"n_channels": 1}, "inputs": {}})
    assert signal.notes(np.arange(4.0)) == []
    assert signal.notes(np.arange(6.0)) == ["6 samples where the model reads 4: cropped to its central 4"]
    assert signal.notes(np.arange(3.0)) == ["3 samples where the model reads 4: zero-padded to 4"]
    # a flat channel: a sensor disconnected or stuck, which a model of live signals may read as ordinary
    assert signal.notes(np.ones(6)) == ["6 samples where the model reads 4: cropped to its central 4",
                                        "channel 0 holds one value throughout (1): a disconnected or stuck sensor?"]


def test_a_text_cut_to_the_models_tokens_or_cleaned_to_nothing_is_noted():
    """A 10,000-character text cut to 16 tokens, or '!!!' read as one unknown token, said nothing."""
    from polymodal.deploy.features import TextFeatures

    meta = {"kind": "text", "preprocess": {"lowercase": True, "strip_punctuation": True, "stopwords": False,
                                           "tokenizer": "word", "max_tokens": 3},
            "state": {"vocab": ["[PAD]", "[UNK]", "pump", "hums"]}, "inputs": {}}
    text = TextFeatures("notes", meta)
    assert text.notes("the pump hums") == []
    assert text.notes("the pump hums loudly today") == ["5 tokens where the model reads 3: cut to its first 3"]
    assert text.notes("!!! ...") == ["the text holds no word once cleaned (punctuation, stop words): read as one "
                                     "unknown token"]


def test_signal_and_audio_arrays_are_taken_or_refused_as_training_takes_them():
    from polymodal.deploy.features import AudioFeatures, SignalFeatures

    signal = SignalFeatures("vib", {"kind": "signal", "preprocess": {"length": 4, "crop": "start"},
                                    "state": {"n_channels": 1}, "inputs": {}})
    with pytest.raises(RequestError, match="real-valued numeric"):
        signal.decode(np.ones(4, np.complex64))  # the imaginary part is not dropped silently
    x, valid, held = signal.decode(np.array([True, False, True, True]))  # booleans read as 0/1, as training does
    assert x.tolist() == [[1.0, 0.0, 1.0, 1.0]] and valid == held == 4
    wide = SignalFeatures("vib", {"kind": "signal", "preprocess": {"length": 2, "crop": "start", "layout": "channels_first"},
                                  "state": {"n_channels": 3}, "inputs": {}})
    short = np.arange(6, dtype=np.float32).reshape(3, 2)  # 3 channels of 2 samples: auto would read 2 channels
    assert wide.decode(short)[0].tolist() == short.tolist()
    with pytest.raises(RequestError, match=r"expected 3 channel\(s\) as in training; got an array of shape \(2, 3\)"):
        wide.decode(short.T)  # the same layout as in training, or the wrong channels
    audio = AudioFeatures("a", {"preprocess": {"sample_rate": 8000, "max_seconds": 0.1, "frame_ms": 25, "hop_ms": 10,
                                               "crop": "start", "features": "waveform"}, "state": {}, "inputs": {}})
    with pytest.raises(RequestError, match="sample rate must be positive"):
        audio.decode((np.zeros(10, np.float32), 0))



def _signal(n_channels: int, **preprocess: object):
    from polymodal.deploy.features import SignalFeatures

    return SignalFeatures("vib", {"kind": "signal", "preprocess": {"length": 8, "crop": "start", **preprocess},
                                  "state": {"n_channels": n_channels}, "inputs": {}})


def test_a_signal_of_the_wrong_channels_is_named_by_the_shape_sent_and_how_it_was_read():
    """(2048, 2) was reported as 'an array of shape (2, 2048)': the shape after the layout turned it."""
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2048, 2), np.float32))
    for sent in (np.zeros((2048, 2), np.float32), buffer.getvalue()):
        with pytest.raises(RequestError) as info:
            _signal(1).decode(sent)
        assert ("expected 1 channel(s) as in training; got an array of shape (2048, 2), read as 2 channel(s) of 2,048 "
                "samples (preprocess.layout auto: the longer axis is time)") in str(info.value)
    with pytest.raises(RequestError, match=r"got an array of shape \(3, 2, 2\)$"):
        _signal(1).decode(np.zeros((3, 2, 2)))


def test_a_list_of_samples_is_read_as_the_array_it_holds():
    samples = [0.5, -1.0, 2.0, 0.25]
    x, valid, held = _signal(1).decode(samples)
    np.testing.assert_array_equal(x, _signal(1).decode(np.asarray(samples))[0])
    assert x[0, :4].tolist() == samples and valid == held == 4
    two = [[1, 2, 3], [4, 5, 6]]
    assert _signal(2).decode(two)[0][:, :3].tolist() == two and _signal(2).decode(tuple(two))[1] == 3
    with pytest.raises(RequestError, match="a list of samples must hold numbers"):
        _signal(2).decode([[1, 2, 3], [4, 5]])  # channels of unequal length
    with pytest.raises(RequestError, match="a list of samples must hold numbers"):
        _signal(1).decode(["0.1", "0.2"])
    with pytest.raises(RequestError, match=r"expected an array or a list of samples .*a \.npz archive, a CSV file or "
                                           r"an audio file \(WAV, FLAC, OGG\); got a float"):
        _signal(1).decode(0.5)


@pytest.mark.parametrize("arrays, key", [({"de": np.arange(10.0)}, None),
                                         ({"de": np.arange(10.0), "data": np.arange(10.0)[::-1].copy()}, None),
                                         ({"de": np.arange(10.0), "fe": -np.arange(10.0)}, "fe"),
                                         ({"de": np.arange(20.0).reshape(10, 2)}, None)],
                         ids=["only array", "data among several", "preprocess.key", "(samples, channels)"])
def test_a_npz_signal_gives_the_array_training_reads(arrays, key, tmp_path):
    """The runtime said 'neither a .npy array nor a CSV file' of the .npz files training reads."""
    from polymodal.data.modalities.signal import read_signal

    path = tmp_path / "rec.npz"
    np.savez_compressed(path, **arrays)
    want = read_signal(str(path), key)
    features = _signal(want.shape[0], key=key, length=10)
    for value in (path, str(path), path.read_bytes()):
        x, valid, _ = features.decode(value)
        np.testing.assert_array_equal(x, want)
        assert valid == 10


def test_a_npz_signal_without_the_array_training_would_choose_is_refused_naming_its_arrays(tmp_path):
    path = tmp_path / "rec.npz"
    np.savez(path, de=np.zeros(10), fe=np.zeros(10))
    with pytest.raises(RequestError, match=r"holds arrays \['de', 'fe'\]: several, none named 'data'; training "
                                           "chooses one with preprocess.key"):
        _signal(1).decode(path)
    with pytest.raises(RequestError, match=r"no array named 'ba' \(preprocess.key\) in the .npz archive \(file .*\); "
                                           r"it holds \['de', 'fe'\]"):
        _signal(1, key="ba").decode(path)
    with pytest.raises(RequestError, match="not a readable .npz archive") as info:
        _signal(1).decode(path.read_bytes()[:40])
    assert info.value.code == "corrupt_file"

def test_a_truncated_float_wav_is_refused_too():
    """Float and 24-bit WAVs go through libsndfile, which would read the cut file as a shorter clip."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(800, np.float32), 8000, format="WAV", subtype="FLOAT")
    data = buffer.getvalue()
    with pytest.raises(RequestError, match="header declares 800 frames, the file holds 2") as info:
        read_wav(data[:len(data) - 798 * 4])
    assert info.value.code == "corrupt_file"
    samples, rate = read_wav(data)
    assert len(samples) == 800 and rate == 8000


def test_an_export_of_a_later_format_is_refused_not_misread(exported, tmp_path):
    import json
    import shutil

    from polymodal.deploy.errors import ExportError
    from polymodal.deploy.runtime import FORMAT_VERSION, META_FILE

    folder = shutil.copytree(exported[0], tmp_path / "later")
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    # its text deletes an apostrophe inside a word ("can't" is 'cant'): a runtime of format 6 would not
    assert meta["format_version"] == 7 <= FORMAT_VERSION
    meta["format_version"] = FORMAT_VERSION + 1
    (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ExportError, match=f"export format {FORMAT_VERSION + 1}; this runtime reads formats up to"):
        Runtime.load(folder)


def test_a_runtime_of_format_6_refuses_an_export_that_joins_apostrophes(exported, monkeypatch):
    """It would read "can't" as 'can t', words its model never learnt: refused, not misread."""
    import polymodal.deploy.runtime as runtime_module
    from polymodal.deploy.errors import ExportError

    monkeypatch.setattr(runtime_module, "FORMAT_VERSION", 6)
    with pytest.raises(ExportError, match="export format 7; this runtime reads formats up to 6"):
        Runtime.load(exported[0])


def test_audio_resampled_cut_or_silent_is_noted(runtime):
    """As a signal of another length is: the model reads 0.25 s at 8 kHz."""
    def wave(seconds: float, rate: int) -> np.ndarray:
        return np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate).astype(np.float32)

    def notes(row):  # the audio's own (the others are left out: a note of their own, tested below)
        return [n for n in runtime.notes(row) if n.startswith("modality 'audio', ")]

    assert notes({"audio": (wave(0.6, 44_100), 44_100)}) == [
        "modality 'audio', 44,100 Hz resampled to the model's 8,000 Hz",
        "modality 'audio', 0.60 s where the model reads 0.25 s: cut to its first 0.25 s"]
    assert notes({"audio": (wave(0.2, 8000), 8000)}) == []  # shorter at its rate: padded, as trained
    assert notes({"audio": (np.zeros(1600, np.float32), 8000)}) == [
        "modality 'audio', the audio is silent (one value throughout): a muted or disconnected microphone?"]


def test_a_model_never_trained_with_a_modality_missing_notes_the_modalities_a_row_leaves_out(exported, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(exported[0], tmp_path / "export")
    meta = json.loads((folder / "deploy.json").read_text())
    # training rows lacked image, audio or notes; none lacked labs (its 'color' cell is never empty)
    assert meta["untrained_absent"] == ["labs"]
    row = {"audio": (tone(1, np.random.default_rng(0)), RATE), "notes": "red"}
    assert not any("never trained" in n for n in Runtime.load(folder).notes({**row, "labs": {"x1": 1.0, "color": "red"}}))
    meta["untrained_absent"] = ["image", "labs"]
    (folder / "deploy.json").write_text(json.dumps(meta))
    notes = Runtime.load(folder).notes(row)
    assert ("modalities 'image', 'labs' not given, and this model never trained without them: its answer "
            "from the others may be far less accurate") in " ".join(notes)
    meta["untrained_absent"] = ["labs"]  # image was missing from some training rows: only labs is named
    (folder / "deploy.json").write_text(json.dumps(meta))
    assert [n for n in Runtime.load(folder).notes(row) if "never trained" in n] == [
        "modality 'labs' not given, and this model never trained without it: its answer from the others may be far "
        "less accurate than with all of them (train with train.modality_dropout for predictions from a subset)"]
    del meta["untrained_absent"]
    meta["missing_trained"] = False  # an export made before 2026-12-07 said only whether any was ever missing
    (folder / "deploy.json").write_text(json.dumps(meta))
    assert "modalities 'image', 'labs' not given" in " ".join(Runtime.load(folder).notes(row))
    full = {**row, "image": png_bytes(np.zeros((8, 8), np.uint8)), "labs": {"x1": 1.0, "color": "red"}}
    assert not any("never trained" in n for n in Runtime.load(folder).notes(full))


def _with_on_error(exported, tmp_path, on_error):
    """A copy of the export whose deploy.json records ``on_error`` (None: no record, as exports
    written before it)."""
    import json
    import shutil

    folder = shutil.copytree(exported[0], tmp_path / f"export_{on_error}")
    meta = json.loads((folder / "deploy.json").read_text())
    meta.pop("on_error")
    if on_error is not None:
        meta["on_error"] = on_error
    (folder / "deploy.json").write_text(json.dumps(meta))
    return Runtime.load(folder)


def test_the_export_records_the_runs_on_error(exported, trained):
    assert exported[1].folder.joinpath("deploy.json").read_text().count('"on_error": "raise"') == 1
    assert Runtime.load(exported[0]).features["labs"].on_error == trained[0].config.data.on_error == "raise"


@pytest.mark.parametrize("value", [">200", "38,5", "inf"])
def test_an_unreadable_number_reads_as_missing_under_on_error_missing_as_in_training(exported, trained, tmp_path,
                                                                                     value):
    """The runtime follows the run's data.on_error for a table's cell that is no number: under
    ``missing`` it is imputed as a blank one (the same answer as the predictor's), with a note
    naming the column and the value; a table left with nothing readable is a missing modality."""
    import warnings

    import pandas as pd

    runtime = _with_on_error(exported, tmp_path, "missing")
    bad = {"notes": "The blue one", "labs": {"x1": value, "color": "red"}}
    blank = {"notes": "The blue one", "labs": {"x1": None, "color": "red"}}
    np.testing.assert_allclose(runtime.predict_proba([bad]), runtime.predict_proba([blank]), atol=1e-6)
    why = {">200": "must be numeric; got '>200'", "38,5": "must be numeric; got '38,5' (a decimal comma? write 38.5)",
           "inf": "holds an infinite value"}[value]
    assert runtime.notes(bad) == [f"modality 'labs', column 'x1' {why}: read as missing (data.on_error: missing)"]
    predictor = trained[0]
    predictor.config.data.on_error = "missing"
    try:
        with warnings.catch_warnings():  # the modalities left out, the cell read as missing: warned, not the point
            warnings.simplefilter("ignore")
            eager = predictor.predict_proba(pd.DataFrame({"text": ["The blue one"], "x1": [value], "color": ["red"]}))
    finally:
        predictor.config.data.on_error = "raise"
    np.testing.assert_allclose(runtime.predict_proba([bad]), eager.to_numpy(), atol=1e-5)
    only_bad = {"notes": "The blue one", "labs": {"x1": value}}  # nothing of the table readable: it is missing
    np.testing.assert_allclose(runtime.predict_proba([only_bad]), runtime.predict_proba([{"notes": "The blue one"}]),
                               atol=1e-6)
    assert "labs" in " ".join(runtime.notes(only_bad))
    with pytest.raises(RequestError, match=r"no modality left to predict from: modality 'labs', column 'x1' .*read as "
                                           r"missing") as raised:
        runtime.transform([{"labs": {"x1": value}}])
    assert raised.value.code == "missing_input"


@pytest.mark.parametrize("on_error", ["raise", "skip", None])
def test_an_unreadable_number_is_refused_unless_on_error_is_missing(exported, tmp_path, on_error):
    runtime = _with_on_error(exported, tmp_path, on_error)
    said = f" (data.on_error: {on_error})" if on_error is not None else ""  # an older export: as before
    with pytest.raises(RequestError, match=rf"column 'x1' must be numeric; got '>200'{re.escape(said)}$") as raised:
        runtime.transform([{"notes": "red", "labs": {"x1": ">200", "color": "red"}}])
    assert raised.value.code == "bad_input" and raised.value.status == 422
    assert runtime.notes({"labs": {"x1": ">200"}}) == []


def test_a_tables_unknown_column_is_refused_naming_the_row_the_modality_and_the_columns(runtime):
    """A misspelt column ('temprature') was ignored and the real one imputed without a word, where
    the service refused it: both now refuse it by the one rule (``TabularFeatures.check``)."""
    allowed = "allowed ['x1', 'color']"
    with pytest.raises(RequestError, match=re.escape(f"row 1: tabular modality 'labs' has no columns ['colour'] (did "
                                                     f"you mean 'color'?); {allowed}")) as info:
        runtime.predict_proba([{"notes": "red"}, {"notes": "red", "labs": {"x1": 1.0, "colour": "red"}}])
    assert (info.value.code, info.value.status, info.value.field, info.value.row) == ("unknown_field", 422, "labs", 1)
    # a table holding nothing but unknown columns, empty ones too (which would read as an absent table)
    with pytest.raises(RequestError, match=re.escape(f"row 0: tabular modality 'labs' has no columns ['height', "
                                                     f"'x2']; {allowed}")):
        runtime.predict([{"notes": "red", "labs": {"x2": 3, "height": None}}])
    assert runtime.notes({"labs": {"x1": 1.0, "color": "red"}}) == []  # the known columns: nothing to say


def test_a_file_that_cannot_be_read_is_refused_naming_the_row_the_modality_and_the_path(runtime, tmp_path):
    """A missing file gave a bare FileNotFoundError; an empty one 'not a recognised image'."""
    missing, empty, bad_wav = tmp_path / "nope.png", tmp_path / "empty.png", tmp_path / "bad.wav"
    empty.write_bytes(b"")
    bad_wav.write_bytes(b"RIFF not really a wave file")
    cases = [({"image": str(missing)}, f"modality 'image' (image): cannot read file '{missing}': No such file or "
                                       "directory", "bad_input"),
             ({"image": missing}, f"modality 'image' (image): cannot read file '{missing}': No such file or "
                                  "directory", "bad_input"),
             ({"image": str(empty)}, f"modality 'image' (image): cannot read file '{empty}': the file is empty (0 bytes)",
              "empty_file"),
             ({"image": b""}, "modality 'image' (image): cannot read the file given: the file is empty (0 bytes)",
              "empty_file"),
             ({"image": str(tmp_path)}, f"modality 'image' (image): cannot read file '{tmp_path}': Is a directory",
              "bad_input"),
             ({"audio": str(tmp_path / "nope.wav")}, f"modality 'audio' (audio): cannot read file "
                                                     f"'{tmp_path / 'nope.wav'}': No such file or directory", "bad_input"),
             ({"audio": str(bad_wav)}, f"modality 'audio' (audio): not a readable audio file (WAV, FLAC, OGG) (file "
                                       f"'{bad_wav}')", "unsupported_type")]
    for row, said, code in cases:
        with pytest.raises(RequestError) as info:
            runtime.predict_proba([{"notes": "red"}, {"notes": "blue", **row}])
        assert str(info.value) == f"row 1: {said}"
        assert (info.value.row, info.value.field, info.value.code) == (1, next(iter(row)), code)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_path_to_a_device_or_a_pipe_is_refused_before_it_is_opened(runtime, tmp_path):
    """Read whole, /dev/zero ran out of memory and a named pipe waited for a writer for ever (a
    row given to the runtime may name either)."""
    import threading

    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)

    def unblock() -> None:  # were the pipe opened, this writer ends the wait: the test fails, it does not hang
        if not done.wait(10):
            with open(pipe, "wb"):
                pass

    done = threading.Event()
    threading.Thread(target=unblock, daemon=True).start()
    try:
        for path in (pipe, Path(os.devnull)):  # a pipe; a device (/dev/null: its read ends at once either way)
            for modality in ("image", "audio"):
                with pytest.raises(RequestError) as info:
                    runtime.predict_proba([{"notes": "blue", modality: str(path)}])
                assert str(info.value) == (f"row 0: modality '{modality}' ({modality}): cannot read file '{path}': "
                                           "not a regular file (a device, a pipe or a socket)")
                assert (info.value.field, info.value.code) == (modality, "bad_input")
        with pytest.raises(RequestError, match=re.escape(f"cannot read file '{pipe}': not a regular file")):
            _signal(1).decode(str(pipe))
    finally:
        done.set()


def test_a_signal_or_video_path_that_names_nothing_is_refused_naming_it(tmp_path):
    from polymodal.deploy.features import has_av

    with pytest.raises(RequestError, match=re.escape(f"modality 'vib' (signal): cannot read file "
                                                     f"'{tmp_path / 'nope.npy'}': No such file or directory")):
        _signal(1).decode(str(tmp_path / "nope.npy"))
    if has_av():  # a container or frame folder's path that names nothing: not 'unreadable or corrupt video'
        from polymodal.deploy.features import VideoFeatures

        video = VideoFeatures("clip", {"preprocess": {"size": 8, "color": "gray", "resize": "stretch", "frames": 2,
                                                      "max_frames": 10, "max_pixels": 10_000, "sampling": "uniform",
                                                      "stride": 1}, "state": {}, "inputs": {}})
        for name in ("nope.mp4", "frames"):
            with pytest.raises(RequestError, match=re.escape(f"modality 'clip' (video): cannot read file "
                                                             f"'{tmp_path / name}': No such file or directory")):
                video.decode(str(tmp_path / name))


def test_a_runs_export_made_before_its_threshold_was_set_again_warns_when_loaded(tmp_path, one_thread):
    """``polymodal threshold RUN --score 0.9`` rewrites the run; its export/ keeps the old threshold,
    and a runtime loaded from it predicted with that without a word (serve refuses it). It warns,
    with the command that exports the run again; a copy of the export with no run beside it loads
    silently."""
    import shutil
    import warnings

    import pandas as pd
    from typer.testing import CliRunner

    from polymodal import MultimodalPredictor
    from polymodal.cli import app
    from polymodal.deploy.export import export_run

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 48)
    frame = pd.DataFrame({"x1": y + rng.normal(0, 0.5, 48), "label": y})
    cfg = {"task": "classification", "target": "label",
           "modalities": {"labs": {"kind": "tabular", "columns": ["x1"], "encoder": {"dim": 4, "hidden": [8]}}},
           "head": {"name": "mlp", "hidden": [8]},
           "train": {"epochs": 1, "batch_size": 16, "seed": 0, "progress": False, "num_workers": 0}}
    run = tmp_path / "run"
    predictor = MultimodalPredictor.from_config(cfg).fit(frame.iloc[:32], frame.iloc[32:], out=run)
    export_run(predictor, run / "export", data=frame.iloc[32:], rows=8, quantize=True)
    shutil.copytree(run / "export", run / "mine")  # exported with --out RUN/mine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Runtime.load(run / "export").meta.get("threshold") is None  # the export is the run's: nothing to say
    result = CliRunner().invoke(app, ["threshold", str(run), "--score", "0.9"])
    assert result.exit_code == 0, result.output
    assert MultimodalPredictor.load(run).pipeline.targets.threshold == 0.9
    stale = (f"was exported from another model than {run}'s (the run was trained again, or its decision or anomaly "
             "threshold set, since): this runtime predicts as that model did")
    with pytest.warns(UserWarning, match=re.escape(f"{run / 'export'} {stale}") + ".*" +
                      re.escape(f"export it again with 'polymodal export {run} --quantize'")):
        assert Runtime.load(run / "export").meta.get("threshold") is None  # still the old model's decision
    with pytest.warns(UserWarning, match=re.escape(f"'polymodal export {run} --out {run / 'mine'} --quantize'")):
        Runtime.load(run / "mine")
    elsewhere = shutil.copytree(run / "export", tmp_path / "elsewhere")  # no run beside it: nothing to compare
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Runtime.load(elsewhere)
    with warnings.catch_warnings():  # torch's exporter has its own deprecation warnings
        warnings.simplefilter("error", UserWarning)
        # an export of the model in memory, whose threshold differs from the saved run's: its parity
        # check loads the export being written (a temporary folder in the run) without a word of it
        predictor.set_threshold(0.8)
        export_run(predictor, run / "export2", data=frame.iloc[32:], rows=8)


def test_a_runtime_prints_its_folder_task_and_modalities(runtime, exported):
    kinds = {name: spec["kind"] for name, spec in sorted(runtime.meta["modalities"].items())}
    assert repr(runtime) == f"Runtime({str(exported[0])!r}, task='classification', modalities={kinds})"
    assert "object at 0x" not in repr(runtime) and len(kinds) >= 2
