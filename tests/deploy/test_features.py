"""The runtime's numpy preprocessing on its own (no trained model): signal spectrograms against
the training-time preprocessor and librosa, audio at another sample rate."""

from __future__ import annotations

from types import SimpleNamespace

import librosa
import numpy as np

from polymodal.config.modalities import AudioModality, SignalModality
from polymodal.data.modalities import build_preprocessor
from polymodal.deploy.export import modality_meta
from polymodal.deploy.features import AudioFeatures, SignalFeatures


def test_signal_spectrogram_and_valid_frames_match_the_training_preprocessor(tmp_path):
    cfg = SignalModality(kind="signal", column="sig",
                         preprocess={"length": 256, "normalize": "none", "spectrogram": {"n_fft": 32, "hop": 16}})
    prep = build_preprocessor(cfg, "sig")
    short = np.random.default_rng(0).standard_normal((2, 100)).astype(np.float32)  # shorter than length
    np.save(tmp_path / "short.npy", short.T)
    prep.fit([str(tmp_path / "short.npy")])
    fake = SimpleNamespace(config=SimpleNamespace(modalities={"sig": cfg}),
                           pipeline=SimpleNamespace(preprocessors={"sig": prep}))
    runtime = SignalFeatures("sig", modality_meta(fake, "sig", []))
    got = runtime.featurize([short])
    want = prep.featurize([prep.decode(str(tmp_path / "short.npy"))])
    frames = librosa.stft(np.zeros(100, np.float32), n_fft=32, hop_length=16, center=True).shape[1]  # 7
    assert got["length"].tolist() == want["length"].tolist() == [frames]
    np.testing.assert_allclose(got["x"], want["x"], rtol=1e-4, atol=1e-4)


def test_audio_at_another_sample_rate_is_resampled_onto_the_models_rate():
    cfg = AudioModality(kind="audio", column="a", preprocess={"sample_rate": 8000, "max_seconds": 0.1})
    features = AudioFeatures("a", {"preprocess": cfg.preprocess.model_dump(mode="json"), "state": {}, "inputs": {}})
    t = np.arange(600) / 12000  # 0.05 s at 12 kHz
    wave, valid = features.decode((np.sin(2 * np.pi * 440 * t).astype(np.float32), 12000))
    assert valid == 400 and wave.shape == (800,)  # 0.05 s at 8 kHz, zero-padded to 0.1 s
    expected = np.sin(2 * np.pi * 440 * np.arange(400) / 8000)
    np.testing.assert_allclose(wave[:400], expected, atol=0.01)  # linear interpolation of a 440 Hz sine
    assert not wave[400:].any()
