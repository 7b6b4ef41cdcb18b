"""From a network's raw outputs to scores and decisions: one rule for the predictor, the
multi-task tables, the torch-free runtime and the HTTP service (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from polymodal.errors import SchemaMismatchError

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


def decisions(task: str, proba: np.ndarray, threshold: float | Sequence[float] | None = None) -> np.ndarray:
    """(B,) index of the predicted class (classification), or (B, L) 0/1 labels (multilabel).
    ``threshold`` (``decision.threshold``): a two-class classifier's operating point, the second
    (positive) class where its probability reaches it (None: the more probable class); a
    multilabel model's, one for every label or one per label (None: 0.5)."""
    if task == "classification":
        if threshold is None:
            return proba.argmax(axis=-1)
        if proba.shape[-1] != 2:
            raise ValueError(f"a decision threshold calls the second of two classes; these scores hold {proba.shape[-1]}")
        return (proba[..., 1] >= threshold).astype(np.int64)
    return (proba >= (MULTILABEL_THRESHOLD if threshold is None else np.asarray(threshold, np.float64))).astype(int)


# -- what an explanation attributes -----------------------------------------------------------
# One rule for the eager explanation (``pred.explain``, ``polymodal explain``, the report), the
# runtime (``Runtime.explain``) and the service (``POST /explain``): per row, ONE output's score,
# by default the predicted class's probability (classification) or the first output (multilabel:
# the first label's probability; regression: the first target's value; one target: its value).
# One output, not an average: it is a number the model reports (a ``predict_proba`` column or a
# predicted value), it stays on one scale (targets of a multi-target regression need not share
# units), and it is what the within-modality Integrated Gradients can attribute (one logit).


# An anomaly detector's explanation attributes its one output, the anomaly score (a coalition its
# scorer cannot score counts 0: :func:`polymodal.utils.coalitions.coalition_values`).
ANOMALY_SCORE = "score"  # the anomaly detector's one output, as explanations name it


def explained_outputs(task: str, scores: np.ndarray, output: int | None = None,
                      threshold: float | None = None) -> np.ndarray:
    """(B,) index of the output an explanation attributes, per row of ``scores`` (B, K): ``output``
    when given, else the predicted class (classification, at the model's decision ``threshold``:
    :func:`decisions`) or the first output (multilabel, regression)."""
    if output is not None:
        return np.full(len(scores), output, np.int64)
    if task == "classification":
        return decisions(task, scores, threshold).astype(np.int64)
    return np.zeros(len(scores), np.int64)


def explained_score(scores: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """(B,) the score an explanation attributes: ``scores[row, pick[row]]``, ``pick`` from
    :func:`explained_outputs` (which knows the model's decision threshold)."""
    return scores[np.arange(len(scores)), pick]


def output_index(output: Any | None, names: Sequence[Any], task: str) -> int | None:
    """The position of ``output`` (a class, label or target name; compared as given, then as
    text, so ``"3"`` names class ``3``) among ``names``; None for None.

    Raises:
        SchemaMismatchError: no output has that name (the message lists them).
    """
    if output is None:
        return None
    plain = [n.item() if isinstance(n, np.generic) else n for n in names]
    for same in (lambda n: n == output, lambda n: str(n) == str(output)):
        found = [i for i, n in enumerate(plain) if same(n)]
        if found:
            return found[0]
    kind = {"classification": "classes", "multilabel": "labels", "anomaly": "outputs"}.get(task, "targets")
    raise SchemaMismatchError(f"output {output!r} to explain is not one of this model's outputs ({kind}) {plain}")


def explained_name(task: str, names: Sequence[Any], output: int | None = None) -> Any | None:
    """The name of the output an explanation attributes (``output``: its index, None: the
    default): None for classification's per-row predicted class, else a class, label or target."""
    if output is None and task == "classification":
        return None
    return names[0 if output is None else output]


def explained_quantity(task: str, name: Any | None = None, *, predicted: bool = False) -> str:
    """What an explanation attributes, in words: ``name`` is the explained output (a class, label
    or target); None for classification's per-row predicted class. ``predicted``: the class named
    is the row's predicted one."""
    if task == "classification":
        if name is None:
            return "probability of the predicted class"
        return f"probability of the predicted class '{name}'" if predicted else f"probability of class '{name}'"
    if task == "multilabel":
        return f"probability of label '{name}'"
    if task == "anomaly":
        return "anomaly score"
    return f"predicted value of target '{name}'"
