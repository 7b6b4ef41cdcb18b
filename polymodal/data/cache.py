"""The preprocessed-tensor cache: featurised samples stored once on disk, memory-mapped, reused.

A :class:`FeatureStore` lives in ``<cache_dir>/<fingerprint>/``, where the fingerprint hashes
everything that determines a sample's featurised arrays (preprocessor class, encoding config and
fitted encoding state such as a vocabulary). Inside, each item is keyed by a hash of its
content (the file's bytes, or the inline value), so a renamed file is still a hit and an
edited one is a miss.

Storage is append-only: each encoding pass that meets new items writes one *segment*
(``segments/<id>/<array>.npy`` + ``keys.npy``) into a temp folder and renames it into place,
so an interrupted run never leaves a partial segment and concurrent writers never clash (what a
killed process leaves in a temp folder is swept when a store opens a day later).
Each segment (and each stat-memo part) also holds its keys sorted (``index_keys.npy``, with
``index_values.npy``), memory-mapped and binary-searched: a lookup reads a few pages per key
and nothing is loaded whole, so opening a store of a million items costs no memory. When many
runs have added segments, their indexes are merged into one (``merged/``), so a lookup stays a
single binary search.

Content keys, and the stat memo that spares a warm run from reading every file again, are in
:mod:`polymodal.data.content_keys`.

:class:`SegmentedArray` presents rows scattered over segments as one array: indexing with
integers or slices gathers just those rows from the memory maps, so a dataset larger than
memory is never loaded whole.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.data.modalities.base import ArraySpec
from polymodal.utils.io import atomic_folder, atomic_path
from polymodal.utils.warn import warn_user


def _reserve(path: Path) -> None:
    """Allocate the disk blocks of a memory-mapped file now: a write through the map to a sparse
    file on a full disk kills the process with SIGBUS (no message, a partial file left); reserving
    them first turns that into an OSError (ENOSPC) here. A file system that cannot reserve space
    (EOPNOTSUPP, EINVAL) keeps the sparse file."""
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - macOS, Windows
        return
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise


class SortedIndex:
    """Keys sorted ascending with one value each, looked up by binary search.

    Loaded from ``index_keys.npy`` / ``index_values.npy`` memory-mapped, a lookup touches about
    log2(n) pages per key; nothing is read whole.
    """

    KEYS, VALUES = "index_keys.npy", "index_values.npy"

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        self.keys, self.values = keys, values

    @classmethod
    def build(cls, keys: np.ndarray, values: np.ndarray) -> SortedIndex:
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], values[order])

    @classmethod
    def open(cls, folder: Path) -> SortedIndex:
        return cls(np.load(folder / cls.KEYS, mmap_mode="r"), np.load(folder / cls.VALUES, mmap_mode="r"))

    def save(self, folder: Path) -> None:
        """Write both files atomically, the values last: their presence marks a complete index."""
        for name, array in ((self.KEYS, self.keys), (self.VALUES, self.values)):
            with atomic_path(folder / name) as tmp, open(tmp, "wb") as handle:
                np.save(handle, array)

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, the value of each found key; 0 elsewhere)."""
        values = np.zeros(len(keys), self.values.dtype)
        if not len(self.keys):
            return np.zeros(len(keys), bool), values
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = np.asarray(self.keys[pos] == keys)
        values[found] = self.values[pos[found]]
        return found, values


CACHE_ENV = "POLYMODAL_CACHE_DIR"  # a user's cache folder where a config names no data.cache_dir
RANKS_CACHE_ENV = "POLYMODAL_RANKS_CACHE"  # set by a distributed fit, for the ranks it starts, while it runs


class CacheFolder(str):
    """A feature cache folder's path, with the setting that named it (``setting``), which its
    errors name."""

    setting: str


def _named(path: str | os.PathLike, setting: str) -> CacheFolder:
    folder = CacheFolder(os.fspath(path))
    folder.setting = setting
    return folder


def cache_root(config_dir: str | os.PathLike | None) -> CacheFolder | None:
    """The feature cache's folder: ``data.cache_dir``, else ``POLYMODAL_CACHE_DIR`` (a user's, for
    every run), else the temporary cache a distributed fit shares with the ranks it starts (while it
    exists: never created again once that fit has removed it), else None (no cache)."""
    if config_dir is not None:
        return _named(config_dir, "data.cache_dir")
    if os.environ.get(CACHE_ENV):
        return _named(os.environ[CACHE_ENV], f"{CACHE_ENV} (environment variable)")
    ranks = os.environ.get(RANKS_CACHE_ENV)
    return _named(ranks, RANKS_CACHE_ENV) if ranks and os.path.isdir(ranks) else None


