"""The runtime's numpy preprocessing on its own (no trained model): signal spectrograms, audio
features, text ids and tabular rows against the training-time preprocessor, audio at another
sample rate, transparent images."""

from __future__ import annotations

import itertools
import warnings
from types import SimpleNamespace
from typing import Any, get_args

import librosa
import numpy as np
import pytest
from PIL import Image

from polymodal.config.modalities import AudioModality, ImageModality, SignalModality, TabularModality, TextModality
from polymodal.config.preprocess import AudioPreprocess, SignalSpectrogram, TabularPreprocess, TextPreprocess
from polymodal.data.modalities import build_preprocessor
from polymodal.deploy.export import modality_meta
from polymodal.deploy.features import AudioFeatures, ImageFeatures, SignalFeatures, TabularFeatures, TextFeatures


def signal_features(tmp_path, spectrogram: dict, signal: np.ndarray) -> tuple[SignalFeatures, Any, str]:
    """The runtime's features for a signal preprocessor fitted on ``signal`` (C, L), the
    preprocessor and the file it was saved to."""
    cfg = SignalModality(kind="signal", column="sig",
                         preprocess={"length": 256, "normalize": "none", "spectrogram": spectrogram})
    prep = build_preprocessor(cfg, "sig")
    np.save(tmp_path / "signal.npy", signal.T)
    prep.fit([str(tmp_path / "signal.npy")])
    fake = SimpleNamespace(config=SimpleNamespace(modalities={"sig": cfg}),
                           pipeline=SimpleNamespace(preprocessors={"sig": prep}))
    return SignalFeatures("sig", modality_meta(fake, "sig", [])), prep, str(tmp_path / "signal.npy")


@pytest.mark.parametrize("scale", get_args(SignalSpectrogram.model_fields["scale"].annotation))
@pytest.mark.parametrize("gain", [1.0, 1e-4, 0.0])  # a live sensor, a nearly dead one, a dead one
def test_signal_spectrogram_and_valid_frames_match_the_training_preprocessor(tmp_path, scale, gain):
    short = np.random.default_rng(0).standard_normal((2, 100)).astype(np.float32) * np.float32(gain)  # < length
    features, prep, path = signal_features(tmp_path, {"n_fft": 32, "hop": 16, "scale": scale}, short)
    got = features.transform([short])
    want = prep.featurize([prep.decode(path)])
    frames = librosa.stft(np.zeros(100, np.float32), n_fft=32, hop_length=16, center=True).shape[1]  # 7
    assert got["length"].tolist() == want["length"].tolist() == [frames]
    assert features.cfg["spectrogram"]["scale"] == scale  # deploy.json records it
    np.testing.assert_allclose(got["x"], want["x"], rtol=1e-4, atol=1e-4)


def test_an_export_recorded_before_spectrogram_scale_featurises_with_log1p(tmp_path):
    """deploy.json of an export made before the key existed has no ``scale``: its model was trained
    on log1p spectrograms, which the runtime keeps computing."""
    wave = np.random.default_rng(1).standard_normal((1, 256)).astype(np.float32)
    features, _, path = signal_features(tmp_path, {"n_fft": 32, "hop": 16, "scale": "log1p"}, wave)
    old = SignalFeatures("sig", {"preprocess": {**features.cfg, "spectrogram": {"n_fft": 32, "hop": 16}},
                                 "state": features.state, "inputs": {}})
    np.testing.assert_array_equal(old.transform([wave])["x"], features.transform([wave])["x"])
    db, _, _ = signal_features(tmp_path, {"n_fft": 32, "hop": 16, "scale": "db"}, wave)
    assert not np.allclose(db.transform([wave])["x"], features.transform([wave])["x"], atol=1.0)


