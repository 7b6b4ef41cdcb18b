"""A starting config from a manifest: ``polymodal config init --data train.csv --target label``.

Each column becomes what its cells hold, judged on a sample of the rows:

- paths to image files (``.png``, ``.jpg``...) -> an ``image`` modality, its size and colour from
  the first readable file; audio files (``.wav``, ``.flac``, ``.ogg``, ``.mp3``) -> ``audio`` at
  the files' sample rate (at most 16 kHz) and their longest duration (at most 10 s); videos ->
  ``video``; arrays (``.npy``, ``.npz``, ``.mat``) -> ``signal`` of the longest length found, or
  ``image`` for a ``.npy`` that holds a picture ((H, W) both above 16, or (H, W, 1|3|4));
- numbers -> one ``tabular`` modality (``columns``); true / false values and short text labels
  repeated across rows (at most 50 distinct values, each seen twice on average) -> its
  ``categorical`` columns; a number or category that determines the target in the rows looked
  at is kept but flagged (a recording's id, the label under another name: a leak?);
- other text -> a ``text`` modality;
- identifiers (a column named ``id`` / ``*_id``, or text unique to every row that is no sentence)
  and columns that are empty in every row are left out, and said so.

The task follows the target: text labels or at most 50 distinct whole numbers -> classification,
other numbers -> regression; several 0/1 targets -> multilabel. Every decision comes back with its
reason (:class:`Inference`), and the config is validated before it is returned.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.cells import is_empty
from polymodal.data.manifest import Manifest, read_manifest
from polymodal.data.video_io import FRAME_SUFFIXES, VIDEO_SUFFIXES
from polymodal.errors import ManifestError
from polymodal.utils.suggest import did_you_mean

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3"})
ARRAY_SUFFIXES = frozenset({".npy", ".npz", ".mat"})
SAMPLE_ROWS = 200  # rows whose cells are judged
SAMPLE_FILES = 20  # files opened per file column
MAX_CATEGORIES = 50
MAX_IMAGE_SIDE = 128  # larger pictures are resized to this (a CPU-sized start; raise it on a GPU)


@dataclass
class Inference:
    """The inferred config (a dict, as a YAML file holds it) and, per column, what it became and why."""

    config: dict[str, Any]
    columns: list[tuple[str, str, str]] = field(default_factory=list)  # (column, became, why)


def infer_config(data: str | os.PathLike | pd.DataFrame, target: str | Sequence[str] | None) -> Inference:
    """A config for ``data`` (a manifest file or DataFrame) predicting ``target`` (None: an
    anomaly detector's unlabelled rows are not guessed; give the target column(s)).

    Raises:
        ManifestError: a target column the manifest does not have, or no column left to learn from.
    """
    manifest = read_manifest(data)
    targets = [target] if isinstance(target, str) else list(target or [])
    missing = [t for t in targets if t not in manifest.columns]
    if missing:
        raise ManifestError([f"target column '{t}' is not in {manifest.name}{did_you_mean(t, manifest.columns)}; "
                             f"it has {list(manifest.columns)}" for t in missing], source=manifest.name)
    rows = np.unique(np.linspace(0, len(manifest) - 1, min(len(manifest), SAMPLE_ROWS)).astype(np.int64))  # spread
    result = Inference({})
    modalities: dict[str, Any] = {}
    numbers: list[str] = []
    categories: list[str] = []
    for column in manifest.columns:
        if column in targets:
            continue
        kind, why, settings = _judge(manifest, str(column), rows)
        if kind in ("number", "category") and targets and _determines(manifest, str(column), targets, rows):
            why += "; it determines the target in the rows looked at (a leak?)"
        result.columns.append((str(column), kind, why))
        if kind == "number":
            numbers.append(str(column))
        elif kind == "category":
            categories.append(str(column))
        elif kind in ("image", "audio", "video", "signal", "text"):
            modalities[_name(_stem(str(column)), modalities)] = {"kind": kind, "column": str(column), **settings}
    if numbers or categories:
        modalities[_name("table", modalities)] = {"kind": "tabular", "columns": numbers, "categorical": categories}
    if not modalities:
        raise ManifestError([f"{manifest.name}: no column to learn from (each was a target, an identifier or empty): "
                             + "; ".join(f"'{c}': {why}" for c, _, why in result.columns)], source=manifest.name)
    task, task_why = _task(manifest, targets)
    result.columns.extend((t, f"target ({task})", task_why) for t in targets)
    config: dict[str, Any] = {"task": task}
    if targets:
        config["target"] = targets[0] if len(targets) == 1 else targets
    config["modalities"] = modalities
    config["fusion"] = {"name": "attention" if len(modalities) > 1 else "concat"}
    from polymodal.config import load_config

    load_config(config)  # what is returned is a valid config
    result.config = config
    return result


def _stem(column: str) -> str:
    """A file column's name without a ``_path`` / ``_file`` ending (``de_path`` -> ``de``)."""
    for ending in ("_path", "_file", "_filename", "_files", "_paths"):
        if column.lower().endswith(ending) and len(column) > len(ending):
            return column[: -len(ending)]
    return column


def _determines(manifest: Manifest, column: str, targets: list[str], rows: np.ndarray) -> bool:
    """Whether, in ``rows``, the column takes several values and each goes with one target value
    (as an identifier of a recording, or the target under another name, would)."""
    frame = manifest.select([column, *targets], rows).dropna()
    frame = frame.astype(str)
    if frame[column].nunique() < 2 or frame[column].nunique() > MAX_CATEGORIES:
        return False
    return bool((frame.groupby(column)[targets].nunique() <= 1).all().all())


def _name(base: str, taken: dict[str, Any]) -> str:
    """A modality name (an identifier) from a column name, not yet taken."""
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in base.strip()) or "m"
    name = f"m_{name}" if name[0].isdigit() else name
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def _judge(manifest: Manifest, column: str, rows: np.ndarray) -> tuple[str, str, dict[str, Any]]:
    """(what the column is, why, the modality's settings) from the cells at ``rows``."""
    cells = [c for c in manifest.take(column, rows) if not is_empty(c)]
    if not cells:
        return "skipped", "empty in the rows looked at", {}
    lowered = column.strip().lower()
    if lowered in ("id", "index", "row", "uuid") or lowered.endswith("_id"):
        return "skipped", "an identifier, by its name", {}
    if all(isinstance(c, bool | np.bool_) or str(c).strip().lower() in ("true", "false") for c in cells):
        return "category", "true / false values", {}
    numeric = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce")
    if numeric.notna().all():
        return "number", "numbers", {}
    text = [str(c) for c in cells]
    suffixes = {Path(t).suffix.lower() for t in text}
    if len(suffixes) == 1 and "" not in suffixes and all(" " not in t.strip() for t in text):
        return _files(manifest, column, rows, suffixes.pop())
    distinct = len(set(text))
    words = np.mean([len(t.split()) for t in text])
    if distinct <= MAX_CATEGORIES and distinct * 2 <= len(text) and words < 4:
        return "category", f"{distinct} distinct values repeated across rows", {}
    if distinct == len(text) and words < 2:
        return "skipped", "text unique to every row, no sentences: an identifier", {}
    lengths = sorted(len(t.split()) for t in text)
    tokens = int(min(512, max(16, 2 ** math.ceil(math.log2(max(1, lengths[int(0.95 * (len(lengths) - 1))]))))))
    return "text", f"free text (about {int(np.median(lengths))} words a row)", {"preprocess": {"max_tokens": tokens}}


