"""Losses: pure functions plus thin modules returning a :class:`LossOutput`."""

from polymodal.models.objectives import align as _align  # noqa: F401,I001 - registration
from polymodal.models.objectives import domain as _domain  # noqa: F401
from polymodal.models.objectives import vae as _vae  # noqa: F401
from polymodal.models.objectives.base import LossOutput
from polymodal.models.objectives.task import TaskLoss, task_loss, unimodal_loss

__all__ = ["LossOutput", "TaskLoss", "task_loss", "unimodal_loss"]
