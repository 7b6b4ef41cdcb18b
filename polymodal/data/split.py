"""Validation rows held out of a training manifest when ``fit`` gets no validation manifest.

Both splits are seeded, so the same manifest, fraction and seed always give the same rows; each
side keeps the manifest's row order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from polymodal.data.manifest import Manifest


def stratified_holdout(manifest: Manifest, fraction: float, seed: int, label_column: str | None = None
                       ) -> tuple[Manifest, Manifest]:
    """(train, valid) with ``fraction`` of the rows in ``valid`` (scikit-learn's ``train_test_split``).

    Args:
        label_column: stratify by this column's values (as strings) when every class has two rows
            or more and ``valid`` can hold one row of each; None: a plain random split.
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(manifest))
    stratify = None
    if label_column is not None:
        labels = manifest.frame[label_column].astype(str).to_numpy()
        counts = pd.Series(labels).value_counts()
        n_valid = int(round(len(rows) * fraction))
        if counts.min() >= 2 and n_valid >= counts.size:
            stratify = labels
    train_rows, valid_rows = train_test_split(rows, test_size=fraction, random_state=seed, stratify=stratify)
    return manifest.subset(np.sort(train_rows)), manifest.subset(np.sort(valid_rows))


def random_holdout(manifest: Manifest, fraction: float, seed: int) -> tuple[Manifest, Manifest]:
    """(train, valid) with ``round(fraction * rows)`` rows, at least one, in ``valid``, drawn by a
    numpy generator; no labels needed."""
    rows = np.random.default_rng(seed).permutation(len(manifest))
    n_valid = max(1, int(round(len(rows) * fraction)))
    return manifest.subset(np.sort(rows[n_valid:])), manifest.subset(np.sort(rows[:n_valid]))