@pytest.mark.parametrize("impute", get_args(TabularPreprocess.model_fields["impute"].annotation))
@pytest.mark.parametrize("scale", get_args(TabularPreprocess.model_fields["scale"].annotation))
def test_tabular_rows_match_the_training_preprocessor_for_every_scaling(scale, impute):
    cfg = TabularModality(kind="tabular", columns=["age", "dose"], categorical=["colour"],
                          preprocess={"scale": scale, "impute": impute})
    prep = build_preprocessor(cfg, "labs")
    rng = np.random.default_rng(0)
    rows = [(float(a), float(d), c) for a, d, c in zip(rng.normal(40, 12, 30), rng.lognormal(3, 1, 30),
                                                         rng.choice(["red", "blue", "green"], 30))]
    rows[3] = (float("nan"), rows[3][1], None)
    prep.fit(rows)
    fake = SimpleNamespace(config=SimpleNamespace(modalities={"labs": cfg}),
                           pipeline=SimpleNamespace(preprocessors={"labs": prep}))
    features = TabularFeatures("labs", modality_meta(fake, "labs", []))
    for row in rows[:6] + [(500.0, None, "purple")]:
        got_num, got_cat = features.decode(dict(zip(["age", "dose", "colour"], row, strict=True)))
        want_num, want_cat = prep.decode(row)
        np.testing.assert_allclose(got_num, want_num, rtol=1e-6)
        np.testing.assert_array_equal(got_cat, want_cat)


@pytest.mark.parametrize("normalize", get_args(TabularPreprocess.model_fields["normalize_categories"].annotation))
def test_tabular_categories_are_normalised_as_in_training(normalize):
    """Every ``normalize_categories`` keys a spelling variant in the runtime as training does; an
    export written before the setting (no key in deploy.json) keys categories as written, as its
    model was trained."""
    cfg = TabularModality(kind="tabular", columns=["age"], categorical=["smoking"],
                          preprocess={"normalize_categories": normalize})
    prep = build_preprocessor(cfg, "labs")
    with warnings.catch_warnings():  # the variants are warned about at fit time: not the point here
        warnings.simplefilter("ignore")
        prep.fit([(1.0, "current"), (2.0, "Current "), (3.0, "never"), (4.0, " never")])
    fake = SimpleNamespace(config=SimpleNamespace(modalities={"labs": cfg}),
                           pipeline=SimpleNamespace(preprocessors={"labs": prep}))
    features = TabularFeatures("labs", modality_meta(fake, "labs", []))
    assert features.cfg["normalize_categories"] == normalize
    for value in ["current", "Current ", " current", "CURRENT", "never ", "vaper", None, 3.0]:
        np.testing.assert_array_equal(features.decode({"age": 1.0, "smoking": value})[1],
                                      prep.decode((1.0, value))[1], err_msg=repr(value))
        assert bool(features.notes({"smoking": value})) == bool(prep.unknown_categories("smoking", [value]))
    if normalize == "none":
        old = TabularFeatures("labs", {**modality_meta(fake, "labs", []), "preprocess": {
            k: v for k, v in features.cfg.items() if k != "normalize_categories"}})
        assert old.decode({"age": 1.0, "smoking": "Current "})[1] == features.decode({"age": 1.0, "smoking": "Current "})[1]
        assert old.decode({"age": 1.0, "smoking": "current "})[1] == [0]  # as written: unknown


CLEANING = sorted(name for name, field in TextPreprocess.model_fields.items() if field.annotation is bool)
STOP_WORDS = [False, "english", "english_all", ["Dose", "MG", "twice"]]
TEXTS = ["The dose: 5 mg, twice!", "Dose 10 MG at 3.5 h", "no dose at ALL", "it is the cell's 1,000th"]


def text_meta(preprocess: dict[str, Any], texts: list[str] = TEXTS) -> tuple[dict[str, Any], Any]:
    """The ``deploy.json`` entry of a word-vocabulary text preprocessor fitted on ``texts``,
    and the preprocessor."""
    cfg = TextModality(kind="text", column="t", preprocess={**preprocess, "min_freq": 1})
    prep = build_preprocessor(cfg, "notes")
    prep.fit(texts)
    fake = SimpleNamespace(config=SimpleNamespace(modalities={"notes": cfg}),
                           pipeline=SimpleNamespace(preprocessors={"notes": prep}))
    return modality_meta(fake, "notes", []), prep


@pytest.mark.parametrize("stopwords", STOP_WORDS, ids=str)
@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=len(CLEANING))),
                         ids=lambda flags: "-".join(f"{n}={int(f)}" for n, f in zip(CLEANING, flags)))
def test_text_ids_match_the_training_preprocessor_for_every_cleaning_setting(flags, stopwords):
    """Every on/off cleaning option of the config (today lower-casing, punctuation, the punctuation
    of numbers; any added later joins by itself), with every kind of stop-word list, reads a text
    into the same ids in the runtime."""
    meta, prep = text_meta({**dict(zip(CLEANING, flags)), "stopwords": stopwords})
    features = TextFeatures("notes", meta)
    for text in [*TEXTS, "An unseen dose of 7, THE end.", "!!", "No dose, not 3.5 MG; never 12:30"]:
        assert features.decode(text) == prep.decode(text), text


