"""Multi-task loss: each task's own loss on its slice of the outputs and targets, weighted.

A multi-task model returns the tasks' outputs side by side, (B, sum of K_t), and its targets are
one float matrix (B, sum of C_t) where a classification task takes one column (the class index)
and a multilabel or regression task one column per target. :class:`TaskSlot` says where each
task lives in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from polymodal.data.multitarget import TaskSlot
from polymodal.models.objectives.base import LossOutput


def multitask_loss(outputs: torch.Tensor, target: torch.Tensor, slots: Sequence[TaskSlot],
                   losses: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None,
                   log_vars: torch.Tensor | None = None) -> LossOutput:
    """Weighted sum of the tasks' losses.

    Args:
        outputs: (B, sum K_t); target: (B, sum C_t).
        slots: the tasks, the main one first.
        losses: each task's loss module (``(outputs, target) -> LossOutput``).
        weights: fixed weights by task name (``task_weighting: fixed``).
        log_vars: (T,) learned log-variances ``s_t`` (``task_weighting: uncertainty``); the total is
            ``sum_t exp(-s_t) * L_t + s_t`` (Kendall et al., 2018) and ``weights`` is ignored.

    A further task's target is NaN in the rows without its label: its loss is the mean over the
    rows (multilabel, regression: the cells) that hold one, and a batch with none adds 0 for it
    (no NaN, nor a learned weight's ``s_t``) and logs nothing for it.

    Returns:
        The total; logs the main task's own logs unprefixed, and ``<task>/loss`` (plus the task's
        logs and, with learned weights, ``<task>/weight``) for every task the batch has labels of.
    """
    total = outputs.new_zeros(())
    logs: dict[str, torch.Tensor] = {}
    for i, slot in enumerate(slots):
        result = losses[slot.name](slot.take_outputs(outputs), slot.take_targets(target)) if i == 0 \
            else labelled_loss(losses[slot.name], slot, outputs, target)
        if result is None:  # no row of the batch holds this task's label
            total = total + slot.take_outputs(outputs).sum() * 0.0  # its head still in the graph (DDP)
            continue
        if log_vars is not None:
            precision = torch.exp(-log_vars[i])
            total = total + precision * result.loss + log_vars[i]
            logs[f"{slot.name}/weight"] = precision.detach()
        else:
            total = total + (1.0 if weights is None else weights[slot.name]) * result.loss
        logs[f"{slot.name}/loss"] = result.loss.detach()
        for key, value in result.logs.items():
            logs[key if i == 0 else f"{slot.name}/{key}"] = value
    return LossOutput(total, logs)


def labelled_loss(loss: nn.Module, slot: TaskSlot, outputs: torch.Tensor, target: torch.Tensor) -> LossOutput | None:
    """A further task's loss on the rows of the batch that hold its label (its target is NaN in the
    others): classification on those rows, multilabel and regression on the cells holding a value;
    None when no row does.

    Args:
        loss: the task's loss module (``(outputs, target, mask=None) -> LossOutput``).
        outputs: (B, sum K_t); target: (B, sum C_t).
    """
    part = target[:, slot.targets[0]:slot.targets[1]]
    labelled = ~torch.isnan(part)  # (B, C_t)
    if bool(labelled.all()):
        return loss(slot.take_outputs(outputs), slot.take_targets(target))
    if not bool(labelled.any()):
        return None
    if slot.task == "classification":
        rows = labelled[:, 0]
        return loss(slot.take_outputs(outputs)[rows], part[rows, 0].round().long())
    return loss(slot.take_outputs(outputs), part, mask=labelled)


class MultiTaskLoss(nn.Module):
    """Module form of :func:`multitask_loss`; holds each task's loss and, with learned weighting,
    the log-variances (initialised to 0, i.e. weight 1)."""

    def __init__(self, slots: Sequence[TaskSlot], losses: Mapping[str, nn.Module], weights: Mapping[str, float],
                 learned: bool = False):
        super().__init__()
        self.slots = list(slots)
        self.losses = nn.ModuleDict({s.name: losses[s.name] for s in self.slots})
        self.weights = dict(weights)
        self.log_vars = nn.Parameter(torch.zeros(len(self.slots))) if learned else None
        self.task = self.slots[0].task  # the main task (what single-task code reads)

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> LossOutput:
        return multitask_loss(outputs, target, self.slots, self.losses, self.weights, self.log_vars)

    def main_loss(self, result: LossOutput) -> torch.Tensor:
        """The main task's own loss in ``result`` (what model selection watches: the total also
        holds the further tasks and, with learned weights, the ``s_t`` terms)."""
        return result.logs[f"{self.slots[0].name}/loss"]
