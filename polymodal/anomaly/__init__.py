"""Anomaly detection (``task: anomaly``): trained on normal data, scored by reconstruction error,
Deep SVDD distance, Mahalanobis distance in the fused space or cross-modal consistency; a flag
threshold at a target false-positive rate on validation data."""

from polymodal.anomaly.detector import AnomalyDetector
from polymodal.anomaly.scorers import SCORERS, AnomalyScorer
from polymodal.metrics.anomaly import anomaly_metrics, fpr_at_tpr, threshold_at_fpr

__all__ = ["SCORERS", "AnomalyDetector", "AnomalyScorer", "anomaly_metrics", "fpr_at_tpr", "threshold_at_fpr"]
