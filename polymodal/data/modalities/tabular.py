"""Tabular fields grouped as one modality: numeric columns (imputed, optionally flagged when
missing, scaled) and categorical columns (a vocabulary per column, index 0 = unknown/missing).

A row's cell is the tuple of its values for ``columns + categorical``; the modality counts as
missing only when all of them are empty.

Cached form: ``num`` float32 (n_numeric [+ n_numeric missing flags]) and ``cat`` int64
(n_categorical).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from polymodal.config.modalities import TabularModality, TabularPreprocess
from polymodal.data.manifest import is_empty
from polymodal.data.modalities.base import PREPROCESSORS, ArraySpec, Preprocessor
from polymodal.errors import DecodeError, NotFittedError


def _number(value: Any, column: str) -> float:
    if is_empty(value):
        return float("nan")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DecodeError(f"column '{column}' must be numeric; got {value!r}") from None
    if np.isinf(number):
        raise DecodeError(f"column '{column}' holds an infinite value")
    return number


def _category(value: Any) -> str | None:
    """The category key of a cell; whole-number floats are keyed like ints ('3.0' -> '3'), since a
    column with a blank is read as float and the same column without one as int."""
    if is_empty(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_row(value: Any) -> Sequence[Any]:
    """A cell as a sequence of column values (a modality with a single column has scalar cells)."""
    return value if isinstance(value, tuple | list) else (value,)


@PREPROCESSORS.register(TabularModality)
class TabularPreprocessor(Preprocessor):
    """See the module docstring."""

    kind = "tabular"
    file_based = False

    def __init__(self, name: str, cfg: TabularPreprocess, numeric: list[str], categorical: list[str]):
        super().__init__(name)
        self.cfg = cfg
        self.numeric = numeric
        self.categorical = categorical
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.fill: np.ndarray | None = None
        self.categories: dict[str, list[str]] | None = None
        self._lookup: dict[str, dict[str, int]] = {}

    @classmethod
    def from_config(cls, cfg: TabularModality, *, name: str) -> TabularPreprocessor:
        return cls(name, cfg.preprocess, list(cfg.columns), list(cfg.categorical))

    def _split(self, row: Sequence[Any]) -> tuple[np.ndarray, list[str | None]]:
        row = _as_row(row)
        n = len(self.numeric)
        numbers = np.asarray([_number(v, c) for v, c in zip(row[:n], self.numeric)], np.float64)
        return numbers, [_category(v) for v in row[n:]]

    def _split_lenient(self, row: Sequence[Any]) -> tuple[np.ndarray, list[str | None]]:
        """Like _split, but unparsable numbers count as missing (encoding reports them, with their row)."""
        row = _as_row(row)
        try:
            return self._split(row)
        except DecodeError:
            n = len(self.numeric)
            numbers = []
            for v, c in zip(row[:n], self.numeric):
                try:
                    numbers.append(_number(v, c))
                except DecodeError:
                    numbers.append(float("nan"))
            return np.asarray(numbers, np.float64), [_category(v) for v in row[n:]]

    def fit(self, values: Sequence[Sequence[Any]]) -> None:
        rows = [self._split_lenient(v) for v in values]
        numbers = np.stack([r[0] for r in rows]) if self.numeric else np.zeros((len(rows), 0))
        with np.errstate(all="ignore"):
            mean = np.nanmean(numbers, axis=0) if len(numbers) else np.zeros(0)
        mean = np.where(np.isnan(mean), 0.0, mean)
        if self.cfg.impute == "median":
            fill = np.nanmedian(np.where(np.isnan(numbers).all(axis=0), 0.0, numbers), axis=0)
        elif self.cfg.impute == "zero":
            fill = np.zeros(len(self.numeric))
        else:
            fill = mean
        filled = np.where(np.isnan(numbers), fill, numbers)
        if self.cfg.scale == "standard":
            center, scale = filled.mean(axis=0), filled.std(axis=0)
        elif self.cfg.scale == "minmax":
            center, scale = filled.min(axis=0), filled.max(axis=0) - filled.min(axis=0)
        else:
            center, scale = np.zeros(len(self.numeric)), np.ones(len(self.numeric))
        self.fill = fill.astype(np.float32)
        self.center = center.astype(np.float32)
        self.scale = np.where(scale > 1e-12, scale, 1.0).astype(np.float32)
        self.categories = {}
        for j, column in enumerate(self.categorical):
            counts = Counter(r[1][j] for r in rows if r[1][j] is not None)
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = [k for k, c in ranked if c >= self.cfg.min_category_count][: self.cfg.max_categories]
            self.categories[column] = sorted(kept)
        self._build_lookup()

    def decode(self, value: Any) -> tuple[np.ndarray, np.ndarray]:
        if self.categories is None:
            raise NotFittedError(f"tabular modality '{self.name}' is not fitted")
        numbers, cats = self._split(value)
        missing = np.isnan(numbers)
        scaled = (np.where(missing, self.fill, numbers) - self.center) / self.scale
        num = np.concatenate([scaled, missing.astype(np.float64)]) if self.cfg.missing_indicator else scaled
        index = [
            0 if cat is None or cat not in self._lookup[col] else self._lookup[col][cat]
            for col, cat in zip(self.categorical, cats)
        ]
        return num.astype(np.float32), np.asarray(index, np.int64)

    def _build_lookup(self) -> None:
        self._lookup = {col: {c: i + 1 for i, c in enumerate(cats)} for col, cats in (self.categories or {}).items()}

    def featurize(self, samples: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
        return {
            "num": np.stack([s[0] for s in samples]).reshape(len(samples), self.n_numeric_features),
            "cat": np.stack([s[1] for s in samples]).reshape(len(samples), len(self.categorical)),
        }

    @property
    def n_numeric_features(self) -> int:
        return len(self.numeric) * (2 if self.cfg.missing_indicator else 1)

    def spec(self) -> dict[str, ArraySpec]:
        return {"num": ArraySpec((self.n_numeric_features,), "float32"),
                "cat": ArraySpec((len(self.categorical),), "int64")}

    def to_batch(self, arrays: Mapping[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        return {"x": arrays["num"].float(), "cat": arrays["cat"].long()}

    def encoder_context(self) -> dict[str, Any]:
        cards = [len(self.categories[c]) + 1 for c in self.categorical] if self.categories is not None else []
        return {"n_numeric": self.n_numeric_features, "cardinalities": cards}

    def get_state(self) -> dict[str, Any]:
        if self.categories is None:
            return {}
        return {"fill": self.fill.tolist(), "center": self.center.tolist(), "scale": self.scale.tolist(),
                "categories": self.categories}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if "categories" in state:
            self.fill = np.asarray(state["fill"], np.float32)
            self.center = np.asarray(state["center"], np.float32)
            self.scale = np.asarray(state["scale"], np.float32)
            self.categories = {k: list(v) for k, v in state["categories"].items()}
            self._build_lookup()

    def encoding_state(self) -> dict[str, Any]:
        return {**self.get_state(), "numeric": self.numeric, "categorical": self.categorical}
