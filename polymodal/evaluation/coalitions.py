"""The network's outputs when only a coalition (subset) of modalities is present.

Presence masks are the model's own missing path: a modality outside the coalition is treated
exactly like a missing cell (learned missing-embedding or masking, see ``fusion.missing``). Each
batch is encoded once (the network's ``encode``); the fusion and head (an anomaly detector: its
scorer) then run on all coalitions at once (``outputs_from_features``), the encoder features
repeated coalition-major, so 2^M coalitions cost little more than M encoder passes.

Coalitions and their bit masks: :mod:`polymodal.utils.coalitions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polymodal.data.encode import EncodedTable
from polymodal.evaluation.data import batches
from polymodal.utils.coalitions import Coalition

if TYPE_CHECKING:
    from polymodal.estimator import Estimator

MAX_FUSED_ROWS = 4096  # rows per fusion call (batch rows x coalitions)


def _rows(features: Any, index: torch.Tensor) -> Any:
    """``features`` (tensors in dicts and named tuples, as a network's ``encode`` returns them)
    with their rows picked by ``index``."""
    if features is None:
        return None
    if isinstance(features, torch.Tensor):
        return features.index_select(0, index)
    if isinstance(features, Mapping):
        return {k: _rows(v, index) for k, v in features.items()}
    return type(features)(*(_rows(v, index) for v in features))  # a named tuple


def coalition_outputs(predictor: Estimator, table: EncodedTable, coalitions: Sequence[Coalition],
                      ) -> np.ndarray:
    """Raw network outputs with only each coalition's modalities present.

    A modality is present for a row when it is in the coalition and the row holds it.

    Args:
        table: the encoded rows.
        coalitions: the subsets to evaluate.

    Returns:
        (C, N, K) outputs: coalition x row x output.
    """
    _, net = predictor.require_fitted()
    device = predictor.device
    net.to(device).eval()
    names = list(net.names)
    keep = torch.tensor([[n in c for n in names] for c in coalitions], dtype=torch.bool, device=device)  # (C, M)
    n_out = predictor.n_outputs
    result = np.zeros((len(coalitions), len(table), n_out), np.float32)
    start = 0
    with torch.inference_mode():
        for batch in batches(predictor, table):
            present = batch["present"]
            size = next(iter(present.values())).shape[0]
            features = net.encode(batch["inputs"], present)
            step = max(1, MAX_FUSED_ROWS // size)
            for first in range(0, len(coalitions), step):
                chunk = keep[first:first + step]  # (c, M)
                index = torch.arange(size, device=device).repeat(chunk.shape[0])  # coalition-major
                repeated = _rows(features, index)
                masks = {n: present[n].index_select(0, index) & chunk[:, i].repeat_interleave(size)
                         for i, n in enumerate(names)}
                out = net.outputs_from_features(repeated, masks)[:, :n_out].float().cpu().numpy()  # main task first
                result[first:first + chunk.shape[0], start:start + size] = out.reshape(chunk.shape[0], size, n_out)
            start += size
    return result
