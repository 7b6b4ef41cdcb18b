"""``fsdd-mnist``: Free Spoken Digit Dataset recordings paired with MNIST images of the same digit.

Source layout (like ``../shared/data``): ``fsdd/recordings/{digit}_{speaker}_{index}.wav`` and
``mnist/t10k-images-idx3-ubyte.gz`` + ``mnist/t10k-labels-idx1-ubyte.gz``.

Splits: ``speaker`` (default) holds out whole speakers (``test_speakers``, default theo and
yweweler) so test voices are unseen; ``official`` uses FSDD's split (recording index 0-4 is test). In both, test rows get
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
from polymodal.errors import DatasetOptionError, DatasetSourceError

_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")
SPLITS = ("speaker", "official")
DEFAULT_TEST_SPEAKERS = ("theo", "yweweler")


def read_fsdd(source: Path, dataset: str = "fsdd-mnist") -> pd.DataFrame:
    """One row per recording: path, digit, speaker, index (``dataset`` names the caller in errors)."""
    folder = require(source / "fsdd" / "recordings", "the FSDD recordings folder", dataset, source)
    rows = []
    for path in sorted(folder.glob("*.wav")):
        match = _NAME.match(path.name)
        if match:
            rows.append({"path": path, "digit": int(match[1]), "speaker": match[2], "index": int(match[3])})
    if not rows:
        raise DatasetSourceError(f"dataset '{dataset}': no recordings named DIGIT_SPEAKER_INDEX.wav in {folder}")
    return pd.DataFrame(rows)


def read_mnist_test(source: Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx_images(require(source / "mnist" / "t10k-images-idx3-ubyte.gz", "the MNIST test images", dataset,
                                         source))
    labels = read_idx_labels(require(source / "mnist" / "t10k-labels-idx1-ubyte.gz", "the MNIST test labels", dataset,
                                         source))
    return images, labels


@register_dataset("fsdd-mnist", "FSDD spoken digits + MNIST images of the same digit (speaker or official split)",
                  source="fsdd/recordings/*.wav and mnist/t10k-*.gz", folders=("audio", "images"))
def prepare_fsdd_mnist(out: Path, source: Path, seed: int = 0, split: str = "speaker",
                       test_speakers: Sequence[str] | None = None, **_: Any) -> dict[str, Any]:
    """Write images, audio and ``train/valid/test.csv`` into ``out``.

    Args:
        split: one of ``SPLITS``.
        test_speakers: the speakers held out for test with split ``speaker`` (None: ``DEFAULT_TEST_SPEAKERS``).
    """
    out, source = Path(out), Path(source)
    _check_split(split, test_speakers)
    clips = read_fsdd(source)
    images, labels = read_mnist_test(source, "fsdd-mnist")
    if split == "speaker":
        test_speakers = DEFAULT_TEST_SPEAKERS if test_speakers is None else tuple(test_speakers)
        _check_test_speakers(test_speakers, sorted(clips["speaker"].unique()), source)
        is_test = clips["speaker"].isin(test_speakers).to_numpy()
    else:  # official
        is_test = (clips["index"] < 5).to_numpy()
    _refuse_an_empty_split(int((~is_test).sum()), int(is_test.sum()), split, source)
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


def _refuse_an_empty_split(n_train: int, n_test: int, split: str, source: Path) -> None:
    """Refused before anything is written: a split would hold no clip (validation takes 10% of the
    training clips, rounded half to even, so it needs at least 6 of them)."""
    if n_train < 6 or n_test == 0:
        raise DatasetSourceError(f"dataset 'fsdd-mnist': split '{split}' leaves {n_train} training clip(s) (validation "
                                 f"takes 10% of them, rounded, so at least 6 are needed) and {n_test} test clip(s) (at least 1) "
                                 f"of the recordings in {source / 'fsdd' / 'recordings'}: a split would be empty")


def _check_split(split: str, test_speakers: Sequence[str] | None) -> None:
    if split not in SPLITS:
        allowed = " or ".join(f"'{s}'" for s in SPLITS)
        raise DatasetOptionError(f"dataset 'fsdd-mnist': split must be {allowed}; got '{split}'",
                                 dataset="fsdd-mnist", option="split")
    if test_speakers is not None and split != "speaker":
        raise DatasetOptionError(f"dataset 'fsdd-mnist': test speakers (--test-speaker) are only allowed with split "
                                 f"'speaker'; got split '{split}' with test speakers {list(test_speakers)}",
                                 dataset="fsdd-mnist", option="test_speakers")


def _check_test_speakers(test_speakers: Sequence[str], found: list[str], source: Path) -> None:
    """The held-out speakers must exist in the source and leave at least one speaker for training."""
    unknown = sorted(set(test_speakers) - set(found))
    if unknown:
        raise DatasetOptionError(f"dataset 'fsdd-mnist': test speakers {unknown} not in the recordings of "
                                 f"{source / 'fsdd' / 'recordings'}; speakers found: {found}",
                                 dataset="fsdd-mnist", option="test_speakers")
    if not test_speakers or set(test_speakers) == set(found):
        raise DatasetOptionError(f"dataset 'fsdd-mnist': the test speakers must be at least one of the speakers "
                                 f"found and leave at least one for training; found {found}, got {list(test_speakers)}",
                                 dataset="fsdd-mnist", option="test_speakers")
