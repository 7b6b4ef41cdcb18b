"""The preprocessed-tensor cache: featurised samples stored once on disk, memory-mapped, reused.

A :class:`FeatureStore` lives in ``<cache_dir>/<fingerprint>/``, where the fingerprint hashes
everything that determines a sample's featurised arrays (preprocessor class, encoding config and
fitted encoding state such as a vocabulary). Inside, each item is keyed by a hash of its
content (the file's bytes, or the inline value), so a renamed file is still a hit and an
edited one is a miss.

Storage is append-only: each encoding pass that meets new items writes one *segment*
(``segments/<id>/<array>.npy`` + ``keys.npy``) into a temp folder and renames it into place,
so an interrupted run never leaves a partial segment and concurrent writers never clash.
Lookups use a sorted key array (16 bytes per item) rather than a dict, so the index of a
million items costs ~16 MB.

:class:`SegmentedArray` presents rows scattered over segments as one array: indexing with
integers or slices gathers just those rows from the memory maps, so a dataset larger than
memory is never loaded whole.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.data.arrays import content_bytes
from polymodal.data.modalities.base import ArraySpec

KEY_BYTES = 16


def content_key(value: Any, file_based: bool) -> bytes:
    """Hash of an item's content: a file's bytes, or an inline value's text."""
    digest = hashlib.blake2b(digest_size=KEY_BYTES)
    row_bytes = content_bytes(value) if file_based else None
    if row_bytes is not None:
        digest.update(row_bytes)
    elif file_based:
        with open(value, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(repr(value).encode("utf-8"))
    return digest.digest()


class SegmentedArray:
    """Rows gathered from several memory-mapped segments, looking like one (N, ...) array.

    Args:
        segments: per segment, the memory-mapped array.
        segment_of / slot_of: for each row, its segment (-1 = an all-zero row) and slot.
    """

    def __init__(self, segments: Sequence[np.ndarray], segment_of: np.ndarray, slot_of: np.ndarray,
                 spec: ArraySpec):
        self.segments = list(segments)
        self.segment_of = segment_of
        self.slot_of = slot_of
        self.shape = (len(segment_of), *spec.shape)
        self.dtype = np.dtype(spec.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, index: np.ndarray) -> SegmentedArray:
        """A lazy view of the given rows (integer or boolean index)."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
        spec = ArraySpec(self.shape[1:], self.dtype.str)
        return SegmentedArray(self.segments, self.segment_of[index], self.slot_of[index], spec)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        out = np.zeros((len(index), *self.shape[1:]), self.dtype)
        segs, slots = self.segment_of[index], self.slot_of[index]
        for s in np.unique(segs):
            if s < 0:
                continue
            hit = segs == s
            out[hit] = self.segments[s][np.sort(slots[hit])][np.argsort(np.argsort(slots[hit]))]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)


class FeatureStore:
    """Featurised items of one preprocessing fingerprint (see the module docstring)."""

    def __init__(self, root: Path, fingerprint: str, spec: Mapping[str, ArraySpec]):
        self.folder = Path(root) / fingerprint
        self.spec = dict(spec)
        (self.folder / "segments").mkdir(parents=True, exist_ok=True)
        self._load_index()

    def _load_index(self) -> None:
        names = sorted(p.name for p in (self.folder / "segments").iterdir() if p.is_dir() and not p.name.startswith("."))
        self.segment_names = names
        self.arrays = [{k: np.load(self.folder / "segments" / n / f"{k}.npy", mmap_mode="r") for k in self.spec}
                       for n in names]
        keys = [np.load(self.folder / "segments" / n / "keys.npy") for n in names]
        all_keys = np.concatenate(keys) if keys else np.zeros(0, f"S{KEY_BYTES}")
        seg = np.concatenate([np.full(len(k), i) for i, k in enumerate(keys)]) if keys else np.zeros(0, np.int64)
        slot = np.concatenate([np.arange(len(k)) for k in keys]) if keys else np.zeros(0, np.int64)
        order = np.argsort(all_keys, kind="stable")
        self._keys, self._seg, self._slot = all_keys[order], seg[order], slot[order]

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment, slot) of each key; segment -1 where the key is not stored."""
        pos = np.searchsorted(self._keys, keys)
        pos_clipped = np.minimum(pos, max(len(self._keys) - 1, 0))
        found = (pos < len(self._keys)) & (self._keys[pos_clipped] == keys) if len(self._keys) else np.zeros(len(keys), bool)
        seg = np.where(found, self._seg[pos_clipped] if len(self._keys) else -1, -1)
        slot = np.where(found, self._slot[pos_clipped] if len(self._keys) else 0, 0)
        return seg.astype(np.int64), slot.astype(np.int64)

    def open_segment(self, n_items: int) -> tuple[Path, dict[str, np.ndarray]]:
        """A temp segment folder and writable memory maps for ``n_items`` new items."""
        tmp = self.folder / "segments" / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        arrays = {k: np.lib.format.open_memmap(tmp / f"{k}.npy", mode="w+", dtype=s.dtype, shape=(n_items, *s.shape))
                  for k, s in self.spec.items()}
        return tmp, arrays

    def commit_segment(self, tmp: Path, arrays: Mapping[str, np.ndarray], keys: np.ndarray, filled: np.ndarray) -> None:
        """Keep the filled items of a temp segment and rename it into place (or drop it if empty)."""
        if not filled.any():
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if not filled.all():  # failed decodes: compact the segment to the filled rows
            for key, array in arrays.items():
                kept = np.asarray(array[filled])
                del array
                np.save(tmp / f"{key}.npy", kept)
        else:
            for array in arrays.values():
                array.flush()
        np.save(tmp / "keys.npy", keys[filled])
        os.replace(tmp, self.folder / "segments" / f"{len(self.segment_names):05d}-{uuid.uuid4().hex[:8]}")
        self._load_index()

    def discard_segment(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def view(self, segment_of: np.ndarray, slot_of: np.ndarray) -> dict[str, SegmentedArray]:
        """Rows (segment, slot) as one SegmentedArray per array name."""
        return {k: SegmentedArray([a[k] for a in self.arrays], segment_of, slot_of, s) for k, s in self.spec.items()}


def take(array: np.ndarray | SegmentedArray, index: np.ndarray) -> np.ndarray | SegmentedArray:
    """Rows of an array: a lazy view for memory-mapped segments, a copy for in-memory arrays."""
    return array.rows(index) if isinstance(array, SegmentedArray) else array[index]