def _files(manifest: Manifest, column: str, rows: np.ndarray, suffix: str) -> tuple[str, str, dict[str, Any]]:
    """What a column of ``suffix`` files is, judged on the first readable ones."""
    paths = [p for p in manifest.resolve_all(manifest.take(column, rows[:SAMPLE_FILES])) if p is not None]
    readable = [p for p in paths if os.path.isfile(p) or os.path.isdir(p)]
    if not readable:
        return "skipped", f"'{suffix}' paths, none of the first {len(paths)} found (relative to {manifest.root})", {}
    if suffix in FRAME_SUFFIXES:
        return "image", f"{suffix} images", _image_settings(readable[0])
    if suffix in AUDIO_SUFFIXES:
        return "audio", f"{suffix} audio", _audio_settings(readable)
    if suffix in VIDEO_SUFFIXES:
        return "video", f"{suffix} videos", {}
    if suffix in ARRAY_SUFFIXES:
        return _arrays(readable, suffix)
    return "skipped", f"'{suffix}' files: no modality reads them", {}


def _image_settings(path: str) -> dict[str, Any]:
    from PIL import Image

    with Image.open(path) as image:
        side, mode = max(image.size), image.mode
    color = "gray" if mode in ("1", "L", "LA", "I", "I;16", "F") else "rgb"
    return {"preprocess": {"size": int(min(side, MAX_IMAGE_SIDE)), "color": color, "normalize": "standard"}}


