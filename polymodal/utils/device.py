"""Device and worker defaults (use a GPU when there is one, never require it) and moving batches there."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch


def default_device() -> torch.device:
    """CUDA when available, then Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_workers() -> int:
    """DataLoader workers for work that benefits from them: all cores but one, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def move_to(batch: Any, device: torch.device) -> Any:
    """A batch (tensors in nested mappings, lists and tuples) on ``device``; anything else is
    returned as is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(move_to(v, device) for v in batch)
    return batch
