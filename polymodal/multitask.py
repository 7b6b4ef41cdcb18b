"""Multi-task models at the predictor level: their loss, metrics and prediction columns.

A config with further ``tasks`` trains one head per task (see :mod:`polymodal.config.tasks`).
The main task is scored, selected on and predicted exactly like a single-task model; every
further task adds its own metrics (``<task>/accuracy``, ``<task>/rmse``...) and prediction
columns (``<task>_prediction``, ``<task>_proba_<class>``, ``<task>_pred_<column>``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from polymodal.config.tasks import MAIN_TASK
from polymodal.data.multitarget import MultiTargetEncoder, TaskSlot
from polymodal.metrics.tasks import task_metrics
from polymodal.models.objectives import TaskLoss
from polymodal.models.objectives.multitask import MultiTaskLoss
from polymodal.utils.scores import decisions, probabilities


def with_further_tasks(config: Any, targets: Any, main_loss: TaskLoss) -> nn.Module:
    """``main_loss`` alone for a single-task config, else a :class:`MultiTaskLoss` with one loss per
    task (``loss.label_smoothing`` applies to every classification and multilabel task,
    ``regression`` and ``huber_delta`` to every regression one; class weights only to the main
    task)."""
    if not isinstance(targets, MultiTargetEncoder):
        return main_loss
    losses: dict[str, nn.Module] = {MAIN_TASK: main_loss}
    weights = {MAIN_TASK: 1.0}
    for name, spec in config.tasks.items():
        losses[name] = TaskLoss(spec.task, None, config.loss.label_smoothing, config.loss.regression,
                                config.loss.huber_delta)
        weights[name] = 1.0 if spec.weight is None else spec.weight  # None: learned (uncertainty)
    return MultiTaskLoss(targets.slots, losses, weights, learned=config.loss.task_weighting == "uncertainty")


def main_outputs(targets: Any, outputs: np.ndarray) -> np.ndarray:
    """The main task's columns of a model's outputs (all of them for a single-task model)."""
    if not isinstance(targets, MultiTargetEncoder):
        return outputs
    start, stop = targets.slots[0].outputs
    return outputs[:, start:stop]


def main_task(targets: Any, outputs: np.ndarray, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The main task's outputs and encoded targets (unchanged for a single-task model)."""
    if not isinstance(targets, MultiTargetEncoder):
        return outputs, encoded
    return main_outputs(targets, outputs), targets.main_targets(encoded)


def scored_rows(slot: TaskSlot, target: np.ndarray) -> np.ndarray:
    """(N,) the rows of an encoded target matrix that score task ``slot``: every row for the main
    task; for a further task, those holding every one of its labels (NaN: a row without it)."""
    if slot.name == MAIN_TASK:
        return np.ones(len(target), bool)
    return ~np.isnan(target[:, slot.targets[0]:slot.targets[1]]).any(axis=1)


def further_task_rows(targets: Any, target: np.ndarray) -> dict[str, int]:
    """``<task>/rows``: how many rows of ``target`` each further task is scored on (tasks no row
    scores are left out, as their metrics are); empty for a single-task model."""
    if not isinstance(targets, MultiTargetEncoder):
        return {}
    counts = {slot.name: int(scored_rows(slot, target).sum()) for slot in targets.slots[1:]}
    return {f"{name}/rows": n for name, n in counts.items() if n}


def multitask_metrics(targets: MultiTargetEncoder, outputs: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """Every task's metrics: the main task's under their usual names, the others as ``<task>/<metric>``,
    each on the rows holding its labels (:func:`scored_rows`; a task no row scores is left out).

    ``outputs`` may hold only the main task's columns (as modality-subset evaluation passes them);
    the tasks whose columns are absent are then left out.
    """
    scores: dict[str, Any] = {}
    for slot in targets.slots:
        if slot.outputs[1] > outputs.shape[1]:
            continue
        enc = targets.encoders[slot.name]
        rows = scored_rows(slot, target)
        if slot.name != MAIN_TASK and not rows.any():  # a further task the evaluated rows cannot score
            continue
        out = outputs[rows, slot.outputs[0]:slot.outputs[1]]
        tgt = target[rows, slot.targets[0]:slot.targets[1]]
        if enc.task == "classification":
            part = task_metrics("classification", out, tgt[:, 0].round().astype(np.int64), enc.n_outputs,
                                classes=enc.classes, threshold=enc.threshold)
        elif enc.task == "regression":
            part = task_metrics("regression", enc.decode_values(out), enc.decode_values(tgt), names=enc.columns)
        else:
            part = task_metrics("multilabel", out, tgt, names=enc.columns, threshold=enc.threshold)
        scores.update(part if slot.name == MAIN_TASK else {f"{slot.name}/{k}": v for k, v in part.items()})
    return scores


def task_frame(encoder: Any, outputs: np.ndarray, index: pd.Index, prefix: str = "") -> pd.DataFrame:
    """One task's prediction columns from its raw outputs (``encoder``: its target encoder):
    ``prediction`` and ``proba_<class>`` (classification), ``pred_<label>`` then ``proba_<label>``
    (multilabel), ``pred_<target>`` (regression); every name after ``prefix``."""
    if encoder.task == "regression":
        return pd.DataFrame(encoder.decode_values(outputs), index=index,
                            columns=[f"{prefix}pred_{c}" for c in encoder.columns])
    proba = probabilities(encoder.task, outputs)
    chosen = decisions(encoder.task, proba, encoder.threshold)
    if encoder.task == "multilabel":
        names = list(encoder.columns)
        frame = pd.DataFrame(chosen, index=index, columns=[f"{prefix}pred_{c}" for c in names])
    else:
        names = list(encoder.classes)
        # the classes' own type, as predict gives them (int64 for 0-9, not object)
        frame = pd.DataFrame({f"{prefix}prediction": np.asarray(pd.Index(names))[chosen]}, index=index)
    return frame.join(pd.DataFrame(proba, index=index, columns=[f"{prefix}proba_{c}" for c in names]))


def further_task_frame(targets: Any, outputs: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """Prediction columns of every further task, ``<task>_`` before each name (an empty frame for
    a single-task model)."""
    frames = [pd.DataFrame(index=index)]
    if isinstance(targets, MultiTargetEncoder):
        frames += [task_frame(targets.encoders[slot.name], outputs[:, slot.outputs[0]:slot.outputs[1]], index,
                              f"{slot.name}_") for slot in targets.slots[1:]]
    return pd.concat(frames, axis=1)
