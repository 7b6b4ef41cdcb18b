"""Task metrics as pure functions of numpy arrays (used by training, evaluation and benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from polymodal.config.task_metrics import PER_TARGET, TASK_METRICS, direction, split_metric
from polymodal.utils.scores import decisions, sigmoid, softmax


def reliability_bins(proba: np.ndarray, target: np.ndarray, bins: int = 15) -> list[dict[str, Any]]:
    """Per equal-width bin of the top-class confidence, ``(low, high]`` as Guo et al. (2017) bin
    it: its edges, sample count, mean confidence and accuracy (what a reliability diagram draws).

    Args:
        proba: (N, K) class probabilities.
        target: (N,) true class indices.
        bins: number of bins over [0, 1].
    """
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == target
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        in_bin = which == b
        count = int(in_bin.sum())
        out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
                    "confidence": float(confidence[in_bin].mean()) if count else None,
                    "accuracy": float(correct[in_bin].mean()) if count else None})
    return out


def expected_calibration_error(proba: np.ndarray, target: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class confidence over ``bins`` equal-width bins: the count-weighted mean gap
    between confidence and accuracy of :func:`reliability_bins`."""
    total = max(len(proba), 1)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in reliability_bins(proba, target, bins) if b["count"]))


def classification_metrics(logits: np.ndarray, target: np.ndarray, n_classes: int | None = None,
                           classes: Sequence[Any] | None = None, threshold: float | None = None) -> dict[str, Any]:
    """accuracy, macro_f1 (over the classes in the targets or the predictions, as scikit-learn's
    default: a class absent from both is not scored 0), auroc (one-vs-rest macro; None when a class
    is missing), ece, log_loss and the confusion matrix (rows = true class), preceded by the
    ``classes`` that label its rows and columns when they are given; two classes add
    ``positive_class`` (:func:`binary_rates` of the second class). ``threshold``: a two-class
    model's decision threshold (the calls behind accuracy, macro_f1, the confusion matrix and the
    rates follow it, and ``threshold`` reports it); the probabilities' own figures (auroc, ece,
    log_loss) do not depend on it."""
    from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

    n_classes = n_classes or logits.shape[1]
    proba = softmax(logits.astype(np.float64))
    diverged = ~np.isfinite(proba).all(axis=1)
    pred = np.where(diverged, -1, decisions("classification", proba, threshold))  # no call: wrong, not class 0
    labels = np.arange(n_classes)
    out: dict[str, Any] = {
        "accuracy": float((pred == target).mean()),
        "macro_f1": float(f1_score(target, pred, labels=np.union1d(target, pred[pred >= 0]), average="macro",
                                   zero_division=0)),
        "ece": None if diverged.any() else expected_calibration_error(proba, target),
        "log_loss": None if diverged.any() else
        float(-np.log(np.clip(proba[np.arange(len(target)), target], 1e-12, None)).mean()),
    }
    if threshold is not None:
        out["threshold"] = float(threshold)
    present = np.unique(target)
    try:
        if diverged.any():
            out["auroc"] = None
        elif n_classes == 2 and len(present) == 2:
            out["auroc"] = float(roc_auc_score(target, proba[:, 1]))
        elif len(present) == n_classes:
            out["auroc"] = float(roc_auc_score(target, proba, multi_class="ovr", average="macro", labels=labels))
        else:
            out["auroc"] = None
    except ValueError:
        out["auroc"] = None
    absent = np.setdiff1d(labels, present)
    if diverged.any():
        out["note"] = non_finite_note(int(diverged.sum()), len(target), "auroc, ece and log_loss") + \
            " (the confusion matrix and its rates leave those rows out)"
    elif out["auroc"] is None and len(absent):
        names = [classes[k] for k in absent] if classes is not None else absent.tolist()
        out["note"] = (f"auroc is undefined: no row of class(es) {', '.join(map(repr, names[:10]))}"
                       f"{' ...' if len(names) > 10 else ''} (one-vs-rest AUROC needs a row of every class)")
        if np.isin(pred, absent).any():
            out["note"] += "; macro_f1 scores a class predicted here that has no row as 0"
    if classes is not None:
        out["classes"] = [c.item() if isinstance(c, np.generic) else c for c in classes]
    matrix = confusion_matrix(target, pred, labels=labels)
    if n_classes == 2:
        out["positive_class"] = binary_rates(matrix, classes[1] if classes is not None else 1)
    out["confusion_matrix"] = matrix.tolist()
    return out


