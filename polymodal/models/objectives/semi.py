"""Semi-supervised losses: confident pseudo-labels (pseudo-labelling, FixMatch)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from polymodal.models.objectives.base import LossOutput


def pseudo_label_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, threshold: float) -> LossOutput:
    """Cross-entropy of ``student_logits`` against the argmax of ``teacher_logits`` on the rows
    where the teacher's top probability reaches ``threshold``, averaged over all rows (so the loss
    grows as more rows become confident, as in FixMatch).

    Pseudo-labelling passes the same logits twice (the prediction is its own target); FixMatch
    passes the strong view's logits as the student and the weak view's as the teacher. The
    teacher side is never back-propagated.

    Args:
        student_logits / teacher_logits: (B, K).
        threshold: confidence in [0, 1).

    Returns:
        The loss; logs ``mask`` (share of confident rows) and ``confidence`` (mean top probability).
    """
    probs = teacher_logits.detach().float().softmax(dim=1)
    confidence, labels = probs.max(dim=1)
    mask = (confidence >= threshold).to(student_logits.dtype)
    per_row = F.cross_entropy(student_logits, labels, reduction="none")
    loss = (per_row * mask).mean() if per_row.numel() else student_logits.sum() * 0.0
    return LossOutput(loss, {"mask": mask.mean().detach(), "confidence": confidence.mean()})
