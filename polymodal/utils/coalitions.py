"""Coalitions (subsets) of modalities and their bit masks, shared by subset evaluation, Shapley
values, the anomaly detector's subset thresholds and the torch-free runtime (numpy only).

A coalition is a ``frozenset`` of modality names; as a bit mask, bit ``i`` stands for the
``i``-th name in sorted order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations

import numpy as np

Coalition = frozenset[str]


def all_subsets(names: Sequence[str], *, empty: bool = False) -> list[Coalition]:
    """Every subset of ``names``, largest first (then by name); the empty one last, if asked."""
    ordered = sorted(names)
    sizes = range(len(ordered), -1 if empty else 0, -1)
    return [frozenset(c) for size in sizes for c in combinations(ordered, size)]


def subset_label(coalition: Iterable[str]) -> str:
    """``audio+image``; ``(none)`` for the empty coalition."""
    names = sorted(coalition)
    return "+".join(names) if names else "(none)"


def mask_of(coalition: Iterable[str], names: Sequence[str]) -> int:
    """The bit mask of a coalition (bit i = ``names[i]``)."""
    chosen = set(coalition)
    return sum(1 << i for i, n in enumerate(names) if n in chosen)


def coalition_of(mask: int, names: Sequence[str]) -> Coalition:
    """The coalition of a bit mask (bit i = ``names[i]``), :func:`mask_of`'s inverse."""
    return frozenset(n for i, n in enumerate(names) if mask >> i & 1)


def held_masks(present: np.ndarray) -> np.ndarray:
    """(N,) each row's coalition bit mask (bit i: modality i present) from presence (N, M)."""
    return (np.asarray(present, np.int64) << np.arange(present.shape[1])).sum(axis=1)


# A coalition an anomaly scorer cannot score (NaN: the consistency scorer with fewer than two
# modalities, having no pair to compare) is worth 0 in an explanation, the score of modalities that
# neither agree nor disagree, so that Shapley values stay defined: the odd one out of three
# modalities gets the blame, and two split it evenly (nothing tells which of a mismatched pair is
# wrong).


def coalition_values(scores: np.ndarray) -> np.ndarray:
    """Scores of a coalition as Shapley values add them up: NaN (no score) counts 0."""
    return np.where(np.isnan(scores), 0.0, scores)


def against_reference(values: dict[int, np.ndarray], reference: np.ndarray | None, held: np.ndarray
                      ) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Coalition values (N, K) measured against a reference per coalition (an anomaly detector's
    normal rows' mean score, :meth:`AnomalyDetector.coalition_reference`): coalition S of a row
    that holds the modalities ``held`` (its bit mask) minus the reference of ``S & held``, the
    normal rows scored with the same modalities, so that a modality the row lacks gets 0.

    Returns:
        The measured values, and each row's base (N, 1): the score its Shapley values start from
        (``values[0]`` without a reference; else plus the reference of the modalities it holds).
    """
    if reference is None:
        return values, values[0]
    measured = {mask: value - reference[mask & held][:, None] for mask, value in values.items()}
    return measured, measured[0] + reference[held][:, None]
