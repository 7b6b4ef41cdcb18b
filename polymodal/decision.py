"""A two-class classifier's operating point (``decision:``, :mod:`polymodal.config.decision`):
refused before training for other than two classes, chosen (or set) after training on the
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
from polymodal.config.decision import DecisionConfig
from polymodal.config.fitted import model_settings
from polymodal.errors import ConfigError, RunFolderError, SchemaMismatchError
from polymodal.metrics.tasks import task_metrics
from polymodal.metrics.threshold import choose_threshold
from polymodal.multitask import main_outputs
from polymodal.runfolder import Scored
from polymodal.utils.scores import probabilities

if TYPE_CHECKING:
    from polymodal.predictor import MultimodalPredictor


def check_two_classes(config: Any, targets: Any) -> None:
    """Refuse, before training, a ``decision.threshold`` for a model of other than two classes
    (``targets``: the fitted target encoder, whose classes the training rows gave)."""
    if config.decision.threshold is not None and len(targets.classes) != 2:
        raise ConfigError([f"decision.threshold: calls the second of two classes; the training rows hold "
                           f"{len(targets.classes)} classes {targets.classes[:10]}: leave it null"])


def binary_scores(targets: Any, outputs: np.ndarray, target: np.ndarray) -> Scored | None:
    """A two-class main task's positive-class probabilities (N,) and 0/1 labels (N,) from raw
    ``outputs`` and encoded ``target`` (what the run keeps to choose a threshold from); None for
    any other task or number of classes."""
    if targets.task != "classification" or len(targets.classes) != 2:
        return None
    labels = targets.main_targets(target)
    proba = probabilities("classification", main_outputs(targets, outputs).astype(np.float64))
    return proba[:, 1], np.asarray(labels, np.int64).reshape(-1)


def settle_threshold(predictor: MultimodalPredictor, valid: Scored | None) -> dict[str, Any]:
    """After training: the model's threshold as ``decision`` says (none, the number given, or
    chosen on the ``valid`` rows' scores) set on its target encoder.

    Returns:
        Facts for the run's ``info``: ``decision_threshold`` and, when chosen, ``decision`` (what
        it was chosen by and the validation sensitivity and specificity there); empty when none.
    """
    decision = predictor.config.decision
    targets = predictor.pipeline.targets
    if decision.threshold is None:
        targets.threshold = None
        return {}
    if decision.threshold != "auto":
        targets.threshold = float(decision.threshold)
        return {"decision_threshold": targets.threshold}
    if valid is None:  # a two-class model always keeps them: check_two_classes ran before training
        raise SchemaMismatchError("decision.threshold 'auto' needs the validation rows' scores of a two-class model")
    chosen = choose_threshold(valid[0], valid[1] == 1, decision)
    targets.threshold = chosen["threshold"]
    return {"decision_threshold": chosen["threshold"], "decision": chosen}


def set_threshold(predictor: MultimodalPredictor, threshold: float | str | None, *, metric: str | None = None,
                  min_sensitivity: float | None = None, min_specificity: float | None = None) -> dict[str, Any]:
    """:meth:`~polymodal.predictor.MultimodalPredictor.set_threshold` (its arguments, return value
    and errors)."""
    pipeline, _ = predictor.require_fitted()
    targets = pipeline.targets
    if predictor.config.task != "classification" or len(targets.classes or []) != 2:
        what = (f"{len(targets.classes)} classes" if predictor.config.task == "classification"
                else f"task '{predictor.config.task}'")
        raise SchemaMismatchError(f"set_threshold: a decision threshold calls the second of two classes; this model "
                                  f"has {what}")
    given = {"threshold": threshold, "metric": metric, "min_sensitivity": min_sensitivity,
             "min_specificity": min_specificity}
    try:
        decision = validate(DecisionConfig, {k: v for k, v in given.items() if v is not None})
    except ConfigError as err:  # named as the config's keys
        raise ConfigError([f"decision.{problem}" for problem in err.problems], source="set_threshold") from None
    if decision.threshold == "auto" and predictor.valid_scores is None:
        where = f"the run {predictor.run_dir}" if predictor.run_dir is not None else "this model"
        raise RunFolderError(f"{where} keeps no validation probabilities to choose a threshold from (saved before "
                             "polymodal kept them in scores.npz): fit it again, or give the threshold as a number "
                             "(set_threshold(0.3), polymodal threshold RUN --score 0.3)")
    old = targets.threshold
    predictor.config.decision = decision
    facts = settle_threshold(predictor, predictor.valid_scores)
    predictor.info.pop("decision", None)
    predictor.info.pop("decision_threshold", None)
    predictor.info.update(facts)
    predictor._fitted_settings = model_settings(predictor.config)  # the change is the model's own, not one to refuse
    _rescore(predictor)
    return {"old": old, "new": targets.threshold, "criterion": decision.criterion if decision.threshold == "auto"
            else None, "valid": _rates(predictor.metrics.get("valid"))}


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
            note = "accuracy, macro_f1, the confusion matrix and positive_class are the former threshold's (no scores kept)"
            metrics["note"] = note if not metrics.get("note") else f"{metrics['note']}; {note}"
            continue
        proba, labels = kept
        logits = np.log(np.clip(np.stack([1 - proba, proba], axis=1), 1e-300, None))
        fresh = task_metrics("classification", logits, labels, 2, classes=targets.classes, threshold=targets.threshold)
        if targets.threshold is None:
            metrics.pop("threshold", None)
        metrics.update(fresh)


def _rates(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sensitivity, specificity and accuracy of ``metrics`` (a split's), when it has them."""
    if not isinstance(metrics, dict) or "positive_class" not in metrics:
        return None
    rates = metrics["positive_class"]
    return {"sensitivity": rates.get("sensitivity"), "specificity": rates.get("specificity"),
            "accuracy": metrics.get("accuracy"), "rows": metrics.get("rows")}


__all__ = ["binary_scores", "check_two_classes", "set_threshold", "settle_threshold"]
