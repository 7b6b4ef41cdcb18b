"""Anomaly-detection metrics and the validation threshold, as pure functions of numpy arrays."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def threshold_at_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """The score above which a fraction ``fpr`` of ``normal_scores`` lies (the flag threshold):
    ``floor(fpr * N)`` of the N scores are above it (one of 20 at 5%), fewer only where scores tie.
    NaN scores (rows the scorer could not score) are left out of N.

    Args:
        normal_scores: (N,) scores of normal validation samples.
        fpr: target false-positive rate in (0, 1).

    Raises:
        ValueError: no normal scores.
    """
    given = np.asarray(normal_scores, np.float64)
    scores = given[~np.isnan(given)]
    if scores.size == 0:
        raise ValueError("the flag threshold needs normal validation samples; the validation data has none"
                         + (f" with a score (none of its {given.size} normal rows could be scored)" if given.size else ""))
    allowed = math.floor(fpr * scores.size + 1e-9)  # normal samples the threshold may flag
    return float(np.sort(scores)[scores.size - allowed - 1])


def flags(scores: np.ndarray, threshold: float | None) -> np.ndarray:
    """(N,) the flag of each score: above ``threshold`` (None: no threshold, nothing above it), or
    no score at all (NaN: a row the scorer cannot check is raised, as a monitor raises a sensor that
    stopped reporting). The one rule of the detector, its runtime and the service."""
    scores = np.asarray(scores)
    return np.isnan(scores) | (scores > (np.inf if threshold is None else threshold))


def fpr_at_tpr(scores: np.ndarray, labels: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate at the lowest threshold that flags at least ``tpr`` of the anomalies.

    Args:
        scores: (N,) higher = more anomalous.
        labels: (N,) 1 anomaly, 0 normal.
    """
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    anomalous = np.sort(scores[labels])[::-1]
    need = int(np.ceil(tpr * anomalous.size))
    cut = anomalous[need - 1]  # flag score >= cut catches at least `need` anomalies
    return float((scores[~labels] >= cut).mean())


def anomaly_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float | None = None) -> dict[str, Any]:
    """AUROC, AUPRC (average precision, anomalies positive), FPR at 95% TPR and, with a threshold,
    the flag's false-positive and true-positive rates, over the rows with a score: a NaN score (a
    row the scorer could not score) is left out of every value and counted in ``unscored``.

    Args:
        scores: (N,) higher = more anomalous; NaN: not scored.
        labels: (N,) 1 anomaly, 0 normal.
        threshold: samples with a score above it are flagged.

    Returns:
        ``auroc``/``auprc``/``fpr@95tpr`` (None when one class is absent), ``flag_fpr``,
        ``flag_tpr`` (None without the class), ``anomalies``, ``normals`` (scored rows of each
        class), ``unscored``.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores, labels = np.asarray(scores, np.float64), np.asarray(labels).astype(int)
    scored = ~np.isnan(scores)
    unscored = int((~scored).sum())
    scores, labels = scores[scored], labels[scored]
    both = 0 < labels.sum() < labels.size
    out: dict[str, Any] = {
        "auroc": float(roc_auc_score(labels, scores)) if both else None,
        "auprc": float(average_precision_score(labels, scores)) if both else None,
        "fpr@95tpr": fpr_at_tpr(scores, labels) if both else None,
        "anomalies": int(labels.sum()), "normals": int((labels == 0).sum()), "unscored": unscored,
    }
    if threshold is not None:
        flags = scores > threshold
        out["flag_fpr"] = float(flags[labels == 0].mean()) if (labels == 0).any() else None
        out["flag_tpr"] = float(flags[labels == 1].mean()) if (labels == 1).any() else None
    return out


def undefined_note(metrics: dict[str, Any], subject: str, validation: bool = False) -> str | None:
    """Why ``metrics`` (from :func:`anomaly_metrics`) leave some values undefined (None), in words;
    None when every value is defined.

    Args:
        subject: the rows, as the sentence's subject ("validation holds", "the evaluated rows hold").
        validation: the rows the flag threshold is chosen on (the note says on which of them).
    """
    anomalies, normals = metrics["anomalies"], metrics["normals"]
    if anomalies and normals:
        return None
    if not anomalies and not normals:
        note = (f"{subject} no labelled rows: AUROC, AUPRC, FPR@95TPR and the flag rates need normal and "
                "anomalous rows")
        return note + ("; the threshold is chosen on all of its rows" if validation else "")
    if not anomalies:
        note = f"{subject} no anomalies: AUROC, AUPRC and FPR@95TPR need both classes, flag_tpr needs anomalies"
        return note + ("; the threshold is chosen on its normal rows" if validation else "")
    return f"{subject} no normal rows: AUROC, AUPRC and FPR@95TPR need both classes, flag_fpr needs normal rows"