def _audio_settings(paths: list[str]) -> dict[str, Any]:
    import soundfile

    infos = []
    for path in paths:
        try:
            infos.append(soundfile.info(path))
        except (RuntimeError, soundfile.LibsndfileError):
            continue
    if not infos:
        return {}
    rate = int(min(16_000, max(i.samplerate for i in infos)))
    seconds = min(10.0, max(i.duration for i in infos))
    return {"preprocess": {"sample_rate": rate, "max_seconds": round(max(seconds, 0.1), 2)}}


def _arrays(paths: list[str], suffix: str) -> tuple[str, str, dict[str, Any]]:
    """A ``.npy`` picture is an image; any other array a signal as long as the longest one seen."""
    from polymodal.data.modalities.signal import read_signal
    from polymodal.errors import DecodeError

    if suffix == ".npy":
        shape = np.load(paths[0], mmap_mode="r").shape
        if (len(shape) == 2 and min(shape) > 16) or (len(shape) == 3 and shape[-1] in (1, 3, 4) and min(shape[:2]) > 16):
            return "image", f".npy pictures ({'x'.join(map(str, shape))})", {"preprocess": {
                "size": int(min(max(shape[:2]), MAX_IMAGE_SIDE)), "color": "rgb" if len(shape) == 3 and shape[-1] > 1
                else "gray", "normalize": "standard"}}
    lengths = []
    for path in paths:
        try:
            lengths.append(read_signal(path).shape[-1])
        except DecodeError:
            continue
    if not lengths:
        return "skipped", f"{suffix} arrays, none of the first {len(paths)} readable", {}
    return "signal", f"{suffix} signals of up to {max(lengths):,} samples", {"preprocess": {"length": int(max(lengths))}}


def _task(manifest: Manifest, targets: list[str]) -> tuple[str, str]:
    """The task the targets ask for, and why."""
    if not targets:
        return "anomaly", "no target: an anomaly detector learns what the rows look like"
    values = [manifest.column(t).dropna() for t in targets]
    numbers = [pd.to_numeric(v, errors="coerce") for v in values]
    if len(targets) > 1:
        if all(n.notna().all() and set(n.unique()) <= {0, 1} for n in numbers):
            return "multilabel", "several 0/1 columns"
        return "regression", "several target columns"
    number = numbers[0]
    if not number.notna().all():
        return "classification", f"{values[0].nunique()} text labels"
    whole = bool((number == number.round()).all())
    if whole and number.nunique() <= MAX_CATEGORIES:
        return "classification", f"{number.nunique()} distinct whole numbers"
    return "regression", "numbers"
