"""Anomaly labels: the target column's values -> 0 (normal), 1 (anomaly), -1 (no label)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from polymodal.data.cells import is_empty
from polymodal.data.manifest import Manifest
from polymodal.data.targets import distinct_labels, label_key
from polymodal.utils.io import python_scalar


class AnomalyTargets:
    """Encodes the optional target column of a ``task: anomaly`` config (same face as the
    classifier's target encoder, so the data pipeline can hold it).

    Args:
        columns: the target column, or none.
        normal: the values that mean normal; any other value is an anomaly.
    """

    task = "anomaly"
    n_outputs = 1
    task_outputs = None

    def __init__(self, columns: Sequence[str], normal: Sequence[Any]):
        self.columns = list(columns)
        self.normal = [label_key(v) for v in normal]

    def fit(self, manifest: Manifest) -> AnomalyTargets:
        """Nothing to learn: the normal values come from the config."""
        return self

    def labels(self, manifest: Manifest, rows: np.ndarray | None = None) -> list[Any]:
        """The raw target values of ``rows`` (None where there is no target)."""
        rows = np.arange(len(manifest)) if rows is None else np.asarray(rows)
        if not self.columns or self.columns[0] not in manifest.columns:
            return [None] * len(rows)
        return [None if is_empty(v) else python_scalar(v) for v in manifest.take(self.columns[0], rows)]

    def encode(self, manifest: Manifest, rows: np.ndarray | None = None) -> np.ndarray:
        """(N,) int64: 0 normal, 1 anomaly, -1 no label."""
        rows = np.arange(len(manifest)) if rows is None else np.asarray(rows)
        if not self.columns or self.columns[0] not in manifest.columns:
            return np.full(len(rows), -1, np.int64)
        codes, _, keys = distinct_labels(manifest.select(self.columns[:1], rows)[self.columns[0]])  # keyed per distinct value
        normal = set(self.normal)
        return np.asarray([int(k not in normal) for k in keys] + [-1], np.int64)[codes]  # last: empty cells

    def get_state(self) -> dict[str, Any]:
        return {"task": self.task, "columns": self.columns, "normal": self.normal, "classes": None}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AnomalyTargets:
        return cls(state["columns"], state["normal"])