CONTRACTIONS = {"The patient can't breathe": "patient cant breathe", "couldn\u2019t": "couldnt",
                "'Quoted' \u2018words\u2019 hasn't": "quoted words hasnt"}


@pytest.mark.parametrize("keep_numbers", [False, True])
def test_the_runtime_joins_contractions_as_training_does(keep_numbers):
    """An apostrophe inside a word is deleted (typographic too) and quotes around one go, in the
    runtime as in training: the negations the English list keeps are words of the vocabulary."""
    meta, prep = text_meta({"stopwords": "english", "keep_number_punctuation": keep_numbers}, list(CONTRACTIONS))
    features = TextFeatures("notes", meta)
    for text, cleaned in CONTRACTIONS.items():
        assert features.clean(text) == prep._clean(text) == cleaned, text
        assert features.decode(text) == prep.decode(text), text
        assert prep.tokenize(text) == cleaned.split(), text  # every word known: no [UNK] stands in


def test_an_export_recorded_before_join_apostrophes_splits_contractions_as_its_training_did():
    """An export of a run trained before the setting holds no ``join_apostrophes``: its runtime
    spaces an apostrophe inside a word, as that run's training (``join_apostrophes`` false) did,
    where the export of a run that joins them (its deploy.json says so) joins them."""
    texts = ["The patient can't breathe", "couldn\u2019t walk"]
    meta, prep = text_meta({"join_apostrophes": False}, texts)
    assert meta["preprocess"]["join_apostrophes"] is False
    old = TextFeatures("notes", {**meta, "preprocess": {k: v for k, v in meta["preprocess"].items()
                                                        if k != "join_apostrophes"}})
    assert old.clean("The patient can't breathe") == prep._clean("The patient can't breathe") == (
        "the patient can t breathe")
    for text in [*texts, "it can\u2019t"]:
        assert old.decode(text) == prep.decode(text) == TextFeatures("notes", meta).decode(text), text
    joined_meta, joined = text_meta({}, texts)
    assert joined_meta["preprocess"]["join_apostrophes"] is True
    assert TextFeatures("notes", joined_meta).clean("can't, couldn\u2019t") == "cant couldnt" == (
        joined._clean("can't, couldn\u2019t"))


def test_an_export_recorded_before_english_and_kept_numbers_cleans_as_it_did():
    """An export of a run trained before these settings: ``stopwords: true`` beside scikit-learn's
    whole list in its state, and no ``keep_number_punctuation``. The runtime removes the negations
    with the rest of the list and splits '3.5', as the run's training did."""
    meta, prep = text_meta({"stopwords": "english_all", "keep_number_punctuation": False})
    settings = {k: v for k, v in meta["preprocess"].items() if k != "keep_number_punctuation"}
    old = TextFeatures("notes", {**meta, "preprocess": {**settings, "stopwords": True}})
    assert len(old.state["stop_words"]) == 318  # scikit-learn's whole list, as such exports hold it
    assert old.clean("No dose, 3.5 MG") == "dose 3 5 mg"
    for text in [*TEXTS, "No dose, not 3.5 MG; never 12:30"]:
        assert old.decode(text) == prep.decode(text) == TextFeatures("notes", meta).decode(text), text


def test_the_runtime_computes_every_audio_feature_the_config_offers():
    assert AudioFeatures.features == get_args(AudioPreprocess.model_fields["features"].annotation)


