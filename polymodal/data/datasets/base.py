"""Shared helpers and the registry of built-in datasets."""

from __future__ import annotations

import gzip
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from polymodal.errors import DatasetSourceError
from polymodal.utils.io import atomic_write, atomic_write_json

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """A built-in dataset.

    Attributes:
        name: what ``polymodal datasets prepare NAME`` takes.
        description: one line for ``datasets list``.
        prepare: ``prepare(out_dir, source, seed, **options) -> summary dict``.
        source: what the source folder must hold (None: embedded, no source needed).
        folders: the folders ``prepare`` writes its files into, directly in the output folder
            (besides the manifests and ``dataset.json``): what ``--overwrite`` may replace.
    """

    name: str
    description: str
    prepare: Callable[..., dict[str, Any]]
    source: str | None = None
    folders: tuple[str, ...] = ()

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options ``prepare`` takes besides the output folder, the source and the seed."""
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return tuple(p.name for p in inspect.signature(self.prepare).parameters.values()
                     if p.kind in kinds and p.name not in ("out", "source", "seed"))


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, description: str, source: str | None = None, *, folders: tuple[str, ...]
                     ) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    """Register a dataset's ``prepare`` function under ``name`` (see :class:`DatasetSpec`)."""

    def decorator(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        if name in DATASETS:
            raise ValueError(f"dataset '{name}' is already registered")
        DATASETS[name] = DatasetSpec(name, description, fn, source, folders)
        return fn

    return decorator


def require(path: Path, what: str, dataset: str, source: Path | None = None) -> Path:
    """``path`` if it exists, else a DatasetSourceError naming what was expected; when ``path``
    lies in the ``--source`` folder and a folder above that one holds it (``--source data/fsdd``
    for ``fsdd-mnist``, which wants ``data``: the folder holding ``fsdd/``), the error says so."""
    if path.exists():
        return path
    hint = ""
    if source is not None and path.is_relative_to(source):
        within = path.relative_to(source)
        above = next((folder for folder in Path(source).resolve().parents if (folder / within).exists()), None)
        if above is not None:
            hint = (f"; --source is the folder holding {within.parts[0]}/, and {above} holds {within}: give "
                    f"--source {above}")
    raise DatasetSourceError(f"dataset '{dataset}': expected {what} at {path}, but it does not exist{hint}")


def read_idx_images(path: Path) -> np.ndarray:
    """MNIST idx3 (optionally gzipped) -> (N, 28, 28) uint8."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    magic, count, rows, cols = np.frombuffer(data[:16], ">i4")
    if magic != 2051:
        raise DatasetSourceError(f"{path} is not an idx3 image file (magic {magic}, expected 2051)")
    return np.frombuffer(data[16:], np.uint8).reshape(count, rows, cols)


def read_idx_labels(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    magic, count = np.frombuffer(data[:8], ">i4")
    if magic != 2049:
        raise DatasetSourceError(f"{path} is not an idx1 label file (magic {magic}, expected 2049)")
    return np.frombuffer(data[8:], np.uint8)[:count].astype(np.int64)


def save_images(images: np.ndarray, folder: Path, prefix: str) -> list[str]:
    """Write (N, H, W) or (N, H, W, 3) uint8 images as PNG; return paths relative to the folder's parent."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, image in enumerate(images):
        name = f"{prefix}{i:05d}.png"
        Image.fromarray(image).save(folder / name, optimize=False)
        names.append(f"{folder.name}/{name}")
    return names


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation that interleaves classes, so any prefix is (nearly) stratified."""
    keys = np.empty(len(labels))
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        keys[idx] = (rng.permutation(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.argsort(keys, kind="stable")


def write_splits(out: Path, frames: Mapping[str, pd.DataFrame], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``<split>.csv`` manifests and ``dataset.json``; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {**meta, "rows": {split: len(frame) for split, frame in frames.items()}}
    for split, frame in frames.items():
        atomic_write(out / f"{split}.csv", lambda tmp, f=frame: f.to_csv(tmp, index=False))
    atomic_write_json(out / "dataset.json", summary)
    return summary


def summarise(folder: Path) -> str:
    """A short text summary of a prepared dataset folder."""
    meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    lines = [f"{meta.get('name', folder.name)} in {folder}"]
    for split in SPLITS:
        path = folder / f"{split}.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            label = meta.get("target")
            counts = frame[label].value_counts().sort_index().to_dict() if label in frame else {}
            lines.append(f"  {split}: {len(frame)} rows, columns {list(frame.columns)}"
                         + (f", {len(counts)} classes" if counts else ""))
    return "\n".join(lines)
