"""Anomaly labels: the target column's values -> 0 (normal), 1 (anomaly), -1 (no label); the
training rows a fit learns from (labelled anomalies kept or sampled)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from polymodal.data.cells import is_empty
from polymodal.data.manifest import Manifest
from polymodal.data.targets import distinct_labels, label_key
from polymodal.utils.io import python_scalar
from polymodal.utils.warn import warn_user

if TYPE_CHECKING:
    from polymodal.config.anomaly import AnomalyConfig


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


def stratified_sample(labels: Sequence[Hashable], limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` positions of ``labels``, drawn at random (``seed``) from each label in
    proportion to its count (largest remainders get the rows left over; ties go to the label seen
    first), in increasing order; every position when there are no more than ``limit``.

    Args:
        labels: (N,) one label per row (an anomaly label: ``fault``, ``mismatch``...).
        limit: >= 0.
    """
    n = len(labels)
    if n <= limit:
        return np.arange(n)
    keys = [str(label) for label in labels]
    groups = {key: np.flatnonzero(np.asarray([k == key for k in keys])) for key in dict.fromkeys(keys)}
    shares = np.asarray([len(rows) * limit / n for rows in groups.values()])
    quotas = np.floor(shares).astype(np.int64)
    leftover = np.argsort(-(shares - quotas), kind="stable")[:limit - int(quotas.sum())]
    quotas[leftover] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(rows, size=int(quota), replace=False) for rows, quota in zip(groups.values(), quotas,
                                                                                     strict=True)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def training_rows(train: Manifest, normal: np.ndarray, targets: AnomalyTargets, settings: AnomalyConfig, seed: int
                  ) -> tuple[Manifest, int]:
    """The training rows with the labelled anomalies a detector learns from (``normal``: (N,)
    False where a row is labelled anomalous): none (normal data only, from the preprocessing on)
    unless ``use_labelled_anomalies``, then at most ``max_labelled_anomalies`` of them (a sample
    seeded by ``seed``, each label in proportion). Warns when those kept outnumber the normal rows.

    Returns:
        The rows kept, and how many labelled anomalies were dropped.
    """
    anomalies = np.flatnonzero(~normal)
    if not settings.use_labelled_anomalies:
        return train.subset(np.flatnonzero(normal)), len(anomalies)
    kept = anomalies
    if settings.max_labelled_anomalies is not None:
        kept = anomalies[stratified_sample(targets.labels(train, anomalies), settings.max_labelled_anomalies, seed)]
    normals = int(normal.sum())
    if len(kept) > normals:
        limit = ("" if settings.max_labelled_anomalies is None
                 else f" (anomaly.max_labelled_anomalies: {settings.max_labelled_anomalies})")
        warn_user(f"{len(kept)} labelled anomalies are kept in training{limit}, more than its {normals} normal "
                  "rows (anomaly.use_labelled_anomalies: true): the detector learns what normal is from the normal "
                  "rows, and the anomalies only push away from it; set anomaly.max_labelled_anomalies to keep a "
                  f"sample of them, fewer than the {normals} normal rows")
    if len(kept) == len(anomalies):
        return train, 0
    return train.subset(np.sort(np.concatenate([np.flatnonzero(normal), kept]))), len(anomalies) - len(kept)
