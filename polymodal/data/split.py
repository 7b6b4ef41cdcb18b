"""Validation rows held out of a training manifest when ``fit`` gets no validation manifest.

Both splits are seeded, so the same manifest, fraction and seed always give the same rows; each
side keeps the manifest's row order.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from polymodal.data.manifest import Manifest
from polymodal.data.targets import distinct_labels
from polymodal.errors import ManifestError
from polymodal.utils.suggest import did_you_mean


def _check_size(manifest: Manifest, fraction: float, n_valid: int) -> None:
    """Refuse a manifest too small to keep a training row and a validation row."""
    if n_valid < 1 or len(manifest) - n_valid < 1:
        raise ManifestError(
            [f"{manifest.name} has {len(manifest)} row(s): too few to hold out a validation share of "
             f"train.val_fraction={fraction} and keep at least one row on each side; pass a validation manifest "
             "or change train.val_fraction"], source=manifest.name)


def stratified_holdout(manifest: Manifest, fraction: float, seed: int, label_column: str | None = None
                       ) -> tuple[Manifest, Manifest]:
    """(train, valid) with ``fraction`` of the rows in ``valid`` (scikit-learn's ``train_test_split``).

    Args:
        label_column: stratify by this column's labels (matched as :func:`~polymodal.data.targets.label_key` does)
            when each side can hold one row of each class; the row of a class that has only one stays
            in training (held out, it would be a label training never saw). None: a plain random split.

    Raises:
        ManifestError: too few rows to keep one on each side.
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(manifest))
    n_valid = math.ceil(len(rows) * fraction)  # as scikit-learn counts a float test_size
    _check_size(manifest, fraction, n_valid)
    stratify, kept = None, rows[:0]
    if label_column is not None:
        codes, _, keys = distinct_labels(manifest.column(label_column))  # 0, '0' and 0.0: one class
        labels = np.asarray([*keys, ""], dtype=object)[codes]  # keyed once per distinct value
        counts = pd.Series(labels).value_counts()
        single = np.isin(labels, counts.index[counts == 1].to_numpy())
        if single.any() and len(rows) - single.sum() - n_valid >= 1:  # a class of one row trains, never validates
            kept, rows, labels, counts = rows[single], rows[~single], labels[~single], counts[counts > 1]
        if counts.min() >= 2 and min(n_valid, len(rows) - n_valid) >= counts.size:  # one row of each class a side
            stratify = labels
    train_rows, valid_rows = train_test_split(rows, test_size=n_valid, random_state=seed, stratify=stratify)
    return manifest.subset(np.sort(np.concatenate([train_rows, kept]))), manifest.subset(np.sort(valid_rows))


def random_holdout(manifest: Manifest, fraction: float, seed: int) -> tuple[Manifest, Manifest]:
    """(train, valid) with ``round(fraction * rows)`` rows, at least one, in ``valid``, drawn by a
    numpy generator; no labels needed.

    Raises:
        ManifestError: too few rows to keep one on each side.
    """
    rows = np.random.default_rng(seed).permutation(len(manifest))
    n_valid = max(1, int(round(len(rows) * fraction)))
    _check_size(manifest, fraction, n_valid)
    return manifest.subset(np.sort(rows[n_valid:])), manifest.subset(np.sort(rows[:n_valid]))


def group_holdout(manifest: Manifest, fraction: float, seed: int, column: str) -> tuple[Manifest, Manifest]:
    """(train, valid) with ``fraction`` of ``column``'s distinct values (at least one, and one left
    for training) in ``valid``, each with every row that holds it (scikit-learn's
    ``GroupShuffleSplit``, seeded): rows of one group (a recording's overlapping windows) never
    sit on both sides.

    Raises:
        ManifestError: ``column`` is not in the manifest, has empty cells, or holds fewer than two
            distinct values (named with the rows).
    """
    from sklearn.model_selection import GroupShuffleSplit

    key = "train.val_group"
    if column not in manifest.columns:
        raise ManifestError([f"{key}: {manifest.name} has no column {column!r}{did_you_mean(column, manifest.columns)} "
                             f"(columns: {list(manifest.columns)})"], source=manifest.name)
    values = manifest.column(column)
    codes, _, _ = distinct_labels(values)  # 7, '7' and 7.0: one group, as labels match; -1: an empty cell
    empty = np.flatnonzero(codes < 0)
    if empty.size:
        raise ManifestError([f"{key}: column {column!r} of {manifest.name} is empty at {manifest.rows_text(empty)}: "
                             "every row needs the group it belongs to"], source=manifest.name)
    groups = int(codes.max()) + 1
    if groups < 2:
        raise ManifestError([f"{key}: column {column!r} of {manifest.name} holds one value ({values.iloc[0]!r}): "
                             "a validation group and a training one need two; pass a validation manifest, or "
                             "name another column"], source=manifest.name)
    n_valid = min(groups - 1, max(1, round(groups * fraction)))
    rows = np.arange(len(manifest))
    split = GroupShuffleSplit(n_splits=1, test_size=n_valid, random_state=seed)
    train_rows, valid_rows = next(split.split(rows, groups=codes))
    return manifest.subset(np.sort(train_rows)), manifest.subset(np.sort(valid_rows))
