"""From a network's raw outputs to scores and decisions: one rule for the predictor, the
multi-task tables, the torch-free runtime and the HTTP service (numpy only)."""

from __future__ import annotations

import numpy as np

MULTILABEL_THRESHOLD = 0.5  # a label is predicted when its probability reaches this


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis (shifted by the maximum: no overflow)."""
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def probabilities(task: str, logits: np.ndarray) -> np.ndarray:
    """Class probabilities (classification: softmax) or per-label probabilities (multilabel: sigmoid)."""
    if task == "classification":
        return softmax(logits)
    if task == "multilabel":
        return sigmoid(logits)
    raise ValueError(f"a {task} task has no probabilities")


def decisions(task: str, proba: np.ndarray) -> np.ndarray:
    """(B,) index of the predicted class (classification), or (B, L) 0/1 labels (multilabel)."""
    if task == "classification":
        return proba.argmax(axis=-1)
    return (proba >= MULTILABEL_THRESHOLD).astype(int)


def explained_score(task: str, scores: np.ndarray, pick: np.ndarray | None = None) -> np.ndarray:
    """(B,) the score an explanation attributes: the probability of class ``pick`` (classification;
    by default the predicted class), the mean label probability (multilabel) or the first value
    (regression)."""
    if task == "classification":
        pick = scores.argmax(axis=1) if pick is None else pick
        return scores[np.arange(len(scores)), pick]
    return scores.mean(axis=1) if task == "multilabel" else scores[:, 0]
