"""The frozen-feature cache under a scorer that reconstructs its inputs.

A cached frozen encoder's rows reach the anomaly network as the encoder's stored outputs (or a
cached stage's arrays; see :mod:`polymodal.data.embeddings`), as they reach a classifier. But the
autoencoder's score, and the loss of every scorer trained by reconstruction (Deep SVDD's
pre-training, the Mahalanobis scorer's), reconstruct each modality's preprocessed *input*
(:func:`~polymodal.anomaly.model.reconstruction_target`), which those rows no longer hold. So they
carry their reconstruction targets beside the stored arrays, computed here once from the encoded
inputs, when the stored outputs are attached: (N, ``anomaly.recon_size``) float32 per cached
modality, held in memory (a few KB per row, where the inputs the encoder read would be read again
each epoch), under :data:`~polymodal.anomaly.model.STORED_TARGET`. The network reads them in place
of pooling an input, so the scores are those of running the encoder on the inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from polymodal.anomaly.model import STORED_TARGET, modality_target
from polymodal.data.dataset import MultimodalDataset
from polymodal.data.encode import EncodedModality, EncodedTable
from polymodal.data.modalities.base import Preprocessor

BATCH = 256


def with_reconstruction_targets(inputs: EncodedTable, network: EncodedTable, preprocessors: Mapping[str, Preprocessor],
                                size: int) -> EncodedTable:
    """``network`` (``inputs`` with cached modalities' stored arrays in place of the encoded
    inputs) with each such modality's reconstruction targets (N, ``size``) from ``inputs``; other
    modalities unchanged, and none for a modality whose inputs are no floats (token ids: not
    reconstructed).

    Args:
        preprocessors: the fitted preprocessors by modality name (their ``to_batch``, as a batch
            of inputs reaches the network).
    """
    modalities = dict(network.modalities)
    for name, stored in network.modalities.items():
        encoded = inputs.modalities[name]
        if stored is encoded or encoded.batcher is not None or STORED_TARGET in stored.arrays:
            continue  # the inputs themselves, or targets there already
        targets = _targets(name, encoded, inputs.rows, preprocessors[name], size)
        if targets is not None:
            modalities[name] = EncodedModality({**stored.arrays, STORED_TARGET: targets}, stored.present,
                                               stored.batcher, stored.keys)
    return EncodedTable(modalities, network.rows, network.skipped)


@torch.no_grad()
def _targets(name: str, encoded: EncodedModality, rows: np.ndarray, preprocessor: Preprocessor,
             size: int) -> np.ndarray | None:
    """(N, ``size``) the reconstruction targets of a modality's rows (absent ones too, as a batch
    holds them: its score masks them), or None when its inputs are not reconstructed.

    Batches are built without augmentation (``train=False``): a cached encoder's preprocessing has
    none (``check_feature_cache``), so training batches carry the same inputs."""
    dataset = MultimodalDataset(EncodedTable({name: encoded}, rows), {name: preprocessor})
    out = np.zeros((len(rows), size), np.float32)
    for start in range(0, len(rows), BATCH):
        batch = dataset.__getitems__(list(range(start, min(start + BATCH, len(rows)))))["inputs"][name]
        target = modality_target(batch, size)  # as the network would compute it (a video's real frames)
        if target is None:
            return None
        out[start:start + BATCH] = target.numpy()
    return out
