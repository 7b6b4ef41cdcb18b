"""Encoding a manifest into per-modality arrays (decode in a thread pool, featurise per chunk).

The result, an :class:`EncodedTable`, holds for each modality fixed-shape arrays with one row
per manifest row and a presence mask. Absent cells (and, with ``on_error: missing``, files that
failed to decode) are zero rows with ``present = False``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from polymodal.config.modalities import modality_columns
from polymodal.data.manifest import Manifest, is_empty
from polymodal.data.modalities.base import Preprocessor
from polymodal.errors import DecodeError
from polymodal.utils.progress import progress_bar

CHUNK = 256


@dataclass
class EncodedModality:
    """Arrays with a leading axis of N rows, and which rows hold the modality."""

    arrays: dict[str, np.ndarray]
    present: np.ndarray  # (N,) bool


@dataclass
class Skipped:
    """A file (or inline value) that could not be decoded and was skipped."""

    modality: str
    row: int
    where: str
    path: str | None
    reason: str


@dataclass
class EncodedTable:
    """Every modality of a manifest, encoded; ``rows`` maps back to the manifest's row numbers."""

    modalities: dict[str, EncodedModality]
    rows: np.ndarray
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, keep: np.ndarray) -> EncodedTable:
        """Rows where ``keep`` is True."""
        mods = {
            name: EncodedModality({k: v[keep] for k, v in mod.arrays.items()}, mod.present[keep])
            for name, mod in self.modalities.items()
        }
        return EncodedTable(mods, self.rows[keep], self.skipped)


def manifest_cells(manifest: Manifest, modality_cfg: Any, file_based: bool) -> list[Any]:
    """The cell of every row for one modality: an absolute path, an inline value, a tuple of
    values (tabular), or None when the modality is missing for that row."""
    columns = modality_columns(modality_cfg)
    frame = manifest.frame
    absent = [c for c in columns if c not in frame.columns]
    if len(columns) > 1:
        data = [frame[c].tolist() if c in frame.columns else [None] * len(frame) for c in columns]
        rows = list(zip(*data)) if data else [()] * len(frame)
        return [None if all(is_empty(v) for v in row) else row for row in rows]
    if absent:
        return [None] * len(frame)
    values = frame[columns[0]].tolist()
    if file_based:
        return [manifest.resolve(v) for v in values]
    return [None if is_empty(v) else v for v in values]


def _decode_one(preprocessor: Preprocessor, value: Any) -> tuple[Any, DecodeError | None]:
    try:
        return preprocessor.decode(value), None
    except DecodeError as err:
        return None, err


def default_threads() -> int:
    return max(1, min(8, (os.cpu_count() or 1) * 2))


def encode_modality(
    preprocessor: Preprocessor,
    cells: list[Any],
    manifest: Manifest,
    *,
    on_error: str = "raise",
    progress: bool = False,
    out: Mapping[str, np.ndarray] | None = None,
) -> tuple[EncodedModality, list[Skipped]]:
    """Decode and featurise every present cell.

    Args:
        cells: from :func:`manifest_cells`.
        on_error: ``raise`` stops at the first bad file (naming file, row and reason);
            ``skip``/``missing`` record it and leave the row absent.
        out: preallocated arrays to fill (e.g. memory maps); allocated in memory when None.

    Raises:
        DecodeError: a cell could not be decoded and ``on_error`` is ``raise``.
    """
    n = len(cells)
    spec = preprocessor.spec()
    arrays = dict(out) if out is not None else {k: np.zeros((n, *s.shape), s.dtype) for k, s in spec.items()}
    present = np.zeros(n, bool)
    skipped: list[Skipped] = []
    todo = [i for i, cell in enumerate(cells) if cell is not None]
    threads = default_threads() if preprocessor.file_based else 1

    def decode(value: Any) -> tuple[Any, DecodeError | None]:
        return _decode_one(preprocessor, value)

    with progress_bar(len(todo), f"encoding {preprocessor.name}", enabled=progress) as advance, \
            ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(todo), CHUNK):
            rows = todo[start:start + CHUNK]
            results = list(pool.map(decode, [cells[i] for i in rows])) if threads > 1 else [decode(cells[i]) for i in rows]
            good_rows, samples = [], []
            for row, (sample, error) in zip(rows, results):
                if error is None:
                    good_rows.append(row)
                    samples.append(sample)
                    continue
                located = error.located(modality=preprocessor.name, row=row, where=manifest.where(row))
                if on_error == "raise":
                    raise located
                skipped.append(Skipped(preprocessor.name, row, manifest.where(row), error.path, error.reason))
            if samples:
                feats = preprocessor.featurize(samples)
                index = np.asarray(good_rows)
                for key, value in feats.items():
                    arrays[key][index] = value
                present[index] = True
            advance(len(rows))
    return EncodedModality(arrays, present), skipped


def encode_manifest(
    manifest: Manifest,
    preprocessors: Mapping[str, Preprocessor],
    modality_cfgs: Mapping[str, Any],
    *,
    on_error: str = "raise",
    progress: bool = False,
) -> EncodedTable:
    """Encode every modality of a manifest.

    With ``on_error: skip`` rows with any undecodable file are dropped; with ``missing`` only
    that modality is marked absent (rows left with no modality at all are dropped). Either way
    every such file is listed in ``EncodedTable.skipped``.
    """
    encoded, skipped = {}, []
    for name in sorted(preprocessors):
        prep = preprocessors[name]
        cells = manifest_cells(manifest, modality_cfgs[name], prep.file_based)
        encoded[name], bad = encode_modality(prep, cells, manifest, on_error=on_error, progress=progress)
        skipped += bad
    table = EncodedTable(encoded, np.arange(len(manifest)), skipped)
    keep = np.ones(len(manifest), bool)
    if on_error == "skip" and skipped:
        keep[[s.row for s in skipped]] = False
    if skipped:  # rows whose only modalities failed to decode
        keep &= np.any([m.present for m in encoded.values()], axis=0)
    return table if keep.all() else table.select(keep)


def skipped_frame(skipped: list[Skipped]) -> pd.DataFrame:
    """The skipped files as a table (written to ``skipped.csv`` in the run folder)."""
    return pd.DataFrame([s.__dict__ for s in skipped], columns=["modality", "row", "where", "path", "reason"])
