"""``fsdd-mnist``: Free Spoken Digit Dataset recordings paired with MNIST images of the same digit.

Source layout (like ``../shared/data``): ``fsdd/recordings/{digit}_{speaker}_{index}.wav`` and
``mnist/t10k-images-idx3-ubyte.gz`` + ``mnist/t10k-labels-idx1-ubyte.gz``.

Splits: ``speaker`` (default) holds out whole speakers (``test_speakers``) so test voices are
unseen; ``official`` uses FSDD's split (recording index 0-4 is test). In both, test rows get
MNIST images never used by training rows, and 10% of the training rows become validation.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.datasets.base import (
    read_idx_images,
    read_idx_labels,
    register_dataset,
    require,
    save_images,
    write_splits,
)
from polymodal.errors import DatasetSourceError

_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
DEFAULT_TEST_SPEAKERS = ("theo", "yweweler")


def read_fsdd(source: Path, dataset: str = "fsdd-mnist") -> pd.DataFrame:
    """One row per recording: path, digit, speaker, index (``dataset`` names the caller in errors)."""
    folder = require(source / "fsdd" / "recordings", "the FSDD recordings folder", dataset)
    rows = []
    for path in sorted(folder.glob("*.wav")):
        match = _NAME.match(path.name)
        if match:
            rows.append({"path": path, "digit": int(match[1]), "speaker": match[2], "index": int(match[3])})
    if not rows:
        raise DatasetSourceError(f"dataset '{dataset}': no recordings named DIGIT_SPEAKER_INDEX.wav in {folder}")
    return pd.DataFrame(rows)


def read_mnist_test(source: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx_images(require(source / "mnist" / "t10k-images-idx3-ubyte.gz", "the MNIST test images", dataset))
    labels = read_idx_labels(require(source / "mnist" / "t10k-labels-idx1-ubyte.gz", "the MNIST test labels", dataset))
    return images, labels


@register_dataset("fsdd-mnist", "FSDD spoken digits + MNIST images of the same digit (speaker or official split)",
                  source="fsdd/recordings/*.wav and mnist/t10k-*.gz")
def prepare_fsdd_mnist(out: Path, source: Path, seed: int = 0, split: str = "speaker",
                       test_speakers: Sequence[str] = DEFAULT_TEST_SPEAKERS, **_: Any) -> dict[str, Any]:
    out, source = Path(out), Path(source)
    clips = read_fsdd(source)
    images, labels = read_mnist_test(source, "fsdd-mnist")
    if split == "speaker":
        unknown = sorted(set(test_speakers) - set(clips["speaker"]))
        if unknown:
            raise DatasetSourceError(f"dataset 'fsdd-mnist': test speakers {unknown} not in {sorted(clips['speaker'].unique())}")
        is_test = clips["speaker"].isin(test_speakers).to_numpy()
    elif split == "official":
        is_test = (clips["index"] < 5).to_numpy()
    else:
        raise ValueError(f"split must be 'speaker' or 'official'; got '{split}'")
    rng = np.random.default_rng(seed)
    # Images: per digit, a disjoint pool for test rows and for train/valid rows.
    pools: dict[tuple[str, int], list[int]] = {}
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        n_test = int(is_test[clips["digit"].to_numpy() == digit].sum())
        pools[("test", digit)] = list(idx[:n_test])
        pools[("train", digit)] = list(idx[n_test:])
    image_index = np.empty(len(clips), np.int64)
    for row, (digit, test) in enumerate(zip(clips["digit"], is_test)):
        image_index[row] = pools[("test" if test else "train", int(digit))].pop()
    train_rows = np.flatnonzero(~is_test)
    valid_rows = np.sort(rng.choice(train_rows, size=round(len(train_rows) * 0.1), replace=False))
    parts = {"train": np.setdiff1d(train_rows, valid_rows), "valid": valid_rows, "test": np.flatnonzero(is_test)}
    (out / "audio").mkdir(parents=True, exist_ok=True)
    frames = {}
    for name, rows in parts.items():
        image_paths = save_images(images[image_index[rows]], out / "images", f"{name}_")
        records = []
        for row, image_path in zip(rows, image_paths):
            clip = clips.iloc[row]
            audio_path = f"audio/{clip['path'].name}"
            shutil.copyfile(clip["path"], out / audio_path)
            records.append({"image": image_path, "audio": audio_path, "label": int(clip["digit"]),
                            "speaker": clip["speaker"], "mnist_index": int(image_index[row])})
        frames[name] = pd.DataFrame(records)
    return write_splits(out, frames, {"name": "fsdd-mnist", "seed": seed, "split": split, "target": "label",
                                      "test_speakers": list(test_speakers) if split == "speaker" else None})
