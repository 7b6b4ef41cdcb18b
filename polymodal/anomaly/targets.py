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
from polymodal.utils.suggest import did_you_mean
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


MAX_LABELS_SHOWN = 20  # labels a message about anomaly.normal lists


def normal_value_problems(manifest: Manifest, column: str, normal: Sequence[Any], *, every: bool,
                          key: str = "anomaly.normal") -> list[str]:
    """What is wrong with ``anomaly.normal`` against the target ``column`` of ``manifest`` (matched
    as training matches them, by :func:`label_key`: ``0``, ``0.0`` and ``'0'`` alike; ``'normal'`` is
    not ``'Normal'``), naming the column's labels and, for each value absent, the close one meant.

    Args:
        every: each value must be a label of the column (``config check --data``, for a
            ``normal`` the config sets: one that no row holds is a misspelling, or names nothing);
            False: at least one must (``fit``: otherwise every training row is an anomaly).
        key: how messages name ``normal`` (``evaluate``'s ``normal``, given in its place).

    Returns:
        One problem per value absent (``every``), or one when none is present; none when the
        column is not in the manifest (the target's own check names that).
    """
    if column not in manifest.columns:
        return []
    labels = _labels(manifest, column)
    absent = [value for value in normal if label_key(value) not in labels]
    if not absent or (not every and len(absent) < len(normal)):
        return []
    shown = sorted(labels.values(), key=str)
    where = f"target column '{column}' of {manifest.name} (its labels: {_listed(shown)})"
    meant = {value: did_you_mean(str(value), [str(v) for v in shown]) for value in absent}
    if not every:
        named = "".join(f"; {value!r}{meant[value]}" for value in absent if meant[value])
        return [f"{key} {list(normal)} matches no label of {where}, so no row is normal{named}"]
    return [f"{key} value {value!r} is no label of {where}{meant[value]}: labels match exactly, case "
            "included" for value in absent]


def no_normal_row(manifest: Manifest, column: str, normal: Sequence[Any], where: str | None = None) -> str:
    """Why ``manifest``, every row of which is labelled anomalous, has no normal row: its target
    ``column``'s labels, none in ``normal``, with the close one meant for each value
    (``'normal'`` for ``'Normal'``).

    Args:
        where: how to name the rows (None: the manifest's name).
    """
    shown = sorted(_labels(manifest, column).values(), key=str)
    meant = "".join(f"; {value!r}{hint}" for value in normal
                    if (hint := did_you_mean(str(value), [str(v) for v in shown])))
    return (f"{manifest.name if where is None else where} has no normal row: no '{column}' value is in "
            f"anomaly.normal {list(normal)} (it holds {_listed(shown)}){meant}")


def _labels(manifest: Manifest, column: str) -> dict[Hashable, Any]:
    """The distinct non-empty labels of ``column``, keyed as training matches them (:func:`label_key`)."""
    _, uniques, keys = distinct_labels(manifest.column(column))
    return {key: value for key, value in zip(keys, uniques, strict=True) if not is_empty(value)}


def _listed(shown: Sequence[Any]) -> str:
    """``shown`` as a list, cut at ``MAX_LABELS_SHOWN``."""
    return repr(list(shown[:MAX_LABELS_SHOWN]))[:-1] + (", ...]" if len(shown) > MAX_LABELS_SHOWN else "]")


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
