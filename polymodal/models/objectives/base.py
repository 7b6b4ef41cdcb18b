"""The result every objective returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LossOutput:
    """A scalar loss and named values worth logging (detached by the caller)."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