def non_finite_note(rows: int, total: int, undefined: str) -> str:
    """Why a classifier's figures read low or undefined: ``rows`` of ``total`` outputs were NaN or
    infinite (a diverged model, or a NaN an input carried through)."""
    return (f"{rows} of {total} row(s) have outputs that are not finite (NaN or inf: the model diverged, or an "
            f"input holds NaN); they count as wrong calls, and {undefined} are undefined")


def binary_rates(matrix: np.ndarray, positive: Any) -> dict[str, Any]:
    """A two-class confusion matrix (rows = true class) read for its second class, the positive
    one, as a screening test is: ``sensitivity`` (positives found), ``specificity`` (negatives
    cleared), ``ppv`` and ``npv`` (how often a positive / negative call is right); None where no
    row or no call makes the rate."""
    (tn, fp), (fn, tp) = np.asarray(matrix, np.int64)

    def rate(hits: int, total: int) -> float | None:
        return float(hits / total) if total else None

    return {"class": positive.item() if isinstance(positive, np.generic) else positive,
            "sensitivity": rate(tp, tp + fn), "specificity": rate(tn, tn + fp),
            "ppv": rate(tp, tp + fp), "npv": rate(tn, tn + fn)}


def multilabel_metrics(logits: np.ndarray, target: np.ndarray, names: Sequence[str] | None = None,
                       threshold: float | Sequence[float] | None = None) -> dict[str, Any]:
    """micro/macro F1, subset accuracy and macro AUROC over labels that have both values; given the
    labels' ``names``, also ``f1_per_label`` and ``auroc_per_label``. ``threshold``: the model's
    decision threshold(s) (``decision.threshold``; None: 0.5), which the calls behind the F1 and
    subset accuracy follow, reported as ``threshold`` (one for every label) or ``threshold_per_label``.

    A label no row holds and no call gives has no F1 (every call right, nothing to find), one every
    row holds or none no AUROC: None per label, left out of the macro averages, and a ``note``
    names them (scikit-learn would score the first as 0, so that a perfect model's macro F1 fell).
    """
    from sklearn.metrics import roc_auc_score

    proba = sigmoid(logits.astype(np.float64))
    target = target.astype(int).reshape(len(target), -1)
    broken = ~np.isfinite(proba)
    pred = np.where(broken, 1 - target, decisions("multilabel", proba, threshold))  # no call: wrong, not 0
    finite = not broken.any()  # a diverged model's NaN outputs have no AUROC
    label_aucs = [float(roc_auc_score(target[:, j], proba[:, j])) if finite and len(np.unique(target[:, j])) == 2
                  else None for j in range(target.shape[1])]
    hits = (pred == 1) & (target == 1)
    tp, called, held = hits.sum(axis=0), (pred == 1).sum(axis=0), (target == 1).sum(axis=0)
    label_f1 = [float(2 * t / (c + h)) if c + h else None for t, c, h in zip(tp, called, held, strict=True)]
    aucs, f1s = [a for a in label_aucs if a is not None], [f for f in label_f1 if f is not None]
    out = {
        "subset_accuracy": float((pred == target).all(axis=1).mean()),
        "micro_f1": float(2 * tp.sum() / (called.sum() + held.sum())) if called.sum() + held.sum() else None,
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "auroc": float(np.mean(aucs)) if aucs else None,
    }
    if names is not None:
        out["f1_per_label"] = dict(zip(names, label_f1, strict=True))
        out["auroc_per_label"] = dict(zip(names, label_aucs, strict=True))
    labels = list(names) if names is not None else [str(j) for j in range(target.shape[1])]
    if not finite:
        out["note"] = non_finite_note(int(broken.any(axis=1).sum()), len(target), "the AUROCs")
    else:
        for note in _undefined_label_notes(labels, label_f1, label_aucs, target):
            add_note(out, note)
    if isinstance(threshold, int | float):
        out["threshold"] = float(threshold)
    elif threshold is not None:
        out["threshold_per_label"] = {n: float(t) for n, t in zip(labels, threshold, strict=True)}
    return out


