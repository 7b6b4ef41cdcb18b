"""Calibration: reliability bins of the top-class confidence (what the reliability diagram draws).

The bins are the ones :func:`polymodal.metrics.expected_calibration_error` uses, so the ECE the
diagram shows is the ECE of the metrics table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from polymodal.metrics import expected_calibration_error, softmax

BINS = 15


def reliability_bins(proba: np.ndarray, target: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Per equal-width confidence bin: its edges, sample count, mean confidence and accuracy.

    Args:
        proba: (N, K) class probabilities.
        target: (N,) true class indices.
        bins: number of bins over [0, 1].
    """
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == target
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        in_bin = which == b
        count = int(in_bin.sum())
        out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
                    "confidence": float(confidence[in_bin].mean()) if count else None,
                    "accuracy": float(correct[in_bin].mean()) if count else None})
    return out


def calibration_summary(logits: np.ndarray, target: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """``{"ece", "bins"}`` for a classifier's raw outputs (N, K) and true classes (N,)."""
    proba = softmax(logits.astype(np.float64))
    return {"ece": expected_calibration_error(proba, target, bins), "bins": reliability_bins(proba, target, bins)}
