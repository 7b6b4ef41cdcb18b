"""Losses: pure functions plus thin modules returning a :class:`LossOutput`."""

from polymodal.models.objectives.base import LossOutput
from polymodal.models.objectives.task import TaskLoss, task_loss, unimodal_loss

__all__ = ["LossOutput", "TaskLoss", "task_loss", "unimodal_loss"]
