"""Knowledge-distillation losses: softened-logit KL (Hinton et al., 2015) and feature matching."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from polymodal.models.objectives.base import LossOutput


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch.

    Args:
        student_logits / teacher_logits: (B, K); the teacher side is not back-propagated.
    """
    log_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean") * temperature ** 2


def feature_matching_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between (projected) student features and teacher features, both (B, D)."""
    return F.mse_loss(student.float(), teacher.detach().float())


class DistillLoss(nn.Module):
    """KL on softened logits plus feature matching through a learned linear map.

    Args:
        student_dim / teacher_dim: widths of the representations to match.
        temperature: softening of both distributions.
        feature_weight: weight of the feature term (0: no projection is built).
    """

    def __init__(self, student_dim: int, teacher_dim: int, temperature: float = 4.0, feature_weight: float = 1.0):
        super().__init__()
        self.temperature = temperature
        self.feature_weight = feature_weight
        self.project = nn.Linear(student_dim, teacher_dim) if feature_weight > 0 else None

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, student_features: torch.Tensor,
                teacher_features: torch.Tensor) -> LossOutput:
        kd = distillation_loss(student_logits, teacher_logits, self.temperature)
        logs = {"kd": kd.detach()}
        if self.project is None:
            return LossOutput(kd, logs)
        feature = feature_matching_loss(self.project(student_features), teacher_features)
        logs["feature"] = feature.detach()
        return LossOutput(kd + self.feature_weight * feature, logs)