def _undefined_label_notes(labels: Sequence[str], f1: Sequence[float | None], aucs: Sequence[float | None],
                           target: np.ndarray) -> list[str]:
    """What :func:`multilabel_metrics` could not score, and what its averages are over then."""
    notes = []
    no_f1 = [label for label, value in zip(labels, f1, strict=True) if value is None]
    if no_f1:
        rest = len(labels) - len(no_f1)
        notes.append(f"f1 is undefined for {_listed(no_f1)}: no row holds it and none was called so (every call "
                     f"right); macro_f1 averages {'the other ' + str(rest) + ' label(s)' if rest else 'none'}")
    no_auc = [(label, int(target[0, j])) for j, (label, value) in enumerate(zip(labels, aucs, strict=True))
              if value is None and len(target)]
    if no_auc:
        rest = len(labels) - len(no_auc)
        each = ", ".join(f"{label!r} (every row {value})" for label, value in no_auc[:10])
        notes.append(f"auroc is undefined for {each}{' ...' if len(no_auc) > 10 else ''}: an AUROC needs rows of "
                     f"both values; auroc averages {'the other ' + str(rest) + ' label(s)' if rest else 'none'}")
    return notes


def _listed(labels: Sequence[str]) -> str:
    shown = ", ".join(map(repr, labels[:10]))
    return f"label(s) {shown}{' ...' if len(labels) > 10 else ''}"


def regression_metrics(pred: np.ndarray, target: np.ndarray, names: Sequence[str] | None = None) -> dict[str, Any]:
    """MAE, RMSE and R2 (averaged over target columns), on the values as given. With several
    target columns and their ``names``, also ``mae_per_target``, ``rmse_per_target`` and
    ``r2_per_target``: the averages mix the targets' units, each target's own figures do not.

    R2 compares the squared errors with the target's spread, so it is undefined (None, not
    scikit-learn's 0.0) for a target that is constant on the rows, on fewer than two rows, and on
    outputs that are not finite (a diverged model); ``r2`` averages the targets where it is
    defined (None where it is nowhere), and a ``note`` says which are not and why."""
    pred, target = pred.reshape(len(pred), -1), target.reshape(len(target), -1)
    err = pred - target
    finite = bool(np.isfinite(pred).all())  # NaN outputs: diverged
    r2 = [_r2(err[:, j], target[:, j]) if finite else None for j in range(target.shape[1])]
    defined = [v for v in r2 if v is not None]
    mae, rmse = np.abs(err).mean(axis=0), np.sqrt((err ** 2).mean(axis=0))
    out: dict[str, Any] = {"mae": float(mae.mean()), "rmse": float(rmse.mean()),
                           "r2": float(np.mean(defined)) if defined else None}
    if finite and len(defined) < len(r2):
        out["note"] = _undefined_r2_note(target, r2, names)
    if names is not None and len(names) > 1:
        out["mae_per_target"] = {n: float(v) for n, v in zip(names, mae, strict=True)}
        out["rmse_per_target"] = {n: float(v) for n, v in zip(names, rmse, strict=True)}
        out["r2_per_target"] = dict(zip(names, r2, strict=True))
    return out


def _r2(err: np.ndarray, target: np.ndarray) -> float | None:
    """1 - SS_res / SS_tot of one target column (``err``: prediction - target); None when the
    target does not vary over at least two rows (SS_tot is 0: no spread to explain)."""
    target = target.astype(np.float64)
    if len(target) < 2 or bool((target == target[0]).all()):
        return None
    total = float(((target - target.mean()) ** 2).sum())
    return 1.0 - float((err.astype(np.float64) ** 2).sum()) / total


