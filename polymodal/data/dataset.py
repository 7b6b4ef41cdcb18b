"""The torch Dataset over encoded arrays, and its collate.

Batches are assembled with one fancy-indexing operation per array (``__getitems__``, which
torch's DataLoader calls with the whole list of batch indices) instead of one Python call per
sample, then each preprocessor's ``to_batch`` normalises the batch and trims its padding.

A batch is a dict:

    {"inputs":  {modality: {encoder keyword: tensor}},
     "present": {modality: (B,) bool},
     "target":  (B,) long | (B, K) float   (absent when the dataset has no targets),
     "index":   (B,) long row numbers}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from polymodal.data.encode import EncodedTable, freeze_inherited_objects, unshared_generator
from polymodal.data.modalities.base import Preprocessor

Batch = dict[str, Any]


class MultimodalDataset(Dataset):
    """Encoded rows -> batches of per-modality encoder inputs plus presence masks.

    Args:
        table: the encoded manifest.
        preprocessors: fitted preprocessors by modality name.
        targets: encoded targets aligned with ``table`` rows, or None.
        train: apply training-only augmentation.
    """

    def __init__(self, table: EncodedTable, preprocessors: Mapping[str, Preprocessor],
                 targets: np.ndarray | None = None, train: bool = False):
        if targets is not None and len(targets) != len(table):
            raise ValueError(f"targets has {len(targets)} rows but the encoded table has {len(table)}")
        self.table = table
        self.preprocessors = dict(preprocessors)
        self.targets = targets
        self.train = train

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        idx = np.asarray(indices, dtype=np.int64)
        inputs, present = {}, {}
        for name, mod in self.table.modalities.items():
            arrays = {k: torch.from_numpy(_gather(v, idx)) for k, v in mod.arrays.items()}
            batcher = mod.batcher if mod.batcher is not None else self.preprocessors[name]
            inputs[name] = batcher.to_batch(arrays, self.train)
            present[name] = torch.from_numpy(mod.present[idx])
        batch: Batch = {"inputs": inputs, "present": present, "index": torch.from_numpy(idx)}
        if self.targets is not None:
            batch["target"] = torch.from_numpy(self.targets[idx])
        return batch


def _gather(array: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``array[idx]`` as a new contiguous array; a memory map is read in row order (faster on
    disk), then put back in the order asked for."""
    if not isinstance(array, np.memmap):
        return np.ascontiguousarray(array[idx])
    order = np.argsort(idx, kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return np.ascontiguousarray(np.asarray(array[idx[order]])[inverse])


def collate(items: Batch | list[Batch]) -> Batch:
    """DataLoader collate: a batch from ``__getitems__`` passes through; single items (from
    ``__getitem__``, e.g. a custom sampler) are concatenated."""
    if isinstance(items, dict):
        return items
    if len(items) == 1:
        return items[0]
    return _concat(items)


def data_loader(dataset: MultimodalDataset, batch_size: int, *, train: bool, workers: int = 0,
                pin_memory: bool = False, ranks: int = 1) -> DataLoader:
    """A DataLoader over ``dataset`` with :func:`collate`; shuffled and without a short last batch
    when ``train``.

    Args:
        workers: worker processes (0: load in the calling process).
        pin_memory: page-locked batches, for faster copies to a GPU.
        ranks: processes that train together (distributed training), each on its share of the rows.
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, collate_fn=collate, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=pin_memory, worker_init_fn=freeze_inherited_objects,
                      drop_last=train and drops_short_batch(len(dataset), batch_size, ranks))


def inference_loader(dataset: MultimodalDataset, batch_size: int) -> DataLoader:
    """A DataLoader over ``dataset`` in table order, with :func:`collate`, that leaves torch's
    global random stream where it was (see :func:`unshared_generator`)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                      generator=unshared_generator())


def drops_short_batch(rows: int, batch_size: int, ranks: int = 1) -> bool:
    """Whether a training loader drops its last short batch: only when each of the ``ranks``
    processes training together (its share of ``rows``) still has a full batch, so that a small
    training set never leaves an epoch without a step."""
    return -(-rows // max(1, ranks)) > batch_size


def _concat(items: list[Any]) -> Any:
    first = items[0]
    if isinstance(first, dict):
        return {k: _concat([it[k] for it in items]) for k in first}
    if isinstance(first, torch.Tensor):
        if first.dim() >= 2 and any(it.shape[1:] != first.shape[1:] for it in items):
            longest = max(it.shape[1] for it in items)  # variable-length text/audio: pad to the longest
            items = [torch.nn.functional.pad(it, [0, 0] * (it.dim() - 2) + [0, longest - it.shape[1]]) for it in items]
        return torch.cat(items)
    raise TypeError(f"cannot collate {type(first).__name__}")
