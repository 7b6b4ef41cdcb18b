"""A two-class classifier's operating point chosen on labelled rows (``decision.threshold: auto``,
:class:`~polymodal.config.decision.DecisionConfig`): every cut between two distinct positive-class
probabilities is scored at once from cumulative counts (no loop over thresholds), and the best
cut's midpoint is the threshold."""

from __future__ import annotations

from typing import Any

import numpy as np

from polymodal.errors import SchemaMismatchError
from polymodal.utils.warn import warn_user

FEW_ROWS = 10  # fewer validation rows of a class than this: the chosen threshold is a guess, and a fit says so


def threshold_cuts(positive_proba: np.ndarray, is_positive: np.ndarray) -> dict[str, np.ndarray]:
    """Every distinct operating point of ``positive_proba`` (N,) against the 0/1 truth
    ``is_positive`` (N,): ``threshold`` (C,) (a row is called positive when its probability reaches
    it; the midpoints between neighbouring distinct probabilities, from above the highest to below
    the lowest), ``lower`` and ``upper`` (C,) (every threshold in ``(lower, upper]`` makes the same
    calls; the last cut's ``lower`` is 0, and its threshold 0 when the lowest probability is 0:
    every row called there), and at each the counts ``tp``, ``fp``, ``tn``, ``fn``."""
    proba = np.asarray(positive_proba, np.float64)
    truth = np.asarray(is_positive, bool)
    order = np.argsort(-proba, kind="stable")
    ranked, hits = proba[order], truth[order]
    last = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # the last row of each distinct probability
    values = ranked[last]  # descending: the lowest probability called positive at each cut
    tp = np.r_[0, np.cumsum(hits)[last]]
    fp = np.r_[0, np.cumsum(~hits)[last]]
    upper, lower = np.r_[max(1.0, np.nextafter(values[0], np.inf)), values], np.r_[values, 0.0]
    threshold = (upper + lower) / 2
    threshold[0] = max(threshold[0], np.nextafter(values[0], np.inf))  # none called, even at a probability of 1
    positives, negatives = int(truth.sum()), int((~truth).sum())
    return {"threshold": threshold, "lower": lower, "upper": upper, "tp": tp, "fp": fp, "tn": negatives - fp, "fn": positives - tp}


def cut_metrics(cuts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each cut's ``sensitivity``, ``specificity``, ``balanced_accuracy``, ``f1``, ``mcc`` and
    ``accuracy`` (0 where a rate has no rows to be one of)."""
    tp, fp, tn, fn = (cuts[k].astype(np.float64) for k in ("tp", "fp", "tn", "fn"))

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    sensitivity, specificity = ratio(tp, tp + fn), ratio(tn, tn + fp)
    return {"sensitivity": sensitivity, "specificity": specificity,
            "balanced_accuracy": (sensitivity + specificity) / 2,
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "mcc": ratio(tp * tn - fp * fn, np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))),
            "accuracy": ratio(tp + tn, tp + fp + tn + fn)}


def _best_keeping(held: np.ndarray, at_least: float, traded: np.ndarray) -> int | None:
    """The cut whose ``held`` rate is at least ``at_least`` with the best ``traded`` rate and,
    among those (a flat stretch of it), the best ``held`` rate; None when no cut holds it."""
    feasible = np.flatnonzero(held >= at_least - 1e-12)
    if not feasible.size:
        return None
    best = feasible[traded[feasible] >= traded[feasible].max() - 1e-12]
    return int(best[np.argmax(held[best])])


def choose_threshold(positive_proba: np.ndarray, is_positive: np.ndarray, decision: Any,
                     rows: str = "validation rows") -> dict[str, Any]:
    """The threshold ``decision`` (a :class:`~polymodal.config.decision.DecisionConfig`) asks for
    on these rows: the cut that maximises ``decision.metric`` (ties: the one nearest 0.5, the
    default), else the cut keeping ``min_sensitivity`` with the best specificity (and, where
    several have it, the best sensitivity), or the mirror for ``min_specificity``. A class with fewer than :data:`FEW_ROWS` rows is warned about.

    Returns:
        ``threshold``, ``criterion`` (in words), the ``rows`` and ``positives`` it was chosen on,
        and the ``sensitivity``, ``specificity`` and metric value there.

    Raises:
        SchemaMismatchError: the rows lack a class (no operating point separates anything), or no
            cut reaches the ``min_`` rate (impossible only at a rate of 1 with tied probabilities).
    """
    truth = np.asarray(is_positive, bool)
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if not positives or not negatives:
        raise SchemaMismatchError(f"decision.threshold 'auto' needs {rows} of both classes; they hold {positives} "
                                  f"positive and {negatives} negative row(s)")
    if min(positives, negatives) < FEW_ROWS:
        warn_user(f"decision.threshold was chosen on {positives} positive and {negatives} negative {rows}: with fewer "
                  f"than {FEW_ROWS} of a class it is a guess; validate on more rows of it")
    cuts = threshold_cuts(positive_proba, truth)
    scored = cut_metrics(cuts)
    if decision.min_sensitivity is not None:  # the best specificity keeping it, then the best sensitivity there
        best = _best_keeping(scored["sensitivity"], decision.min_sensitivity, scored["specificity"])
    elif decision.min_specificity is not None:
        best = _best_keeping(scored["specificity"], decision.min_specificity, scored["sensitivity"])
    else:
        value = scored[decision.metric]
        tied = np.flatnonzero(value >= value.max() - 1e-12)
        best = int(tied[np.argmin(np.abs(cuts["threshold"][tied] - 0.5))])
    if best is None:
        raise SchemaMismatchError(f"decision: no threshold reaches {decision.criterion} on the {rows}")
    out = {"threshold": float(cuts["threshold"][best]), "criterion": decision.criterion,
           "rows": positives + negatives, "positives": positives,
           "sensitivity": float(scored["sensitivity"][best]), "specificity": float(scored["specificity"][best])}
    if decision.min_sensitivity is None and decision.min_specificity is None:
        out[decision.metric] = float(scored[decision.metric][best])
    return out


__all__ = ["FEW_ROWS", "choose_threshold", "cut_metrics", "threshold_cuts"]
