"""Anomaly-detection metrics and the validation threshold, as pure functions of numpy arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def threshold_at_fpr(normal_scores: np.ndarray, fpr: float) -> float:
    """The score above which a fraction ``fpr`` of ``normal_scores`` lies (the flag threshold):
    ``floor(fpr * N)`` of the N scores are above it (one of 20 at 5%), fewer only where scores tie.
    NaN scores (rows the scorer could not score) are left out of N.

    Args:
        normal_scores: (N,) scores of normal validation samples.
        fpr: target false-positive rate in [0, 1] (a user's in (0, 1); 0 and 1 are the rates a
            threshold set as a score may give, :func:`subset_thresholds`): 0 gives the highest
            score, 1 the largest number below the lowest (every normal score above it): finite,
            so that it survives JSON (``deploy.json``) as itself, not as "no threshold".

    Raises:
        ValueError: no normal scores.
    """
    given = np.asarray(normal_scores, np.float64)
    scores = given[~np.isnan(given)]
    if scores.size == 0:
        raise ValueError("the flag threshold needs normal validation samples; the validation data has none"
                         + (f" with a score (none of its {given.size} normal rows could be scored)" if given.size else ""))
    allowed = math.floor(fpr * scores.size + 1e-9)  # normal samples the threshold may flag
    if allowed >= scores.size:
        return float(np.nextafter(scores.min(), -np.inf))
    return float(np.sort(scores)[scores.size - allowed - 1])


def flag_rate(normal_scores: np.ndarray, threshold: float) -> float | None:
    """The share of the scored ``normal_scores`` (NaN: not scored, left out) above ``threshold``:
    the validation false-positive rate a threshold gives; None without a scored row."""
    given = np.asarray(normal_scores, np.float64)
    scores = given[~np.isnan(given)]
    return float((scores > threshold).mean()) if scores.size else None


def subset_thresholds(threshold: float, normal_scores: np.ndarray, subset_scores: np.ndarray) -> np.ndarray:
    """A flag threshold per subset of modalities, each at the validation false-positive rate that
    ``threshold`` (the one for every modality) gives: a row scored through the model's missing path
    has a score of another scale, which the full set's threshold would flag far too often (a
    sensor that stopped would raise every row) or too rarely.

    Args:
        threshold: the flag threshold of rows holding every modality (``anomaly.target_fpr``'s,
            or a score set by hand), kept as it is.
        normal_scores: (N,) the validation normal rows' scores, each with the modalities it holds
            (NaN: not scored): ``threshold``'s rate is measured on those that hold every modality
            (the rows it applies to: ``subset_scores[-1]``), on all of them when none does.
        subset_scores: (2^M, R) the validation normal rows' scores with only subset k's modalities
            present (bit i: the i-th modality in sorted name order), NaN where the row does not
            hold them all (or could not be scored): the rows each subset's threshold is chosen on.

    Returns:
        (2^M,) entry k the threshold of subset k (:func:`threshold_at_fpr` of its scores at that
        rate), ``threshold`` for the full set; NaN for the empty subset and a subset no row was
        scored with (:func:`row_thresholds` reads NaN as ``threshold``).
    """
    subset_scores = np.asarray(subset_scores, np.float64)
    out = np.full(len(subset_scores), np.nan)
    full = subset_scores[-1] if len(subset_scores) > 1 else np.zeros(0)
    rate = flag_rate(full if (~np.isnan(full)).any() else normal_scores, threshold)  # the rows it applies to
    for mask in range(1, len(subset_scores) - 1):
        if rate is not None and (~np.isnan(subset_scores[mask])).any():
            out[mask] = threshold_at_fpr(subset_scores[mask], rate)
    if len(out) > 1:
        out[-1] = threshold
    return out


def row_thresholds(held: np.ndarray, threshold: float | None,
                   by_subset: np.ndarray | Sequence[float | None] | None) -> np.ndarray:
    """(N,) each row's flag threshold: that of the subset of modalities the row holds (``held``,
    its bit mask, bit i: the i-th modality in sorted name order) in ``by_subset`` (from
    :func:`subset_thresholds`, or ``deploy.json``'s list); ``threshold`` (the full set's) where
    that entry is NaN or None, and for every row without ``by_subset`` (a detector fitted before
    subsets had thresholds). The one rule of the detector, its runtime and the service;
    ``threshold`` None: no threshold (+inf, nothing flagged).
    """
    held = np.asarray(held, np.int64)
    full = np.inf if threshold is None else float(threshold)
    if by_subset is None or not len(by_subset):
        return np.full(held.shape, full)
    chosen = np.asarray([np.nan if t is None else t for t in by_subset], np.float64)[held]
    return np.where(np.isnan(chosen), full, chosen)


def one_threshold_note(flagged: np.ndarray, held: np.ndarray, n_modalities: int, why: str | None = None
                       ) -> str | None:
    """What to warn (once) when a detector without thresholds per subset of modalities flags a row
    with a modality missing: that row was held to the threshold of rows holding every modality;
    None when no such row was flagged.

    Args:
        flagged: (N,) the rows' flags.
        held: (N,) their bit masks of the modalities present.
        why: why the detector has one threshold (None: it was fitted, or exported, before polymodal
            chose one per subset; fitting it again gives them).
    """
    incomplete = np.asarray(flagged, bool) & (np.asarray(held, np.int64) != (1 << n_modalities) - 1)
    if not incomplete.any():
        return None
    cause = why or "fitted or exported before polymodal chose a threshold per subset of modalities"
    remedy = "" if why else "; fit the run again (then export it again) for a threshold per subset"
    return (f"{int(incomplete.sum())} flagged row(s) miss a modality, and this model has one flag threshold for every "
            f"row ({cause}): a row scored without a modality has a score of another scale, and may be flagged for "
            f"being incomplete alone{remedy}")


def flags(scores: np.ndarray, threshold: float | np.ndarray | None) -> np.ndarray:
    """(N,) the flag of each score: above ``threshold`` (one for every row, or (N,) each row's:
    :func:`row_thresholds`; None: no threshold, nothing above it), or no score at all (NaN: a row
    the scorer cannot check is raised, as a monitor raises a sensor that stopped reporting). The
    one rule of the detector, its runtime and the service."""
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


def anomaly_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float | np.ndarray | None = None
                    ) -> dict[str, Any]:
    """AUROC, AUPRC (average precision, anomalies positive), FPR at 95% TPR and, with a threshold,
    the flag's false-positive and true-positive rates, over the rows with a score: a NaN score (a
    row the scorer could not score) is left out of every value and counted in ``unscored``.

    Args:
        scores: (N,) higher = more anomalous; NaN: not scored.
        labels: (N,) 1 anomaly, 0 normal.
        threshold: samples with a score above it are flagged: one for every row, or (N,) each
            row's (:func:`row_thresholds`).

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
        flags = scores > (np.asarray(threshold, np.float64)[scored] if np.ndim(threshold) else threshold)
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
