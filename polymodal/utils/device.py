"""Device and worker defaults (use a GPU when there is one, never require it) and moving batches there."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch


def accelerators() -> tuple[bool, bool]:
    """Whether torch can use a CUDA GPU, and an Apple MPS one, on this machine: the one probe
    that device choices (here and :mod:`polymodal.training.devices`) read."""
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available(), bool(mps is not None and mps.is_available())


def default_device(accelerator: str = "auto") -> torch.device:
    """The device for ``train.accelerator``: ``cpu``; ``gpu`` (CUDA, else Apple MPS); ``mps``;
    ``auto``: CUDA when available, then MPS, else the CPU. A CUDA device is this process's own
    under a distributed launcher (``LOCAL_RANK``), else torch's current one; an accelerator the machine lacks gives the CPU
    (``train`` settings that ask for one are refused before a fit starts)."""
    cuda, mps = accelerators()
    if accelerator in ("auto", "gpu") and cuda:
        rank, count = os.environ.get("LOCAL_RANK", ""), torch.cuda.device_count()
        return torch.device("cuda", int(rank) % count) if rank.isdigit() and count else torch.device("cuda")
    if accelerator in ("auto", "gpu", "mps") and mps:
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


def run_batches(module: torch.nn.Module, batches: Iterable[Any], forward: Callable[[Any], Any],
                device: torch.device) -> list[torch.Tensor]:
    """``forward(batch)`` over ``batches`` (each moved to ``device``), with ``module`` on ``device``
    in eval mode and no autograd; each of its submodules' train/eval mode is restored afterwards
    (a wrapper built for the call may hold a fitted network in another mode than its own).

    Args:
        forward: gives a tensor, or a tuple of tensors, per batch (rows first).

    Returns:
        One float32 CPU tensor per output of ``forward``, its batches concatenated; an empty list
        when there are no batches.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.to(device).eval()
    parts: list[tuple[torch.Tensor, ...]] = []
    try:
        with torch.no_grad():  # not inference_mode: callers may train against the outputs (distillation)
            for batch in batches:
                out = forward(move_to(batch, device))
                parts.append(tuple(t.float().cpu() for t in (out if isinstance(out, tuple) else (out,))))
    finally:
        for m, training in modes:
            m.training = training
    return [torch.cat(chunks) for chunks in zip(*parts, strict=True)]


def exporting() -> bool:
    """Whether ``torch.export`` is capturing the code running now (an ONNX export: data-dependent
    shapes must then stay fixed); False on a torch before 2.6, which cannot say and whose ONNX
    export traces instead."""
    check = getattr(torch.compiler, "is_exporting", None)
    return bool(check()) if check is not None else False
