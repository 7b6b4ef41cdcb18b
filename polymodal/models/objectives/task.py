"""Task losses: cross-entropy (class weights, label smoothing), BCE for multilabel (positive
weights per label, label smoothing), MSE/Huber."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from polymodal.models.objectives.base import LossOutput


def task_loss(outputs: torch.Tensor, target: torch.Tensor, task: str, *, class_weights: torch.Tensor | None = None,
              label_smoothing: float = 0.0, regression: str = "mse", huber_delta: float = 1.0,
              mask: torch.Tensor | None = None) -> LossOutput:
    """Loss of ``outputs`` against ``target``.

    Args:
        outputs: (B, K) logits (classification, multilabel) or values (regression).
        target: (B,) class indices, or (B, K) 0/1 labels or standardised values.
        class_weights: (K,) a weight per class (classification), or per label the weight of its
            positives in the binary cross-entropy (multilabel: ``pos_weight``).
        label_smoothing: classification: mixed with the uniform distribution over classes;
            multilabel: each 0/1 label becomes ``y * (1 - e) + e / 2`` (a 1 is 1 - e/2, a 0 is e/2).
        mask: (B, K) the multilabel or regression target cells that hold a label (a further task's
            rows may lack some); the loss is the mean over those cells, at least one of which must
            be set (the others' targets may be anything finite). None: every cell.
    """
    if mask is not None and task != "classification":
        return _masked_loss(outputs, target, task, mask, class_weights=class_weights,
                            label_smoothing=label_smoothing, regression=regression, huber_delta=huber_delta)
    if task == "classification":
        loss = F.cross_entropy(outputs, target, weight=class_weights, label_smoothing=label_smoothing)
        accuracy = (outputs.argmax(dim=-1) == target).float().mean()
        return LossOutput(loss, {"accuracy": accuracy})
    if task == "multilabel":
        labels = target.to(outputs.dtype)
        if label_smoothing > 0:
            labels = labels * (1.0 - label_smoothing) + label_smoothing / 2.0
        return LossOutput(F.binary_cross_entropy_with_logits(outputs, labels, pos_weight=class_weights))
    if regression == "huber":
        return LossOutput(F.huber_loss(outputs, target.to(outputs.dtype), delta=huber_delta))
    return LossOutput(F.mse_loss(outputs, target.to(outputs.dtype)))


def _masked_loss(outputs: torch.Tensor, target: torch.Tensor, task: str, mask: torch.Tensor, *,
                 class_weights: torch.Tensor | None, label_smoothing: float, regression: str,
                 huber_delta: float) -> LossOutput:
    """:func:`task_loss` of a multilabel or regression task over the cells of ``mask`` (B, K)."""
    labels = torch.where(mask, target, torch.zeros_like(target)).to(outputs.dtype)
    if task == "multilabel":
        if label_smoothing > 0:
            labels = labels * (1.0 - label_smoothing) + label_smoothing / 2.0
        cells = F.binary_cross_entropy_with_logits(outputs, labels, pos_weight=class_weights, reduction="none")
    elif regression == "huber":
        cells = F.huber_loss(outputs, labels, delta=huber_delta, reduction="none")
    else:
        cells = F.mse_loss(outputs, labels, reduction="none")
    return LossOutput((cells * mask).sum() / mask.sum())


def unimodal_loss(unimodal: dict[str, torch.Tensor], present: dict[str, torch.Tensor], target: torch.Tensor,
                  loss: nn.Module) -> LossOutput:
    """Mean over modalities of each modality's own task loss, on the samples where it is present."""
    losses, logs = [], {}
    for name, outputs in sorted(unimodal.items()):
        rows = present[name]
        if bool(rows.any()):
            value = loss(outputs[rows], target[rows]).loss
            losses.append(value)
            logs[name] = value.detach()
    if not losses:
        return LossOutput(next(iter(unimodal.values())).sum() * 0.0, logs)
    return LossOutput(torch.stack(losses).mean(), logs)


class TaskLoss(nn.Module):
    """Module form of :func:`task_loss` holding the task options (class weights as a buffer)."""

    def __init__(self, task: str, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 regression: str = "mse", huber_delta: float = 1.0):
        super().__init__()
        self.task = task
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.label_smoothing = label_smoothing
        self.regression = regression
        self.huber_delta = huber_delta

    def forward(self, outputs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> LossOutput:
        return task_loss(outputs, target, self.task, class_weights=self.class_weights,
                         label_smoothing=self.label_smoothing, regression=self.regression, huber_delta=self.huber_delta,
                         mask=mask)
