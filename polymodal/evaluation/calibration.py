"""Calibration for the report: the reliability diagram's bins and the ECE they add up to (both
from :mod:`polymodal.metrics.tasks`, so the diagram's ECE is the metrics table's)."""

from __future__ import annotations

from typing import Any

import numpy as np

from polymodal.metrics.tasks import expected_calibration_error, non_finite_note, reliability_bins
from polymodal.utils.scores import softmax

BINS = 15


def calibration_summary(logits: np.ndarray, target: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """``{"ece", "bins"}`` for a classifier's raw outputs (N, K) and true classes (N,); outputs
    that are not all finite (a diverged model) have none: ``{"ece": None, "note"}``."""
    proba = softmax(logits.astype(np.float64))
    broken = int((~np.isfinite(proba).all(axis=1)).sum())
    if broken:
        return {"ece": None, "note": non_finite_note(broken, len(proba), "the calibration figures")}
    return {"ece": expected_calibration_error(proba, target, bins), "bins": reliability_bins(proba, target, bins)}
