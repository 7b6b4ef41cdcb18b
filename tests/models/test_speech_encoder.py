"""The speech_embedding encoder (ONNX through onnxruntime), on tiny random ONNX graphs with the
interface of the packaged models (see tests/helpers_pretrained.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers_pretrained import EMBED, expected_speech_tokens, save_tiny_speech_models

import polymodal.models  # noqa: F401 - fills the registries
from polymodal.config import load_config
from polymodal.config.encoders import SpeechEmbeddingConfig
from polymodal.errors import ConfigError, DecodeError
from polymodal.models.registry import ENCODERS


@pytest.fixture(scope="module")
def speech_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    mel_w, emb_w = save_tiny_speech_models(folder)
    return folder, mel_w, emb_w


def test_encoder_reproduces_the_onnx_pipeline(speech_models):
    folder, mel_w, emb_w = speech_models
    encoder = ENCODERS.build(SpeechEmbeddingConfig(path=folder), kind="audio")
    assert encoder.output_dim == EMBED and encoder.pretrained
    rng = np.random.default_rng(1)
    wave = rng.uniform(-0.5, 0.5, (3, 16000)).astype(np.float32)
    mask = torch.ones(3, 16000, dtype=torch.bool)
    mask[1, 13000:] = False  # 13000 samples -> 78 frames: only window 0 (frames 0-75) fits
    mask[2, 15000:] = False  # 90 frames: windows 0 and 1 (frames 8-83) fit, window 2 (16-91) does not
    out = encoder(x=torch.from_numpy(wave).unsqueeze(-1), mask=mask)
    expected = expected_speech_tokens(wave, mel_w, emb_w)  # (3, 3, 12): 97 frames -> windows at 0, 8, 16
    assert out.tokens.shape == (3, 3, EMBED)
    np.testing.assert_allclose(out.tokens.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert out.token_mask.tolist() == [[True, True, True], [True, False, False], [True, True, False]]
    np.testing.assert_allclose(out.pooled[1].numpy(), expected[1, 0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.pooled[2].numpy(), expected[2, :2].mean(0), rtol=1e-4, atol=1e-4)


def test_window_step_changes_the_windows(speech_models):
    folder, mel_w, emb_w = speech_models
    encoder = ENCODERS.build(SpeechEmbeddingConfig(path=folder, window_step=4), kind="audio")
    wave = np.random.default_rng(2).uniform(-0.5, 0.5, (1, 16000)).astype(np.float32)
    out = encoder(x=torch.from_numpy(wave).unsqueeze(-1))
    np.testing.assert_allclose(out.tokens.numpy(), expected_speech_tokens(wave, mel_w, emb_w, step=4), rtol=1e-4,
                               atol=1e-4)
    assert out.tokens.shape[1] == 6  # windows at 0, 4, ..., 20 of 97 frames


def test_fingerprint_follows_the_model_files_and_deepcopy_works(speech_models, tmp_path):
    folder, _, _ = speech_models
    encoder = ENCODERS.build(SpeechEmbeddingConfig(path=folder), kind="audio")
    save_tiny_speech_models(tmp_path / "other", seed=5)
    other = ENCODERS.build(SpeechEmbeddingConfig(path=tmp_path / "other"), kind="audio")
    assert encoder.weights_fingerprint() != other.weights_fingerprint()
    twin = copy.deepcopy(encoder)
    assert twin.weights_fingerprint() == encoder.weights_fingerprint()
    x = torch.rand(1, 16000, 1) - 0.5
    torch.testing.assert_close(twin(x=x).pooled, encoder(x=x).pooled)


def test_missing_or_broken_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="melspectrogram.onnx"):
        ENCODERS.build(SpeechEmbeddingConfig(path=tmp_path), kind="audio")
    (tmp_path / "melspectrogram.onnx").write_bytes(b"not onnx")
    (tmp_path / "embedding_model.onnx").write_bytes(b"not onnx")
    with pytest.raises(DecodeError, match="not a loadable ONNX model"):
        ENCODERS.build(SpeechEmbeddingConfig(path=tmp_path), kind="audio")


def _audio(encoder: dict, preprocess: dict | None = None) -> dict:
    block = {"kind": "audio", "column": "a", "encoder": encoder}
    if preprocess is not None:
        block["preprocess"] = preprocess
    return {"target": "y", "modalities": {"speech": block}}


def test_preprocessing_follows_the_encoder(speech_models):
    folder, _, _ = speech_models
    config = load_config(_audio({"name": "speech_embedding", "path": str(folder)}, {"max_seconds": 1.5}))
    prep = config.modalities["speech"].preprocess
    assert (prep.sample_rate, prep.features, prep.normalize, prep.max_seconds) == (16000, "waveform", "none", 1.5)


@pytest.mark.parametrize(("preprocess", "message"), [
    ({"sample_rate": 8000}, "16 kHz"),
    ({"features": "log_mel"}, "raw 16 kHz waveform"),
    ({"max_seconds": 0.5}, "at least 0.79 s"),
])
def test_preprocessing_the_encoder_cannot_take_is_refused(speech_models, preprocess, message):
    folder, _, _ = speech_models
    with pytest.raises(ConfigError, match=message) as info:
        load_config(_audio({"name": "speech_embedding", "path": str(folder)}, preprocess))
    assert info.value.problems[0].startswith("modalities.speech")
