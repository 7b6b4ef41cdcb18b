"""Tiny source folders laid out like the real ones in ../shared/data (never read by these tests)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile


def write_idx_images(path: Path, images: np.ndarray, magic: int = 2051) -> None:
    """(N, H, W) uint8 -> an idx3 file (gzipped when the name ends in .gz)."""
    n, h, w = images.shape
    header = np.asarray([magic, n, h, w], ">i4").tobytes()
    _write(path, header + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray, magic: int = 2049) -> None:
    header = np.asarray([magic, len(labels)], ">i4").tobytes()
    _write(path, header + labels.astype(np.uint8).tobytes())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(data)


def digit_images(labels: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 images whose pixels encode their index (so every image is unique)."""
    n = len(labels)
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 0, 0] = np.arange(n) % 256
    images[:, 0, 1] = np.arange(n) // 256
    images[:, 1, :] = labels[:, None] * 20
    return images


def make_mnist(source: Path, n: int = 10_000) -> np.ndarray:
    """``mnist/t10k-{images-idx3,labels-idx1}-ubyte.gz`` with ``n`` images; returns the labels."""
    labels = np.arange(n) % 10
    write_idx_images(source / "mnist" / "t10k-images-idx3-ubyte.gz", digit_images(labels))
    write_idx_labels(source / "mnist" / "t10k-labels-idx1-ubyte.gz", labels)
    return labels


def make_fsdd(source: Path, speakers: dict[str, int], sample_rate: int = 8000) -> list[Path]:
    """``fsdd/recordings/{digit}_{speaker}_{index}.wav``: ``speakers[name]`` takes per digit."""
    folder = source / "fsdd" / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(0)
    for speaker, takes in speakers.items():
        for digit in range(10):
            for index in range(takes):
                path = folder / f"{digit}_{speaker}_{index}.wav"
                soundfile.write(path, rng.uniform(-0.5, 0.5, 400).astype(np.float32), sample_rate)
                paths.append(path)
    return paths


def make_usps(source: Path, n_train: int = 50, n_test: int = 20) -> None:
    """``usps/usps.h5`` with groups train/test holding ``data`` (N, 256) in [0, 1] and ``target``."""
    import h5py

    folder = source / "usps"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with h5py.File(folder / "usps.h5", "w") as h5:
        for group, n in (("train", n_train), ("test", n_test)):
            g = h5.create_group(group)
            g.create_dataset("data", data=rng.random((n, 256)))
            g.create_dataset("target", data=np.arange(n) % 10)


def make_pneumoniamnist(source: Path, sizes: dict[str, int]) -> None:
    """``pneumoniamnist/pneumoniamnist.npz`` with ``{train,val,test}_{images,labels}``."""
    folder = source / "pneumoniamnist"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in sizes.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    np.savez(folder / "pneumoniamnist.npz", **arrays)


def make_cwru(source: Path, recordings: dict[str, tuple[str, int, int]], length: int) -> None:
    """``cwru/files.csv`` (file, fault, load_hp, rpm) and one ``<file>.npz`` with ``de`` and ``fe``.

    Each recording's ``de`` channel holds 0, 1, 2... so a window's first value is its start.
    """
    folder = source / "cwru"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (fault, load, rpm) in recordings.items():
        np.savez(folder / f"{name}.npz", de=np.arange(length, dtype=np.float64).reshape(-1, 1),
                 fe=-np.arange(length, dtype=np.float64).reshape(-1, 1))
        rows.append({"file": name, "fault": fault, "load_hp": load, "rpm": rpm})
    pd.DataFrame(rows).to_csv(folder / "files.csv", index=False)


def assert_writes_its_own_entries(out: Path, name: str) -> None:
    """A preparation of dataset ``name`` wrote, directly in ``out``, the manifests, the summary,
    the marker and its declared folders, nothing else: what ``--overwrite`` may replace is
    exactly what it writes."""
    from polymodal.data.datasets import DATASETS
    from polymodal.data.datasets.out_folder import MARKER, SUMMARY

    expected = {MARKER, SUMMARY, "train.csv", "valid.csv", "test.csv", *DATASETS[name].folders}
    assert {entry.name for entry in out.iterdir()} == expected
