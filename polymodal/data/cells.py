"""Cells: the values of one modality's columns, read from a manifest block by block, and what a
single cell means (empty: the modality is missing; its text)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from polymodal.utils.values import blank

if TYPE_CHECKING:  # a Cells view reads a Manifest's frame and resolves its paths
    from polymodal.data.manifest import Manifest

BLOCK = 65_536  # rows turned into Python objects at a time


class Cells(Sequence):
    """The cells of one modality, read from the manifest only when asked for.

    ``cells[i]`` is an absolute path (file modalities), an inline value, a tuple of values
    (multi-column tabular), or None where the modality is missing. Indexing with a slice or an
    integer array reads just those rows and returns a list, and iteration goes block by block,
    so a million-row manifest never becomes a million Python objects at once.
    """

    def __init__(self, manifest: Manifest, columns: Sequence[str], file_based: bool, rows: np.ndarray | None = None):
        self.manifest = manifest
        self.columns = list(columns)
        self.file_based = file_based
        self._rows = rows  # None: every manifest row, in order
        self._unreadable: dict[str, np.ndarray] | None = None  # inline cells validation found unusable, by column

    def __len__(self) -> int:
        return len(self.manifest) if self._rows is None else len(self._rows)

    def __getitem__(self, index):  # type: ignore[override]  # int -> cell, slice / int array -> list
        if isinstance(index, (int, np.integer)):
            return self._take(self._manifest_rows(np.array([index])))[0]
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        return self._take(self._manifest_rows(_positions(index)))

    def __iter__(self) -> Iterator:
        for start in range(0, len(self), BLOCK):
            yield from self[start:start + BLOCK]

    def subset(self, index: np.ndarray) -> Cells:
        """A view of the cells at ``index`` (positions in this view)."""
        return Cells(self.manifest, self.columns, self.file_based, self._manifest_rows(_positions(index)))

    def present(self) -> np.ndarray:
        """(len,) bool: where the modality is present."""
        out = np.zeros(len(self), bool)
        for start in range(0, len(self), BLOCK):
            columns = self._raw(self._manifest_rows(np.arange(start, min(start + BLOCK, len(self)))))
            if len(columns) == 1:  # the usual cell, a non-blank string, decided without a call
                out[start:start + BLOCK] = [(v != "" and not v.isspace()) if type(v) is str else not is_empty(v)
                                            for v in columns[0]]
            else:
                out[start:start + BLOCK] = [not all(is_empty(v) for v in row) for row in zip(*columns)]
        return out

    def _manifest_rows(self, index: np.ndarray) -> np.ndarray:
        return index if self._rows is None else self._rows[index]

    def _raw(self, rows: np.ndarray) -> list[list]:
        """The cells of ``rows`` (manifest positions) column by column; an inline cell validation
        recorded as unusable (a number column's ``'?'`` under ``data.on_error: missing``,
        :meth:`~polymodal.data.manifest.Manifest.absent`) reads as missing (None)."""
        manifest = self.manifest
        columns = [manifest.take(c, rows) if c in manifest.columns else [None] * len(rows) for c in self.columns]
        if self.file_based:  # a file that is not there is skipped and listed by encoding, not blanked here
            return columns
        if self._unreadable is None:
            self._unreadable = {c: found for c in self.columns if len(found := manifest.absent(c)[0])}
        for j, column in enumerate(self.columns):
            if column in self._unreadable:
                for k in np.flatnonzero(np.isin(rows, self._unreadable[column])).tolist():
                    columns[j][k] = None
        return columns

    def _take(self, rows: np.ndarray) -> list:
        columns = self._raw(rows)
        if len(columns) > 1:
            return [None if all(is_empty(v) for v in row) else row for row in zip(*columns)]
        if self.file_based:
            return self.manifest.resolve_all(columns[0])
        return [None if is_empty(v) else v for v in columns[0]]


def _positions(index: Iterable[int] | np.ndarray) -> np.ndarray:
    """Integer positions from integers or a boolean mask."""
    index = np.asarray(index)
    return np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64, copy=False)


def is_empty(value: object) -> bool:
    """True for the cells that mean 'missing': None, NaN, NA and blank strings."""
    return value is pd.NA or blank(value)


def cell_text(value: object) -> str:
    """A cell's value as text; a whole-number float reads as the integer it holds (``12``, not
    ``12.0``): a column of codes with a blank is typed float by Parquet and DataFrames, and the
    same cell of a CSV reads ``12``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