def open_cache_dir(cache_dir: str | os.PathLike) -> Path:
    """The feature cache's folder, created when missing.

    Raises:
        ConfigError: naming ``data.cache_dir`` (or, as an OptionError, the environment variable
            that named the folder) when it is a file or cannot be created or written.
    """
    from polymodal.errors import ConfigError, OptionError

    folder = Path(cache_dir)
    setting = getattr(cache_dir, "setting", "data.cache_dir")

    def refused(problem: str) -> Exception:
        line = f"{setting}: {folder} {problem}"
        return ConfigError([line]) if setting == "data.cache_dir" else OptionError([line])

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise refused("(or a folder above it) is a file; name a folder") from None
    except OSError as err:
        raise refused(f"cannot be created ({err.strerror or err})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise refused("is not writable; name a folder this user can write to")
    return folder


def visible_folders(parent: Path) -> list[Path]:
    """The subfolders of ``parent`` in name order, without hidden ones (temp and trash)."""
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))


def publish_index(parent: Path, index: SortedIndex, segments: list[str] | None = None) -> None:
    """Write ``index`` (and the ``segments`` it covers) into a temp folder of ``parent`` and rename it
    into place under a time-ordered name, so readers see a complete index or none."""
    with atomic_folder(parent / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}") as tmp:
        index.save(tmp)
        if segments is not None:  # inside the temp folder: renamed into place with it
            (tmp / "segments.json").write_text(json.dumps(segments), encoding="utf-8")


STALE_TEMP_S = 24 * 3600  # a temp folder nothing wrote to for this long belongs to a killed process


def sweep_leftovers(parent: Path) -> None:
    """Remove what killed processes left in ``parent``: trash folders (always: nothing reads
    them), and temp folders none of whose files changed for ``STALE_TEMP_S``."""
    if not parent.is_dir():
        return
    now = time.time()
    for folder in parent.iterdir():
        try:
            stale = folder.name.startswith(".trash-") or (
                folder.name.startswith(".tmp-") and now - max(p.stat().st_mtime for p in (folder, *folder.iterdir()))
                > STALE_TEMP_S)
        except OSError:  # renamed into place or removed meanwhile
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)


def open_indexes(folders: Sequence[Path]) -> list[SortedIndex]:
    """The indexes in ``folders``, skipping any that another process merged away meanwhile
    (its entries live on in the index that replaced it)."""
    indexes = []
    for folder in folders:
        try:
            indexes.append(SortedIndex.open(folder))
        except OSError:
            continue
    return indexes


def publish_merged(parent: Path, keys: Sequence[np.ndarray], values: Sequence[np.ndarray], replaced: Sequence[Path],
                   segments: list[str] | None = None) -> None:
    """Publish one index of all ``keys`` -> ``values`` into ``parent`` (the first copy of a key stored
    twice wins), then remove the ``replaced`` index folders."""
    unique, first = np.unique(np.concatenate(keys), return_index=True)
    publish_index(parent, SortedIndex(unique, np.concatenate(values)[first]), segments)
    remove_folders(replaced)


