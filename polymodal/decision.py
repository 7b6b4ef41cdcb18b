"""A two-class classifier's operating point, and a multilabel model's per label (``decision:``,
:mod:`polymodal.config.decision`): refused before training for other than two classes, chosen
(or set) after training on the
validation rows, chosen again later from the probabilities the run keeps (``scores.npz``) with
``pred.set_threshold`` / ``polymodal threshold RUN``, and the metrics that depend on it updated.

The threshold is part of the fitted model: its target encoder holds the number (``targets.json``,
``deploy.json``) and every decision follows it (``predict``, ``predict_frame``, ``evaluate``,
explanations of "the predicted class", the runtime and the service).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from polymodal.config.base import validate
from polymodal.config.decision import DECIDED_TASKS, DecisionConfig
from polymodal.config.fitted import model_settings
from polymodal.errors import ConfigError, RunFolderError, SchemaMismatchError
from polymodal.metrics.tasks import add_note, drop_note, task_metrics
from polymodal.metrics.threshold import choose_threshold
from polymodal.multitask import main_outputs
from polymodal.runfolder import Scored
from polymodal.utils.scores import probabilities
from polymodal.utils.warn import warn_user

if TYPE_CHECKING:
    from polymodal.predictor import MultimodalPredictor


def check_decision_data(config: Any, targets: Any, valid_y: np.ndarray) -> None:
    """Refuse, before training, a ``decision.threshold`` for a model of other than two classes
    (``targets``: the fitted target encoder, whose classes the training rows gave), and ``auto``
    when the validation rows (``valid_y``, encoded) lack a class: it would fail after the epochs.
    A number is set on ``targets`` at once, so that the validation figures of every epoch (early
    stopping, ``history.csv``, a tuner's score) are at it; ``auto`` leaves them at the more
    probable class until it is chosen after training."""
    threshold = config.decision.threshold
    targets.threshold = None
    if threshold is None:
        return
    if targets.task == "multilabel":  # a label of one value in the validation rows keeps 0.5 (decide warns)
        targets.threshold = None if threshold == "auto" else threshold
        return
    if len(targets.classes) != 2:
        raise ConfigError([f"decision.threshold: calls the second of two classes; the training rows hold "
                           f"{len(targets.classes)} classes {targets.classes[:10]}: leave it null"])
    if threshold != "auto":
        targets.threshold = float(threshold)
        return
    counts = np.bincount(np.asarray(targets.main_targets(valid_y), np.int64), minlength=2)
    if not counts.all():
        lacking = targets.classes[int(np.argmin(counts))]
        raise ConfigError([f"decision.threshold: 'auto' is chosen on the validation rows, and none of the "
                           f"{int(counts.sum())} holds class {lacking!r}: give validation rows of both classes (or a "
                           "larger train.val_fraction), or a threshold as a number"])


def binary_scores(targets: Any, outputs: np.ndarray, target: np.ndarray) -> Scored | None:
    """A two-class main task's positive-class probabilities (N,) and 0/1 labels (N,), or a
    multilabel one's per label (N, L), from raw ``outputs`` and encoded ``target`` (what the run
    keeps to choose a threshold from); None for any other task or number of classes."""
    if targets.task != "multilabel" and (targets.task != "classification" or len(targets.classes) != 2):
        return None
    proba = probabilities(targets.task, main_outputs(targets, outputs).astype(np.float64))
    labels = np.asarray(targets.main_targets(target)).round().astype(np.int64)
    return (proba, labels) if targets.task == "multilabel" else (proba[:, 1], labels.reshape(-1))


Threshold = float | list[float] | None  # None: the default call; a list: a multilabel model's, one per label


def decide(decision: DecisionConfig, valid: Scored | None, labels: list[str] | None = None
           ) -> tuple[Threshold, dict[str, Any]]:
    """The threshold ``decision`` asks for (None: the default call; the number or list given; or
    chosen on the ``valid`` rows' scores: (N,) of a two-class model, (N, L) of a multilabel one,
    whose ``labels`` name the columns), and the facts for the run's ``info``:
    ``decision_threshold`` and, when chosen, ``decision`` (what it was chosen by and the
    validation sensitivity and specificity there; per label for a multilabel model); changes
    nothing. A multilabel label the rows hold with one value only keeps 0.5, with a warning.

    Raises:
        SchemaMismatchError: ``auto`` without scores, or a two-class model's rows of one class.
    """
    if decision.threshold is None:
        return None, {}
    if decision.threshold != "auto":
        given = decision.threshold if isinstance(decision.threshold, list) else float(decision.threshold)
        return given, {"decision_threshold": given}
    if valid is None:  # a two-class model always keeps them: check_decision_data ran before training
        raise SchemaMismatchError("decision.threshold 'auto' needs the validation rows' scores")
    proba, truth = valid
    if proba.ndim == 1:
        chosen = choose_threshold(proba, truth == 1, decision)
        return chosen["threshold"], {"decision_threshold": chosen["threshold"], "decision": chosen}
    names = labels or [str(j) for j in range(proba.shape[1])]
    thresholds, per_label = [], {}
    for j, name in enumerate(names):
        column = truth[:, j] == 1
        if column.all() or not column.any():
            warn_user(f"decision.threshold 'auto': label '{name}' is {int(column[0])} in every one of the "
                      f"{len(column)} validation rows, so no threshold can be chosen for it; it keeps 0.5")
            thresholds.append(0.5)
            continue
        chosen = choose_threshold(proba[:, j], column, decision, rows=f"validation rows of label '{name}'")
        thresholds.append(chosen["threshold"])
        per_label[name] = chosen
    return thresholds, {"decision_threshold": thresholds, "decision": per_label}


def settle_threshold(predictor: MultimodalPredictor, valid: Scored | None) -> dict[str, Any]:
    """After training: :func:`decide`'s threshold set on the model's target encoder; its facts
    returned."""
    threshold, facts = decide(predictor.config.decision, valid, _labels(predictor))
    predictor.pipeline.targets.threshold = threshold
    return facts


def warn_if_edited(predictor: MultimodalPredictor, run: Any) -> None:
    """Warn when a loaded run's ``decision.threshold`` (its ``config.yaml``, perhaps edited by hand)
    does not describe the threshold its model was saved with (``preprocessors/targets.json``),
    which is the one it decides at."""
    if predictor.config.task not in DECIDED_TASKS:
        return
    said, held = predictor.config.decision.threshold, predictor.pipeline.targets.threshold
    agree = (held is None) if said is None else (held is not None) if said == "auto" else (held == said)
    if not agree:
        warn_user(f"{run}: config.yaml's decision.threshold is {said!r}, but the model was saved deciding at "
                  f"{'the more probable class' if held is None else held} (preprocessors/targets.json), which it "
                  "keeps: editing config.yaml does not set it; use 'polymodal threshold RUN' or pred.set_threshold")


IN_SAMPLE = ("the decision threshold was chosen on these rows: the figures of its calls (accuracy, F1, the "
             "confusion matrix, sensitivity and specificity) are fitted to them (optimistic, unlike the test rows')")
# the metrics of the calls a threshold sets (its in-sample figures); AUROC, log loss and ECE are the probabilities'
CALL_METRICS = frozenset({"accuracy", "macro_f1", "micro_f1", "subset_accuracy"})
NO_SCORES = "accuracy, macro_f1, the confusion matrix and positive_class are the former threshold's (no scores kept)"


def note_in_sample(predictor: MultimodalPredictor) -> None:
    """Say in the validation metrics that an ``auto`` threshold was chosen on their rows (and take
    the saying back for another threshold)."""
    metrics = predictor.metrics.get("valid")
    if not isinstance(metrics, dict):
        return
    if predictor.config.decision.threshold == "auto":
        add_note(metrics, IN_SAMPLE)
    else:
        drop_note(metrics, IN_SAMPLE)


def set_threshold(predictor: MultimodalPredictor, threshold: float | list[float] | str | None, *,
                  metric: str | None = None,
                  min_sensitivity: float | None = None, min_specificity: float | None = None) -> dict[str, Any]:
    """:meth:`~polymodal.predictor.MultimodalPredictor.set_threshold` (its arguments, return value
    and errors). The threshold is decided first: a refusal leaves the model as it was."""
    pipeline, _ = predictor.require_fitted()
    targets = pipeline.targets
    task = predictor.config.task
    if task != "multilabel" and (task != "classification" or len(targets.classes or []) != 2):
        what = f"{len(targets.classes)} classes" if task == "classification" else f"task '{task}'"
        raise SchemaMismatchError(f"set_threshold: a decision threshold calls the second of two classes (or each "
                                  f"label of a multilabel model); this model has {what}")
    given = {"threshold": threshold, "metric": metric, "min_sensitivity": min_sensitivity,
             "min_specificity": min_specificity}
    try:
        decision = validate(DecisionConfig, {k: v for k, v in given.items() if v is not None})
    except ConfigError as err:  # named as the config's keys
        raise ConfigError([f"decision.{problem}" for problem in err.problems], source="set_threshold") from None
    if isinstance(decision.threshold, list) and (task != "multilabel" or len(decision.threshold) != len(targets.columns)):
        raise ConfigError([f"decision.threshold: a list gives each label of a multilabel model its own, in target "
                           f"order {list(targets.columns)}; got {decision.threshold}"], source="set_threshold")
    if decision.threshold == "auto" and predictor.valid_scores is None:
        where = f"the run {predictor.run_dir}" if predictor.run_dir is not None else "this model"
        raise RunFolderError(f"{where} keeps no validation probabilities to choose a threshold from (saved before "
                             "polymodal kept them in scores.npz): fit it again, or give the threshold as a number "
                             "(set_threshold(0.3), polymodal threshold RUN --score 0.3)")
    new, facts = decide(decision, predictor.valid_scores, _labels(predictor))
    old = targets.threshold
    predictor.config.decision = decision
    targets.threshold = new
    predictor.info.pop("decision", None)
    predictor.info.pop("decision_threshold", None)
    predictor.info.update(facts)
    predictor._fitted_settings = model_settings(predictor.config)  # the change is the model's own, not one to refuse
    _rescore(predictor)
    note_in_sample(predictor)
    return {"old": old, "new": new, "criterion": decision.criterion if decision.threshold == "auto" else None,
            "valid": _rates(predictor.metrics.get("valid"))}


def _rescore(predictor: MultimodalPredictor) -> None:
    """The validation and test metrics at the model's threshold, from the scores the run keeps
    (the two columns of probabilities are all a two-class model's metrics need); a split whose
    scores were not kept keeps its figures with a note that they are the old threshold's."""
    targets = predictor.pipeline.targets
    for split, kept in (("valid", predictor.valid_scores), ("test", predictor.test_scores)):
        metrics = predictor.metrics.get(split)
        if not isinstance(metrics, dict):
            continue
        if kept is None:
            add_note(metrics, NO_SCORES)
            continue
        proba, labels = kept
        if proba.ndim == 1:  # the two columns of probabilities are all a two-class model's metrics need
            logits = np.log(np.clip(np.stack([1 - proba, proba], axis=1), 1e-300, None))
            fresh = task_metrics("classification", logits, labels, 2, classes=targets.classes,
                                 threshold=targets.threshold)
        else:  # the labels' probabilities, as logits
            clipped = np.clip(proba, 1e-15, 1 - 1e-15)
            fresh = task_metrics("multilabel", np.log(clipped / (1 - clipped)), labels, names=list(targets.columns),
                                 threshold=targets.threshold)
        for stale in ("threshold", "threshold_per_label"):
            metrics.pop(stale, None)
        metrics.update(fresh)


def _labels(predictor: MultimodalPredictor) -> list[str] | None:
    """A multilabel model's label names (its target columns); None for a classifier."""
    targets = predictor.pipeline.targets
    return list(targets.columns) if targets.task == "multilabel" else None


def _rates(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sensitivity, specificity and accuracy of ``metrics`` (a split's), when it has them."""
    if not isinstance(metrics, dict) or "positive_class" not in metrics:
        return None
    rates = metrics["positive_class"]
    return {"sensitivity": rates.get("sensitivity"), "specificity": rates.get("specificity"),
            "accuracy": metrics.get("accuracy"), "rows": metrics.get("rows")}


__all__ = ["binary_scores", "check_decision_data", "decide", "note_in_sample", "set_threshold", "settle_threshold",
           "warn_if_edited"]
