"""The ``tasks:`` section: further targets learned alongside the main one (multi-task learning).

    task: classification          # the main task: model selection, early stopping, predict()
    target: digit
    tasks:                        # more targets, each with its own head and loss weight
      speaker: {task: classification, target: speaker, weight: 0.5}
      age: {task: regression, target: age, weight: 0.2}
    loss: {task_weighting: fixed} # or: uncertainty (learned weights, Kendall et al., 2018)

Every task gets its own head (built from ``head`` unless the task gives one) on the shared fused
representation. A config without ``tasks`` is a single-task config, as before.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field

from polymodal.config.base import StrictModel
from polymodal.config.modalities import modality_columns
from polymodal.config.model import AnyHead, MlpHeadConfig, fusion_names

MAIN_TASK = "main"  # the main task's name in outputs and logs; not allowed for a further task
MAIN_TASK_LOSS = f"train_{MAIN_TASK}/loss"  # a multi-task run's main task's own training loss (history.csv)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TaskSpec(StrictModel):
    """One further task.

    Attributes:
        task: ``classification``, ``multilabel`` or ``regression``.
        target: its manifest column(s).
        weight: loss weight relative to the main task's 1 (``task_weighting: fixed``); None
            (the default): 1 under ``fixed``, learned under ``uncertainty``.
        head: its head; None builds one like the main ``head``.
    """

    task: Literal["classification", "multilabel", "regression"] = "classification"
    target: str | list[str]
    # None by default, settled by check_tasks (1 under fixed weighting): a saved run's config.yaml
    # spells out every value, and a written weight must not read back as one set against uncertainty
    weight: Annotated[float, Field(ge=0.0)] | None = None
    head: AnyHead | None = None

    @property
    def targets(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)


def repeated_columns(columns: list[str]) -> list[str]:
    """The columns ``columns`` lists more than once, in order of first appearance."""
    return [c for c in dict.fromkeys(columns) if columns.count(c) > 1]


def check_tasks(config: Any, saved_run: bool = False) -> None:
    """Cross-field rules of the ``tasks`` section (called by the root config's validator), and the
    weights settled: an unset weight is 1 under ``task_weighting: fixed``; under ``uncertainty``
    the weights are learned, so none may be given, except the 1.0 that a saved run's config.yaml
    of an earlier version spelled out (``saved_run``: read as unset).

    Raises:
        ValueError: a bad task name, a target column listed twice (in one task or across tasks) or
            read as an input, a head that does not fit the fusion, or weights given while they are
            learned.
    """
    tasks = config.tasks or {}
    if not tasks:
        if config.loss.task_weighting != "fixed":
            raise ValueError(f"loss.task_weighting '{config.loss.task_weighting}' weighs several tasks; "
                             "this config has one (add `tasks`)")
        return
    if config.task == "retrieval":
        raise ValueError("tasks: further tasks need a main task with a head; task 'retrieval' has none")
    bad = sorted(n for n in tasks if not _NAME.match(n) or n == MAIN_TASK)
    if bad:
        raise ValueError(f"tasks: names must be identifiers other than '{MAIN_TASK}'; got {bad}")
    seen = {c: "target" for c in config.targets}
    inputs = {c for m in config.modalities.values() for c in modality_columns(m)}
    for name, spec in sorted(tasks.items()):
        repeated = repeated_columns(spec.targets)
        if repeated:
            raise ValueError(f"tasks.{name}.target: lists column(s) {repeated} more than once; each target column "
                             f"is one output and may appear once; got {spec.target}")
        if spec.task == "classification" and len(spec.targets) != 1:
            raise ValueError(f"tasks.{name}: task 'classification' takes one target column; got {spec.target}")
        for column in spec.targets:
            if column in inputs:
                raise ValueError(f"tasks.{name}: target column '{column}' is also read as a modality input")
            if column in seen:
                raise ValueError(f"tasks.{name}: target column '{column}' is already the target of {seen[column]}")
            seen[column] = f"tasks.{name}"
        head = spec.head or config.head
        if not isinstance(head, MlpHeadConfig) and not config.fusion.makes_tokens:
            raise ValueError(f"tasks.{name}: head '{head.name}' models a token sequence and needs fusion "
                             f"{' or '.join(repr(n) for n in fusion_names(tokens_only=True))}; "
                             f"fusion is '{config.fusion.name}'")
        learned = config.loss.task_weighting == "uncertainty"
        if learned and saved_run and spec.weight == 1.0:
            spec.weight = None  # the default an earlier version wrote out
        if learned and spec.weight is not None:
            raise ValueError(f"tasks.{name}.weight is set, but loss.task_weighting 'uncertainty' learns the weights")
        if not learned and spec.weight is None:
            spec.weight = 1.0
    if config.fusion.produces_outputs and any(spec.head is not None for spec in tasks.values()):
        raise ValueError(f"tasks: fusion '{config.fusion.name}' builds its own per-modality heads; tasks cannot "
                         "choose a head")


__all__ = ["MAIN_TASK", "TaskSpec", "check_tasks", "repeated_columns"]
