"""Each task of an export as the deploy layer reads and answers it: its entry in ``deploy.json``
(:func:`task_entries`), its prediction columns (:func:`task_columns`, for
:meth:`~polymodal.deploy.runtime.Runtime.predict_records`), and its part of the service's
``/predict`` (:func:`task_json`) and ``/metadata`` (:func:`task_metadata`) answers. A single-task
export is one entry, the main task; a multi-task one adds its further tasks, by name.

numpy only, as the rest of the runtime: no torch, no config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from polymodal.utils.scores import decisions

MAIN_TASK = "main"  # the main task's name, as polymodal.config.tasks names it (the runtime imports no config)


def task_entries(meta: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of an export (``meta``: its ``deploy.json``) by name, the main task first, each
    with ``name``, ``task``, ``target``, ``outputs`` ([start, stop) of the graph's output),
    ``classes`` and, as its kind has them, ``threshold``, ``target_scaling`` or ``anomaly``:
    ``deploy.json``'s ``tasks`` for a multi-task model (exported since 2026-12-07), else one entry
    of its main fields (a single-task export, or a multi-task one exported before, which recorded
    the main task only)."""
    if meta.get("tasks"):
        return {task["name"]: dict(task) for task in meta["tasks"]}
    main = {"name": MAIN_TASK, "task": meta["task"], "target": meta.get("target"), "outputs": meta["main_outputs"],
            "classes": meta["classes"]}
    main.update({key: meta[key] for key in ("threshold", "target_scaling", "anomaly") if key in meta})
    return {MAIN_TASK: main}


def task_columns(entry: Mapping[str, Any], scores: np.ndarray) -> dict[str, list[Any]]:
    """One task's prediction columns, as ``polymodal.multitask.task_frame`` names them, from its
    ``scores`` (B, K) (:meth:`Runtime.scores`; ``entry``: its :func:`task_entries` entry):
    ``prediction`` and ``proba_<class>`` (classification), ``pred_<label>`` then ``proba_<label>``
    (multilabel: 0/1 calls), ``pred_<target>`` (regression)."""
    kind, names = entry["task"], entry["classes"]
    if kind == "regression":
        return {f"pred_{c}": scores[:, i].tolist() for i, c in enumerate(names)}
    chosen = decisions(kind, scores, entry.get("threshold"))
    if kind == "multilabel":
        columns = {f"pred_{c}": chosen[:, i].tolist() for i, c in enumerate(names)}
    else:  # no class where the outputs are not numbers (argmax would call them the first)
        finite = np.isfinite(scores).all(axis=1)
        columns = {"prediction": [names[i] if ok else None for i, ok in zip(chosen, finite)]}
    return {**columns, **{f"proba_{c}": scores[:, i].tolist() for i, c in enumerate(names)}}


def task_json(task: Mapping[str, Any], scores: np.ndarray) -> dict[str, Any]:
    """One task's answer from its scores (K,) (``task``: its entry, :attr:`Runtime.tasks`): a
    classifier's ``prediction`` (the class) and ``probabilities``, a multilabel model's
    ``prediction`` (the labels called) and ``probabilities``, each with ``threshold`` where a
    decision threshold is set; a regression's ``prediction`` maps each target to its value."""
    out: dict[str, Any] = {}
    if task["task"] == "classification":
        out["prediction"] = task["classes"][int(decisions("classification", scores[None], task.get("threshold"))[0])]
        if task.get("threshold") is not None:  # decision.threshold: the positive class from this probability of it
            out["threshold"] = task["threshold"]
        out["probabilities"] = {str(c): float(p) for c, p in zip(task["classes"], scores)}  # JSON keys are text
    elif task["task"] == "multilabel":
        called = decisions("multilabel", scores, task.get("threshold"))
        out["prediction"] = [c for c, chosen in zip(task["classes"], called) if chosen]
        if task.get("threshold") is not None:  # decision.threshold: one for every label, or each label's
            out["threshold"] = task["threshold"]
        out["probabilities"] = {str(c): float(p) for c, p in zip(task["classes"], scores)}  # JSON keys are text
    else:
        out["prediction"] = {c: float(v) for c, v in zip(task["classes"], scores)}
    return out


def task_metadata(task: Mapping[str, Any]) -> dict[str, Any]:
    """A further task in ``/metadata`` (``task``: its entry, :attr:`Runtime.tasks`): its kind, target
    columns, classes or labels (none for a regression, as the main task's), and its decision
    threshold where one is set."""
    out = {"task": task["task"], "target": task["target"],
           "classes": task["classes"] if task["task"] in ("classification", "multilabel") else []}
    return {**out, "threshold": task["threshold"]} if task.get("threshold") is not None else out