def _undefined_r2_note(target: np.ndarray, r2: Sequence[float | None], names: Sequence[str] | None) -> str:
    """Which targets' R2 is undefined, and why, in words (see :func:`regression_metrics`)."""
    if len(target) < 2:
        return f"r2 is undefined on {len(target)} row(s): it needs at least 2 rows whose target varies"
    if names is not None and len(names) == target.shape[1]:
        labels = [repr(str(n)) for n in names]
    else:
        labels = ["the target"] if target.shape[1] == 1 else [f"target {j}" for j in range(target.shape[1])]
    constant = [f"{labels[j]} (every row {float(target[0, j]):.6g})" for j, v in enumerate(r2) if v is None]
    said = (f"r2 is undefined for {', '.join(constant)}: constant on these rows, so R2 has no spread of the target "
            "to compare the errors with")
    return said + ("; r2 averages the other targets" if len(constant) < len(r2) else "")


# the note of the metrics of several regression targets
MIXED_UNITS = ("mae and rmse are the means of the targets' own, which mix the targets' units where these differ "
               "(each target's own: mae_per_target, rmse_per_target; r2 is unit-free)")


def task_metrics(task: str, outputs: np.ndarray, target: np.ndarray, n_classes: int | None = None,
                 names: Sequence[str] | None = None, classes: Sequence[Any] | None = None,
                 threshold: float | None = None) -> dict[str, Any]:
    """Metrics for ``task`` from raw model outputs (regression: already on the original scale);
    ``names``: the target columns (multilabel and regression add per-label / per-target figures);
    ``classes``: a classifier's class labels (they label the confusion matrix); ``threshold``: a
    two-class classifier's decision threshold (see :func:`classification_metrics`)."""
    if task == "classification":
        return classification_metrics(outputs, target, n_classes, classes, threshold)
    if task == "multilabel":
        return multilabel_metrics(outputs, target, names, threshold)
    out = regression_metrics(outputs, target, names)
    if names is not None and len(names) > 1:
        add_note(out, MIXED_UNITS)
    return out


def add_note(metrics: dict[str, Any], note: str) -> None:
    """``note`` added to ``metrics['note']`` (notes are joined by ``"; "``), once however often it
    is said."""
    if note not in (metrics.get("note") or ""):
        metrics["note"] = note if not metrics.get("note") else f"{metrics['note']}; {note}"


def drop_note(metrics: dict[str, Any], note: str) -> None:
    """``note`` taken out of ``metrics['note']`` (the key goes with the last note)."""
    kept = [part for part in (metrics.get("note") or "").split("; ") if part and part != note]
    if kept:
        metrics["note"] = "; ".join(kept)
    else:
        metrics.pop("note", None)


def mixed_units_noted(scores: Mapping[str, Any]) -> bool:
    """Whether ``scores`` (a regression's of several targets) carry the :data:`MIXED_UNITS` note."""
    return MIXED_UNITS in str(scores.get("note") or "")


def flat_metrics(scores: Mapping[str, Any]) -> dict[str, Any]:
    """The single-number entries of a metrics dict (no confusion matrix, no note), each target's
    own figures among them as ``<metric>_per_target.<target>`` (``rmse_per_target.rpm``; a
    multi-task model's ``<task>/rmse_per_target.rpm``): one row of a table, one epoch's logged values."""
    out: dict[str, Any] = {}
    for key, value in scores.items():
        if isinstance(value, Mapping) and key.endswith(PER_TARGET):
            out.update({f"{key}.{target}": v for target, v in value.items()})
        elif value is None or isinstance(value, int | float):
            out[key] = value
    return out


def metric_value(scores: Mapping[str, Any], name: str) -> Any:
    """``scores[name]``, or one target's own figure for a per-target name (``rmse_per_target.rpm``:
    ``scores["rmse_per_target"]["rpm"]``); None where the scores lack it."""
    metric, target = split_metric(name)
    if target is None:
        return scores.get(name)
    return (scores.get(f"{metric}{PER_TARGET}") or {}).get(target)


def monitored(task: str, early_stopping: Any) -> tuple[str, str]:
    """The validation metric a run selects its epoch by and whether lower (``min``) or higher
    (``max``) is better: ``early_stopping.monitor`` unless ``auto`` (or no early stopping), else the
    task's default."""
    if early_stopping is not None and early_stopping.monitor != "auto":
        return early_stopping.monitor, direction(early_stopping.monitor)
    name = TASK_METRICS[task].default_monitor
    return name, direction(name)
