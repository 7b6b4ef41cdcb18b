"""A dead, unplugged or stuck sensor on tiny synthetic vibration: with ``spectrogram.scale: db`` the
detector flags a zeroed channel and one 1,000 times weaker; eager prediction warns about a channel
that holds one value throughout, naming the modality, the channel and the rows."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polymodal.anomaly import AnomalyDetector

LENGTH = 256
AMPLITUDE = 0.05  # power per bin well below 1: where log1p reads about linearly


def window(rng: np.random.Generator) -> np.ndarray:
    """(LENGTH,) a sine of a random frequency plus noise, as a live vibration sensor reads."""
    t = np.arange(LENGTH) / LENGTH
    wave = np.sin(2 * np.pi * rng.uniform(10.0, 30.0) * t + rng.uniform(0, 2 * np.pi)) + 0.3 * rng.standard_normal(LENGTH)
    return (AMPLITUDE * wave).astype(np.float32)


def write(folder: Path, name: str, waves: list[np.ndarray]) -> Path:
    """A manifest of one-channel ``vib`` windows."""
    rows = []
    for i, wave in enumerate(waves):
        np.save(folder / f"{name}_{i}.npy", wave)
        rows.append({"vib": f"{name}_{i}.npy", "label": "normal"})
    pd.DataFrame(rows).to_csv(folder / f"{name}.csv", index=False)
    return folder / f"{name}.csv"


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> tuple[AnomalyDetector, Path, list[np.ndarray]]:
    """An autoencoder detector over db spectrograms of live windows, the folder, and live test
    windows. (Its reconstruction error sees any input far from the training ones; the Mahalanobis
    distance of the latent does too on CWRU, but on 96 tiny windows it depends on the seed.)"""
    folder = tmp_path_factory.mktemp("dead_sensor")
    rng = np.random.default_rng(0)
    train = write(folder, "train", [window(rng) for _ in range(96)])
    valid = write(folder, "valid", [window(rng) for _ in range(32)])
    cfg = {"task": "anomaly", "target": "label",
           "modalities": {"vib": {"kind": "signal", "column": "vib", "preprocess": {
               "length": LENGTH, "spectrogram": {"n_fft": 32, "hop": 16, "scale": "db"}, "normalize": "global"},
               "encoder": {"name": "cnn1d", "dim": 16, "channels": [16, 16]}}},
           "anomaly": {"scorer": "autoencoder", "latent_dim": 8, "recon_size": 64, "decoder_hidden": 32,
                       "target_fpr": 0.05},
           "train": {"epochs": 6, "batch_size": 16, "lr": 3e-3, "seed": 0, "progress": False, "early_stopping": None}}
    det = AnomalyDetector.from_config(cfg).fit(train, valid)
    return det, folder, [window(rng) for _ in range(6)]


def test_a_zeroed_or_much_weaker_channel_is_flagged_with_db_spectrograms(detector):
    det, folder, live = detector
    test = write(folder, "dead", [*live, np.zeros(LENGTH, np.float32), live[0] * np.float32(1e-3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the zeroed row's flat-channel warning: tested below
        frame = det.predict_frame(test)
    threshold = float(det.model.scorer.threshold)
    scores = frame["score"].to_numpy()
    assert frame["flag"][6:].all(), f"zeroed / x1e-3 windows not flagged: {scores[6:]} vs threshold {threshold}"
    # far from every live window, not flagged by a hair (log1p: about 1.3 times the highest live score)
    assert scores[6:].min() > 10 * max(scores[:6].max(), threshold), (scores, threshold)


def test_eager_predict_warns_once_about_channels_that_hold_one_value_naming_modality_channel_and_rows(detector):
    det, folder, live = detector
    stuck = np.full(LENGTH, 0.25, np.float32)
    test = write(folder, "flat", [live[0], np.zeros(LENGTH, np.float32), live[1], np.zeros(LENGTH, np.float32), stuck])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        det.predict_frame(test)
    said = [str(w.message) for w in caught if "holds one value throughout" in str(w.message)]
    assert len(said) == 1, said  # one warning for every row
    assert said[0].startswith("flat.csv: signal modality 'vib', 3 row(s): ")
    assert ("channel 0 holds one value throughout (0): a disconnected or stuck sensor? (rows 1 (line 3), "
            "3 (line 5))") in said[0]
    assert "channel 0 holds one value throughout (0.25): a disconnected or stuck sensor? (row 4 (line 6))" in said[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        det.predict_frame(write(folder, "live", live))
    assert not [w for w in caught if "holds one value throughout" in str(w.message)]
