"""Fusions, registered in ``FUSIONS`` against their config class."""

from polymodal.models.fusion import attention, late, simple, tensor  # noqa: F401 - registration
from polymodal.models.fusion.base import FusedOutput, Fusion

__all__ = ["FusedOutput", "Fusion"]
