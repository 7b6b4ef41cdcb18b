"""Targets: class labels <-> indices, multilabel 0/1 columns, standardised regression values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.manifest import Manifest, is_empty
from polymodal.errors import NotFittedError, SchemaMismatchError


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (JSON-able, comparable across CSV round trips)."""
    return value.item() if hasattr(value, "item") else value


class TargetEncoder:
    """Encodes the target column(s) of a manifest for one task.

    Classification labels keep their original values (ints or strings) in ``classes``, sorted;
    regression targets are standardised with training mean/std and de-standardised on output.
    """

    def __init__(self, task: str, columns: list[str]):
        self.task = task
        self.columns = columns
        self.classes: list[Any] | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def categorical(self) -> bool:
        """Class labels: task classification, or task retrieval with a target column."""
        return self.task == "classification" or (self.task == "retrieval" and bool(self.columns))

    @property
    def n_outputs(self) -> int:
        if self.categorical:
            if self.classes is None:
                raise NotFittedError("target encoder is not fitted")
            return len(self.classes)
        return len(self.columns)

    @property
    def task_outputs(self) -> dict[str, int] | None:
        """Outputs per task of a multi-task model (see :mod:`polymodal.data.multitarget`); None: one task."""
        return None

    def fit(self, manifest: Manifest) -> TargetEncoder:
        frame = manifest.frame
        if self.categorical:
            values = [_plain(v) for v in frame[self.columns[0]].tolist() if not is_empty(v)]
            self.classes = sorted(set(values), key=lambda v: (isinstance(v, str), v))
            if len(self.classes) < 2:
                raise SchemaMismatchError(
                    f"classification needs at least 2 classes in target column '{self.columns[0]}' of "
                    f"{manifest.name}; found {self.classes}"
                )
        elif self.task == "regression":
            values = frame[self.columns].apply(pd.to_numeric).to_numpy(np.float64)
            self.mean = values.mean(axis=0).astype(np.float32)
            self.std = np.maximum(values.std(axis=0), 1e-8).astype(np.float32)
        return self

    def encode(self, manifest: Manifest, rows: np.ndarray | None = None) -> np.ndarray:
        """(N,) int64 class indices, or (N, K) float32 for multilabel/regression.

        Args:
            rows: encode only these manifest rows (errors still name the manifest's own rows).

        Raises:
            SchemaMismatchError: a label not seen in training.
        """
        rows = np.arange(len(manifest)) if rows is None else np.asarray(rows)
        frame = manifest.frame[[c for c in self.columns if c in manifest.frame.columns]].iloc[rows]  # not every column
        if self.categorical:
            index = {c: i for i, c in enumerate(self.classes or [])}
            out = np.empty(len(frame), np.int64)
            for i, value in enumerate(frame[self.columns[0]].tolist()):
                key = _plain(value)
                if key not in index:
                    raise SchemaMismatchError(
                        f"{manifest.where(int(rows[i]))}: label {key!r} in column '{self.columns[0]}' was not seen in "
                        f"training; known labels: {self.classes}"
                    )
                out[i] = index[key]
            return out
        if self.task == "retrieval":  # no target column: no labels (-1), each row is its own pair
            return np.full(len(frame), -1, np.int64)
        values = frame[self.columns].apply(pd.to_numeric).to_numpy(np.float32)
        if self.task == "regression":
            values = (values - self.mean) / self.std
        return values

    def decode_values(self, outputs: np.ndarray) -> np.ndarray:
        """Regression outputs back on the original scale."""
        return outputs * self.std + self.mean

    def get_state(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "columns": self.columns,
            "classes": self.classes,
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TargetEncoder:
        encoder = cls(state["task"], list(state["columns"]))
        encoder.classes = state.get("classes")
        if state.get("mean") is not None:
            encoder.mean = np.asarray(state["mean"], np.float32)
            encoder.std = np.asarray(state["std"], np.float32)
        return encoder
