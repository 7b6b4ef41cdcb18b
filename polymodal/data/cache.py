"""The preprocessed-tensor cache: featurised samples stored once on disk, memory-mapped, reused.

A :class:`FeatureStore` lives in ``<cache_dir>/<fingerprint>/``, where the fingerprint hashes
everything that determines a sample's featurised arrays (preprocessor class, encoding config and
fitted encoding state such as a vocabulary). Inside, each item is keyed by a hash of its
content (the file's bytes, or the inline value), so a renamed file is still a hit and an
edited one is a miss.

Storage is append-only: each encoding pass that meets new items writes one *segment*
(``segments/<id>/<array>.npy`` + ``keys.npy``) into a temp folder and renames it into place,
so an interrupted run never leaves a partial segment and concurrent writers never clash.
Each segment (and each memo part below) also holds its keys sorted (``index_keys.npy``, with
``index_values.npy``), memory-mapped and binary-searched: a lookup reads a few pages per key
and nothing is loaded whole, so opening a store of a million items costs no memory. When many
runs have added segments, their indexes are merged into one (``merged/``), so a lookup stays a
single binary search.

Hashing a file's bytes on every run would make a warm run read the whole dataset again, so a
:class:`StatMemo` (``<cache_dir>/stat-memo/``) remembers each file's content key under its
identity (path, row, size, mtime, ctime, inode), as git's index does: a warm run stats the file
instead of reading it. A file written or copied shortly before it was hashed (mtime or ctime
within ``StatMemo.SETTLE_NS``) is not remembered, as a second write within the file system's
timestamp resolution could leave its identity unchanged; any change of size or times hashes
it again.

:class:`SegmentedArray` presents rows scattered over segments as one array: indexing with
integers or slices gathers just those rows from the memory maps, so a dataset larger than
memory is never loaded whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.data.arrays import content_bytes, split_row_ref
from polymodal.data.modalities.base import ArraySpec
from polymodal.errors import DecodeError
from polymodal.utils.io import atomic_path

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


def stat_key(path: str, row: int | None, stat: os.stat_result) -> bytes:
    """Hash of a file's identity: where it is (path and ``#row``), its size, times and inode."""
    ident = f"{path}\0{row}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0{stat.st_ino}\0{stat.st_dev}"
    return hashlib.blake2b(ident.encode("utf-8", "surrogateescape"), digest_size=KEY_BYTES).digest()


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


