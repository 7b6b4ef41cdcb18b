"""Reading what training wrote into a checkpoint without the training engine (torch only:
loading or resuming a run must not import Lightning to find out how far it got)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from polymodal.errors import RunFolderError, option


def checkpoint_state(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint's bookkeeping: ``epoch`` (of the last finished epoch, from 0), the
    callbacks' states and ``earlier_epochs``, those of the training phases before the checkpointed
    one (an anomaly scorer's, :class:`~polymodal.anomaly.module.AnomalyModule`; else 0), read
    memory-mapped (the weights are not loaded) and without unpickling any object (``weights_only``:
    our checkpoints hold tensors and plain values only).

    Raises:
        RunFolderError: the checkpoint holds other objects. Unpickling them could run any code
            its author chose, so it is refused here, before a resume reads any data or hands the
            file to Lightning (which loads it with ``weights_only=True`` too).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"WeightsUnpickler error: (.*?)(?:\. Please|\n|$)", str(error))  # what torch met
        found = found.group(1) if found else (str(error).splitlines() or [type(error).__name__])[0]
        raise RunFolderError(f"the checkpoint {path} cannot be loaded safely: it holds objects other than tensors "
                             f"and plain values ({found}), which loading would run as code. polymodal's own "
                             "checkpoints hold none, so this one was written or altered by something else; start "
                             f"the run again with {option('--overwrite')} (or another {option('--out')}) instead of "
                             "resuming it") from None
    return {"epoch": int(state.get("epoch", -1)), "callbacks": dict(state.get("callbacks", {})),
            "earlier_epochs": len(state.get("earlier_phases_history", []))}