@pytest.mark.parametrize("features", [f for f in AudioFeatures.features if f != "waveform"])
@pytest.mark.parametrize("top_db", [None, 50.0])
def test_audio_features_match_the_training_preprocessor(features, top_db):
    cfg = AudioModality(kind="audio", column="a", preprocess={"sample_rate": 8000, "max_seconds": 0.2, "n_mels": 20,
                                                             "features": features, "top_db": top_db,
                                                             "normalize": "none"})
    prep = build_preprocessor(cfg, "a")
    fake = SimpleNamespace(config=SimpleNamespace(modalities={"a": cfg}),
                           pipeline=SimpleNamespace(preprocessors={"a": prep}))
    audio = AudioFeatures("a", modality_meta(fake, "a", []))
    rng = np.random.default_rng(0)
    # a quiet short clip (padded) and a loud full one, peaks ~40 dB apart: each is clipped below its own
    clips = [(0.003 * np.sin(2 * np.pi * 300 * np.arange(800) / 8000)
              + 1e-4 * rng.standard_normal(800)).astype(np.float32),
             (0.5 * rng.standard_normal(1600)).astype(np.float32)]
    got = audio.transform([(c, 8000) for c in clips])
    want = prep.featurize([(np.pad(c, (0, 1600 - len(c))), len(c)) for c in clips])
    np.testing.assert_allclose(got["x"], want["x"], rtol=1e-4, atol=2e-3)
    assert got["length"].tolist() == want["length"].tolist()
    if top_db is not None and features != "mfcc":  # the quiet clip's padding sits at its own floor, not the loud one's
        quiet = got["x"][0]
        assert quiet.min() == pytest.approx(quiet.max() - top_db, abs=1e-3) and quiet.max() < got["x"][1].max() - 20


def test_audio_at_another_sample_rate_is_resampled_onto_the_models_rate():
    cfg = AudioModality(kind="audio", column="a", preprocess={"sample_rate": 8000, "max_seconds": 0.1})
    features = AudioFeatures("a", {"preprocess": cfg.preprocess.model_dump(mode="json"), "state": {}, "inputs": {}})
    t = np.arange(600) / 12000  # 0.05 s at 12 kHz
    wave, valid = features.decode((np.sin(2 * np.pi * 440 * t).astype(np.float32), 12000))
    assert valid == 400 and wave.shape == (800,)  # 0.05 s at 8 kHz, zero-padded to 0.1 s
    expected = np.sin(2 * np.pi * 440 * np.arange(400) / 8000)
    np.testing.assert_allclose(wave[20:380], expected[20:380], atol=0.01)  # a 440 Hz sine, away from the cut ends
    assert not wave[400:].any()


@pytest.mark.parametrize("target", [8000, 16000])
@pytest.mark.parametrize("rate", [11025, 44100])
def test_audio_is_resampled_as_training_resamples_it(tmp_path, rate, target):
    """Training resamples with soxr (librosa); the runtime's band-limited FFT resampling matches it.
    Linear interpolation aliased the content above the new Nyquist frequency back into the clip:
    its samples differed by 0.13-0.15 and its log-mel features by 10-84 dB."""
    from .helpers import wav_bytes

    rng = np.random.default_rng(0)
    t = np.arange(int(0.5 * rate)) / rate  # a tone, one near 8 kHz's Nyquist frequency, and noise
    clip = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3500 * t) + 0.05 * rng.standard_normal(t.size)
    data = wav_bytes(clip, rate)
    (tmp_path / "clip.wav").write_bytes(data)
    cfg = AudioModality(kind="audio", column="a", preprocess={"sample_rate": target, "max_seconds": 0.5, "n_mels": 40,
                                                             "normalize": "none"})
    prep = build_preprocessor(cfg, "a")
    fake = SimpleNamespace(config=SimpleNamespace(modalities={"a": cfg}),
                           pipeline=SimpleNamespace(preprocessors={"a": prep}))
    features = AudioFeatures("a", modality_meta(fake, "a", []))
    want, got = prep.decode(str(tmp_path / "clip.wav")), features.decode(data)
    assert got[1] == want[1] == target // 2 and got[0].shape == want[0].shape
    np.testing.assert_allclose(got[0], want[0], atol=3e-3)  # measured: 2.6e-4 to 2.2e-3
    mel_want, mel_got = prep.featurize([want])["x"], features.transform([data])["x"]
    heard = mel_want > mel_want.max() - 60  # lower: the resamplers' stopband leakage (upsampling's empty bands)
    np.testing.assert_allclose(mel_got[heard], mel_want[heard], atol=0.5)  # dB; measured: at most 0.32, at the clip's start
    inner = heard[:, 2:-2]  # frames away from the clip's ends, where the two resamplers' edges differ
    np.testing.assert_allclose(mel_got[:, 2:-2][inner], mel_want[:, 2:-2][inner], atol=0.1)  # measured: at most 0.06