class StatMemo:
    """Content keys remembered by file identity (see the module docstring).

    Stored as append-only parts, one per :meth:`flush`: folders holding a :class:`SortedIndex`
    (stat key -> content key), written to a temp folder and renamed into place. When more than
    ``MERGE_AT`` accumulate, they are merged into one.
    """

    MERGE_AT = 16
    SETTLE_NS = 2_000_000_000  # files modified this recently before hashing are not remembered

    def __init__(self, root: Path):
        self.folder = Path(root) / "stat-memo"
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.parts = self._open_parts()

    def _open_parts(self) -> list[SortedIndex]:
        parts = []
        for folder in self._part_folders():
            try:
                parts.append(SortedIndex.open(folder))
            except OSError:  # merged away by another process while we listed: its records live on
                continue
        return parts

    def _part_folders(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def lookup(self, stat_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(content keys, found mask) for the given stat keys."""
        content = np.zeros(len(stat_keys), f"S{KEY_BYTES}")
        found = np.zeros(len(stat_keys), bool)
        for part in self.parts:
            hit, values = part.find(stat_keys)
            content[hit] = values[hit]
            found |= hit
        return content, found

    def add(self, stat_keys: np.ndarray, content_keys: np.ndarray) -> None:
        """Remember new (stat key, content key) pairs at the next :meth:`flush`."""
        if len(stat_keys):
            self._pending.append((stat_keys, content_keys))

    def flush(self) -> None:
        """Write the pairs added since the last flush as one part, atomically; merge the parts
        when there are too many. (Lookups keep answering from the parts as they were opened.)"""
        if not self._pending:
            return
        stat, content = (np.concatenate(a) for a in zip(*self._pending))
        self._pending = []
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._write(SortedIndex.build(stat, content))
        except OSError as err:  # a read-only cache still answers; the next run hashes these files again
            warnings.warn(f"cannot write the stat memo in {self.folder} ({err}); files will be hashed again next run",
                          stacklevel=2)
            return
        folders = self._part_folders()
        if len(folders) > self.MERGE_AT:
            parts = [SortedIndex.open(f) for f in folders if (f / SortedIndex.VALUES).is_file()]
            stat, first = np.unique(np.concatenate([p.keys for p in parts]), return_index=True)
            self._write(SortedIndex(stat, np.concatenate([p.values for p in parts])[first]))
            del parts
            for folder in folders:  # hidden first, so readers never meet a half-deleted part
                trash = self.folder / f".trash-{uuid.uuid4().hex}"
                try:
                    os.replace(folder, trash)
                except OSError:  # another process merged it away already
                    continue
                shutil.rmtree(trash, ignore_errors=True)

    def _write(self, index: SortedIndex) -> None:
        tmp = self.folder / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        index.save(tmp)
        os.replace(tmp, self.folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}")


KEY_CHUNK = 128  # values per thread task: a future per item costs more than hashing a small file


def _threaded(fn: Callable[[Any], Any], values: Sequence[Any], threads: int) -> list[Any]:
    """``[fn(v) for v in values]`` with exceptions returned in place of results, in ``threads``
    threads (file reads and hashing release the GIL)."""
    def chunk(part: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for value in part:
            try:
                out.append(fn(value))
            except (OSError, DecodeError) as err:  # missing file; a packed row outside its shard
                out.append(err)
        return out

    parts = [values[i:i + KEY_CHUNK] for i in range(0, len(values), KEY_CHUNK)]
    if threads <= 1 or len(parts) <= 1:
        return [r for part in parts for r in chunk(part)]
    with ThreadPoolExecutor(threads) as pool:
        return [r for part in pool.map(chunk, parts) for r in part]


def _identity(value: str) -> tuple[bytes, int]:
    """(stat key, last change in ns) of a file cell; ctime counts too, as copies that keep the
    source's mtime (``cp -p``, ``rsync -t``, tar) get a fresh ctime."""
    file, row = split_row_ref(value)
    stat = os.stat(file)
    return stat_key(file, row, stat), max(stat.st_mtime_ns, stat.st_ctime_ns)


def content_keys(values: Sequence[Any], file_based: bool, memo: StatMemo | None = None
                 ) -> tuple[np.ndarray, dict[int, Exception]]:
    """Content keys of ``values`` (file cells or inline values), and the files that could not be
    read, by position.

    With a ``memo``, a file whose identity is remembered is not read again; the others are hashed
    and, once settled, added to it (written at ``memo.flush()``).
    """
    keys = np.zeros(len(values), f"S{KEY_BYTES}")
    errors: dict[int, Exception] = {}
    if not file_based:
        for position, value in enumerate(values):
            keys[position] = content_key(value, False)
        return keys, errors
    threads = min(4, os.cpu_count() or 1)
    todo = np.arange(len(values))
    if memo is not None:
        idents = np.zeros(len(values), f"S{KEY_BYTES}")
        changed = np.zeros(len(values), np.int64)
        for position, result in enumerate(_threaded(_identity, values, threads)):
            if isinstance(result, Exception):
                errors[position] = result
            else:
                idents[position], changed[position] = result
        remembered, found = memo.lookup(idents)
        found[list(errors)] = False
        keys[found] = remembered[found]
        todo = np.flatnonzero(~found)
        todo = todo[~np.isin(todo, list(errors))]
    hashed_at = time.time_ns()
    for position, result in zip(todo.tolist(), _threaded(lambda v: content_key(v, True), [values[p] for p in todo], threads)):
        if isinstance(result, Exception):
            errors[position] = result
        else:
            keys[position] = result
    if memo is not None:
        hashed = todo[~np.isin(todo, list(errors))]
        settled = hashed[changed[hashed] < hashed_at - StatMemo.SETTLE_NS]
        memo.add(idents[settled], keys[settled])
    return keys, errors


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
        self._load_index()

    def _load_index(self) -> None:
        names = sorted(p.name for p in (self.folder / "segments").iterdir() if p.is_dir() and not p.name.startswith("."))
        self.segment_names = names
        folders = [self.folder / "segments" / n for n in names]
        self.arrays = [{k: np.load(f / f"{k}.npy", mmap_mode="r") for k in self.spec} for f in folders]
        self.merged, covered = self._open_merged(set(names))
        number = {name: i for i, name in enumerate(names)}
        self.merged_segments = np.array([number[n] for n in covered], np.int32)  # covered position -> segment
        merged = set(covered)
        self.indexes = {i: self._segment_index(f) for i, f in enumerate(folders) if names[i] not in merged}

    def _merged_folders(self) -> list[Path]:
        folder = self.folder / "merged"
        if not folder.is_dir():
            return []
        return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)

    def _open_merged(self, present: set[str]) -> tuple[SortedIndex | None, list[str]]:
        """The newest merged index whose segments all exist, and the names it covers."""
        for folder in self._merged_folders():
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
        unique, first = np.unique(np.concatenate(keys), return_index=True)
        old = self._merged_folders()
        tmp = self.folder / "merged" / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            SortedIndex(unique, np.concatenate(values)[first]).save(tmp)
            with atomic_path(tmp / "segments.json") as path:
                path.write_text(json.dumps(self.segment_names), encoding="utf-8")
            os.replace(tmp, self.folder / "merged" / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # gone already unless writing failed
        for folder in old:  # hidden first, so a reader never opens a half-deleted index
            trash = folder.parent / f".trash-{uuid.uuid4().hex}"
            try:
                os.replace(folder, trash)
            except OSError:  # another process removed it already
                continue
            shutil.rmtree(trash, ignore_errors=True)

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
        SortedIndex.build(keys[filled], np.arange(int(filled.sum()), dtype=np.int32)).save(tmp)
        os.replace(tmp, self.folder / "segments" / f"{len(self.segment_names):05d}-{uuid.uuid4().hex[:8]}")
        self._load_index()
        if len(self.indexes) > self.MERGE_AT:
            try:
                self._merge()
            except OSError as err:  # lookups still work, segment by segment
                warnings.warn(f"cannot merge the segment indexes of {self.folder} ({err})", stacklevel=2)
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
