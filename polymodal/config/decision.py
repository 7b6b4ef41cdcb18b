"""The ``decision:`` section: when a two-class classifier calls its positive class, and when a
multilabel model calls each label.

    task: classification              # two classes; the positive one is the second in the model's
    target: finding                   #   class order (0/1: 1; text: the later in sorted order)
    decision:
      threshold: auto                 # null (default): the more probable class; 0.3: positive when
                                      #   P(positive) >= 0.3; auto: chosen on the validation rows
      metric: balanced_accuracy       # what auto maximises: balanced_accuracy | f1 | mcc | accuracy
      # min_sensitivity: 0.95         # or: keep this validation sensitivity, with the best specificity
      # min_specificity: 0.95         # or: keep this validation specificity, with the best sensitivity

A model trained on imbalanced classes calls the rare class too seldom at the default, however
well it ranks the rows (AUROC): an operating point chosen on validation rows (as AutoGluon's
``calibrate_decision_threshold``) trades sensitivity against specificity without retraining.
A fitted model chooses again with ``pred.set_threshold`` or ``polymodal threshold RUN``, from the
validation probabilities its run keeps (``scores.npz``); both record the new choice here.

A multilabel model calls each label from 0.5 by default; ``threshold`` sets one for every label,
``[0.3, 0.7]`` one per label (in ``target`` order), and ``auto`` chooses each label's on the
validation rows by the same criterion (a label the validation rows hold with one value only keeps
0.5, with a warning): each label is a two-class decision of its own.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from polymodal.config.base import StrictModel

DECIDED_TASKS = ("classification", "multilabel")  # the tasks whose calls a decision threshold sets
DecisionMetric = Literal["balanced_accuracy", "f1", "mcc", "accuracy"]
Rate = Annotated[float, Field(gt=0.0, le=1.0)]


class DecisionConfig(StrictModel):
    """A two-class classifier's operating point (a multilabel model's: each label's).

    Attributes:
        threshold: None (default): the class of higher probability; a probability in (0, 1): the
            positive (second) class when its probability reaches it; ``auto``: the threshold that
            does best on the validation rows after training, by ``metric`` or under one of the
            ``min_`` constraints (the midpoint between the two validation probabilities it
            falls between, so that new rows close to either side are split evenly); multilabel:
            also a list of one probability per label, in ``target`` order.
        metric: what ``auto`` maximises on the validation rows: ``balanced_accuracy`` (the mean
            of sensitivity and specificity, Youden's J plus one over two), ``f1`` (of the positive
            class), ``mcc`` (Matthews correlation) or ``accuracy``.
        min_sensitivity: ``auto`` keeps the validation sensitivity (the positive rows called
            positive) at least this with the best specificity there (and, where a stretch of
            thresholds ties on it, the best sensitivity), as a screening test is set. Instead of
            ``metric``.
        min_specificity: ``auto`` keeps the validation specificity (the negative rows called
            negative) at least this with the best sensitivity there (ties: the best specificity).
            Instead of ``metric``.
    """

    threshold: (Literal["auto"] | Annotated[float, Field(gt=0.0, lt=1.0)]
                | Annotated[list[Annotated[float, Field(gt=0.0, lt=1.0)]], Field(min_length=1)] | None) = None
    metric: DecisionMetric = "balanced_accuracy"
    min_sensitivity: Rate | None = None
    min_specificity: Rate | None = None

    @model_validator(mode="after")
    def _one_criterion(self) -> DecisionConfig:
        constraints = [key for key in ("min_sensitivity", "min_specificity") if getattr(self, key) is not None]
        if len(constraints) > 1:
            raise ValueError("give min_sensitivity or min_specificity, not both (one is held, the other "
                             "made as good as it can be)")
        if constraints and self.threshold != "auto":
            raise ValueError(f"{constraints[0]} is what threshold 'auto' chooses by; threshold is {self.threshold!r}")
        return self

    @property
    def criterion(self) -> str:
        """What ``auto`` chooses by, in words: ``balanced_accuracy``, ``sensitivity >= 0.95``..."""
        if self.min_sensitivity is not None:
            return f"sensitivity >= {self.min_sensitivity:g}"
        if self.min_specificity is not None:
            return f"specificity >= {self.min_specificity:g}"
        return self.metric


def check_decision(config: Any) -> None:
    """``decision`` sets the operating point of a classifier or a multilabel model (of its main
    task, with ``tasks``); few-shot prototypes classify with classes of their support set, so they
    take none.

    Raises:
        ValueError: a threshold set for another task or for ``transfer: protonet``; a list of
            thresholds for a classifier, or of another length than a multilabel model's labels.
    """
    threshold = config.decision.threshold
    if threshold is None:
        return
    if config.task not in DECIDED_TASKS:
        raise ValueError(f"decision.threshold: sets when a two-class classifier calls its positive class, or a "
                         f"multilabel model each label; task is '{config.task}'"
                         + (" (an anomaly detector's flag threshold is anomaly.target_fpr)"
                            if config.task == "anomaly" else ""))
    if isinstance(threshold, list) and config.task == "classification":
        raise ValueError(f"decision.threshold: a list gives each label of a multilabel model its own; a classifier "
                         f"takes one probability (or auto); got {threshold}")
    if isinstance(threshold, list) and len(threshold) != len(config.targets):
        raise ValueError(f"decision.threshold: one per label, in target order {config.targets}; got "
                         f"{len(threshold)} ({threshold})")
    if config.protonet is not None:
        raise ValueError("decision.threshold: a few-shot model (transfer: protonet) classifies by its support set's "
                         "classes, which the threshold cannot know; leave it null")


__all__ = ["DECIDED_TASKS", "DecisionConfig", "DecisionMetric", "check_decision"]