@pytest.mark.parametrize(("background", "fill"), [("white", 255), ("black", 0)])
@pytest.mark.parametrize("color", ["rgb", "gray"])
def test_transparent_pixels_show_the_background_in_training_and_the_runtime(tmp_path, background, fill, color):
    """An RGBA PNG whose transparent pixels store random colours: they come out as the background,
    half-transparent ones halfway to it, opaque ones as stored; the runtime decodes the same bytes alike."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    rgba[:4, :, 3] = 0  # top half transparent
    rgba[4:6, :, 3] = 255  # opaque
    rgba[6:, :, 3] = 128
    Image.fromarray(rgba).save(tmp_path / "a.png")
    cfg = ImageModality(kind="image", column="img", preprocess={"size": 8, "color": color, "background": background})
    prep = build_preprocessor(cfg, "img")
    x = prep.decode(str(tmp_path / "a.png")).astype(np.int16)
    rgb = rgba[..., :3].astype(np.int16)
    if color == "gray":
        rgb = np.asarray(Image.fromarray(rgba[..., :3]).convert("L"), np.int16)[..., None]
    assert (x[:4] == fill).all()
    np.testing.assert_array_equal(x[4:6], rgb[4:6])
    np.testing.assert_allclose(x[6:], (rgb[6:] + fill) / 2, atol=2)
    features = ImageFeatures("img", {"preprocess": cfg.preprocess.model_dump(mode="json"), "state": {}, "inputs": {}})
    np.testing.assert_array_equal(features.decode((tmp_path / "a.png").read_bytes()), x)


@pytest.mark.parametrize("resize", ["stretch", "pad", "crop"])
def test_hsv_images_are_resized_as_in_training(tmp_path, resize):
    """Two reds either side of hue 0 resized to another shape: the runtime resizes as RGB and
    converts afterwards, as training does (resized in HSV, their hues would blend into a cyan)."""
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, :8], pixels[:, 8:] = [255, 0, 40], [255, 40, 0]
    Image.fromarray(pixels).save(tmp_path / "reds.png")
    cfg = ImageModality(kind="image", column="img", preprocess={"size": [4, 6], "color": "hsv", "resize": resize})
    trained = build_preprocessor(cfg, "img").decode(str(tmp_path / "reds.png"))
    features = ImageFeatures("img", {"preprocess": cfg.preprocess.model_dump(mode="json"), "state": {}, "inputs": {}})
    np.testing.assert_array_equal(features.decode((tmp_path / "reds.png").read_bytes()), trained)


def test_a_value_range_reads_16_bit_images_and_clips_as_in_training(tmp_path):
    """A 16-bit scan and a uint16 clip (a .npy and a frame folder) through ``value_range``: the
    runtime decodes the same bytes to the same pixels, which sit at their level in the range (not
    at white, as scaling by their own maximum would put a flat image)."""
    from polymodal.config.modalities import VideoModality
    from polymodal.deploy.features import VideoFeatures, has_av

    flat = np.full((8, 8), 1000, np.uint16)
    Image.fromarray(flat).save(tmp_path / "scan.png")
    cfg = ImageModality(kind="image", column="img", preprocess={"size": 8, "color": "gray", "value_range": [0, 4000]})
    trained = build_preprocessor(cfg, "img").decode(str(tmp_path / "scan.png"))
    assert (trained == 64).all()
    features = ImageFeatures("img", {"preprocess": cfg.preprocess.model_dump(mode="json"), "state": {}, "inputs": {}})
    np.testing.assert_array_equal(features.decode((tmp_path / "scan.png").read_bytes()), trained)
    if not has_av():
        return
    clip = np.stack([flat, flat * 2])
    np.save(tmp_path / "clip.npy", clip)
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(clip):
        Image.fromarray(frame).save(tmp_path / "frames" / f"{i}.png")
    cfg = VideoModality(kind="video", column="v", preprocess={"size": 8, "color": "gray", "frames": 2,
                                                             "value_range": [0, 4000]})
    video = VideoFeatures("v", {"preprocess": cfg.preprocess.model_dump(mode="json"), "state": {}, "inputs": {}})
    for source in ("clip.npy", "frames"):
        trained, length = build_preprocessor(cfg, "v").decode(str(tmp_path / source))
        assert length == 2 and (trained[0] == 64).all() and (trained[1] == 128).all(), source
        served, _ = video.decode(str(tmp_path / source))
        np.testing.assert_array_equal(served, trained, err_msg=source)
    served, _ = video.decode((tmp_path / "clip.npy").read_bytes())
    np.testing.assert_array_equal(served, trained)