def remove_folders(folders: Sequence[Path]) -> None:
    """Delete index folders another index replaced: hidden first, so a reader never opens a
    half-deleted one; one already gone (removed by another process) is skipped."""
    for folder in folders:
        trash = folder.parent / f".trash-{uuid.uuid4().hex}"
        try:
            os.replace(folder, trash)
        except OSError:
            continue
        shutil.rmtree(trash, ignore_errors=True)


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
    """Featurised items of one preprocessing fingerprint (see the module docstring).

    Each segment has its own sorted index; once more than ``MERGE_AT`` segments would be searched
    one by one, their keys are merged into one index (``merged/<id>/``: keys -> segment and slot,
    with the names of the segments it covers), so a lookup stays one binary search however many
    runs added segments. The arrays stay where they were written.
    """

    MERGE_AT = 16
    SLOT_BITS = 32  # a merged value packs (position in its covered segments << 32) | slot

    def __init__(self, root: Path, fingerprint: str, spec: Mapping[str, ArraySpec]):
        self.folder = Path(root) / fingerprint
        self.spec = dict(spec)
        (self.folder / "segments").mkdir(parents=True, exist_ok=True)
        for parent in (self.folder / "segments", self.folder / "merged"):
            sweep_leftovers(parent)
        self._load_index()

    def refresh(self) -> None:
        """Read the segments again: those other processes stored since the store opened."""
        self._load_index()

    def _load_index(self) -> None:
        names = [p.name for p in visible_folders(self.folder / "segments")]
        self.segment_names = names
        folders = [self.folder / "segments" / n for n in names]
        self.arrays = [{k: np.load(f / f"{k}.npy", mmap_mode="r") for k in self.spec} for f in folders]
        self.merged, covered = self._open_merged(set(names))
        number = {name: i for i, name in enumerate(names)}
        self.merged_segments = np.array([number[n] for n in covered], np.int32)  # covered position -> segment
        merged = set(covered)
        self.indexes = {i: self._segment_index(f) for i, f in enumerate(folders) if names[i] not in merged}

    def _open_merged(self, present: set[str]) -> tuple[SortedIndex | None, list[str]]:
        """The newest merged index whose segments all exist, and the names it covers."""
        for folder in reversed(visible_folders(self.folder / "merged")):
            try:
                covered = json.loads((folder / "segments.json").read_text(encoding="utf-8"))
                if set(covered) <= present:
                    return SortedIndex.open(folder), covered
            except (OSError, ValueError):  # being replaced by another process's merge: try the next
                continue
        return None, []

    def _merge(self) -> None:
        """One index over every segment's keys (the first copy of a key stored twice wins)."""
        keys = [index.keys for index in self.indexes.values()]
        values = [(np.int64(number) << self.SLOT_BITS) | np.asarray(index.values, np.int64)
                  for number, index in self.indexes.items()]
        if self.merged is not None:
            packed = np.asarray(self.merged.values, np.int64)
            keys.append(self.merged.keys)
            values.append((self.merged_segments[packed >> self.SLOT_BITS].astype(np.int64) << self.SLOT_BITS)
                          | (packed & ((1 << self.SLOT_BITS) - 1)))
        publish_merged(self.folder / "merged", keys, values, visible_folders(self.folder / "merged"), self.segment_names)

    @staticmethod
    def _segment_index(folder: Path) -> SortedIndex:
        if not (folder / SortedIndex.VALUES).is_file():  # written before the sorted index existed: add it
            keys = np.load(folder / "keys.npy")
            index = SortedIndex.build(keys, np.arange(len(keys), dtype=np.int32))
            try:
                index.save(folder)
            except OSError:  # a read-only cache: keep the index in memory
                return index
        return SortedIndex.open(folder)

    def __len__(self) -> int:
        return (0 if self.merged is None else len(self.merged)) + sum(len(index) for index in self.indexes.values())

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(segment, slot) of each key; segment -1 where the key is not stored."""
        seg, slot = np.full(len(keys), -1, np.int32), np.zeros(len(keys), np.int32)
        if self.merged is not None:
            hit, packed = self.merged.find(keys)
            seg[hit] = self.merged_segments[packed[hit] >> self.SLOT_BITS]
            slot[hit] = packed[hit] & ((1 << self.SLOT_BITS) - 1)
        for number, index in self.indexes.items():
            hit, slots = index.find(keys)
            seg[hit], slot[hit] = number, slots[hit]
        return seg, slot

    def open_segment(self, n_items: int) -> tuple[Path, dict[str, np.ndarray]]:
        """A temp segment folder and writable memory maps for ``n_items`` new items."""
        tmp = self.folder / "segments" / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            arrays = {k: np.lib.format.open_memmap(tmp / f"{k}.npy", mode="w+", dtype=s.dtype,
                                                   shape=(n_items, *s.shape)) for k, s in self.spec.items()}
            for key in arrays:
                _reserve(tmp / f"{key}.npy")
        except OSError as err:
            self.discard_segment(tmp)
            if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                need = sum(int(np.prod((n_items, *s.shape))) * np.dtype(s.dtype).itemsize for s in self.spec.values())
                raise OSError(err.errno, f"{err.strerror}: the feature cache needs {need / 2**20:,.1f} MiB more "
                                         f"for {n_items:,} item(s); free space there or set data.cache_dir "
                                         "elsewhere (null: no cache)", str(self.folder)) from None
            raise
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
        SortedIndex.build(keys[filled], np.arange(int(filled.sum()), dtype=np.int32)).save(tmp)
        os.replace(tmp, self.folder / "segments" / f"{len(self.segment_names):05d}-{uuid.uuid4().hex[:8]}")
        self._load_index()
        if len(self.indexes) > self.MERGE_AT:
            try:
                self._merge()
            except OSError as err:  # lookups still work, segment by segment
                warn_user(f"cannot merge the segment indexes of {self.folder} ({err})")
                return
            self._load_index()

    def discard_segment(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def view(self, segment_of: np.ndarray, slot_of: np.ndarray) -> dict[str, SegmentedArray]:
        """Rows (segment, slot) as one SegmentedArray per array name."""
        return {k: SegmentedArray([a[k] for a in self.arrays], segment_of, slot_of, s) for k, s in self.spec.items()}


def take(array: np.ndarray | SegmentedArray, index: np.ndarray) -> np.ndarray | SegmentedArray:
    """Rows of an array: a lazy view for memory-mapped segments, a copy for in-memory arrays."""
    return array.rows(index) if isinstance(array, SegmentedArray) else array[index]
