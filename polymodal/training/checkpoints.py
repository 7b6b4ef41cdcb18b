"""Reading what training wrote into a checkpoint without the training engine (torch only:
loading or resuming a run must not import Lightning to find out how far it got)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def checkpoint_state(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint's bookkeeping: ``epoch`` (of the last finished epoch, from 0), the
    callbacks' states and ``earlier_epochs``, those of the training phases before the checkpointed
    one (an anomaly scorer's, :class:`~polymodal.anomaly.module.AnomalyModule`; else 0), read
    memory-mapped (the weights are not loaded) and without unpickling any object (``weights_only``:
    our checkpoints hold tensors and plain values only). A checkpoint holding other objects reads
    as epoch -1 without callbacks: nothing known, nothing refused."""
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        return {"epoch": -1, "callbacks": {}, "earlier_epochs": 0}
    return {"epoch": int(state.get("epoch", -1)), "callbacks": dict(state.get("callbacks", {})),
            "earlier_epochs": len(state.get("earlier_phases_history", []))}
