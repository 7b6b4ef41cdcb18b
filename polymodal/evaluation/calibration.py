"""Calibration for the report: the reliability diagram's bins and the ECE they add up to (both
from :mod:`polymodal.metrics.tasks`, so the diagram's ECE is the metrics table's)."""

from __future__ import annotations

from typing import Any

import numpy as np

from polymodal.metrics.tasks import expected_calibration_error, reliability_bins
from polymodal.utils.scores import softmax

BINS = 15


def calibration_summary(logits: np.ndarray, target: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """``{"ece", "bins"}`` for a classifier's raw outputs (N, K) and true classes (N,)."""
    proba = softmax(logits.astype(np.float64))
    return {"ece": expected_calibration_error(proba, target, bins), "bins": reliability_bins(proba, target, bins)}
