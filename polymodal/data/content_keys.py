"""Content keys: what identifies an item in the feature cache (:mod:`polymodal.data.cache`).

An item is keyed by a hash of its content (the file's bytes, or the inline value), so a renamed
file is still a hit and an edited one is a miss.

Hashing a file's bytes on every run would make a warm run read the whole dataset again, so a
:class:`StatMemo` (``<cache_dir>/stat-memo/``) remembers each file's content key under its
identity (path, row, size, mtime, ctime, inode), as git's index does: a warm run stats the file
instead of reading it. A file written or copied shortly before it was hashed (mtime or ctime
within ``StatMemo.SETTLE_NS``) is not remembered, as a second write within the file system's
timestamp resolution could leave its identity unchanged; any change of size or times hashes
it again.
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_module
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.arrays import load_npy, open_shard, sample_bytes, sample_header, shard_row, split_row_ref
from polymodal.data.cache import (
    SortedIndex,
    open_indexes,
    publish_index,
    publish_merged,
    sweep_leftovers,
    visible_folders,
)
from polymodal.data.manifest import Manifest
from polymodal.data.video_io import frame_files
from polymodal.errors import DecodeError
from polymodal.utils.io import hash_file
from polymodal.utils.warn import warn_user

KEY_BYTES = 16
NEVER_SETTLED = np.iinfo(np.int64).max  # a change time that keeps an item out of the stat memo


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=KEY_BYTES).digest()


def content_key(value: Any, file_based: bool) -> bytes:
    """Hash of an item's content: a file's bytes, a shard row's dtype, shape and bytes
    (``shard.npy#12``), or an inline value's text."""
    if not file_based:
        return _digest(repr(value).encode("utf-8"))
    if split_row_ref(value)[1] is not None:
        return _digest(sample_bytes(load_npy(value)))
    digest = hashlib.blake2b(digest_size=KEY_BYTES)
    if os.path.isdir(value):  # a folder of frames: each frame's name and bytes, in the order they are read
        for frame in frame_files(value):
            digest.update(frame.name.encode("utf-8", "surrogateescape") + b"\0")
            hash_file(digest, frame)
    else:
        hash_file(digest, value)
    return digest.digest()


def manifest_key(source: Any) -> str | None:
    """A digest of a whole manifest's content, equal for the same rows: a file's bytes (hex), or a
    DataFrame's (a Manifest's table's) cells and index; None for None. What a tuning study and a
    batch prediction check that they go on with the same data by."""
    if source is None:
        return None
    frame = getattr(source, "frame", source)  # a Manifest: its table
    if isinstance(frame, pd.DataFrame):
        return str(int(pd.util.hash_pandas_object(frame, index=True).sum() % (1 << 63)))
    return content_key(str(source), file_based=True).hex()


def same_rows(a: Any, b: Any) -> bool:
    """Whether manifests ``a`` and ``b`` (paths, DataFrames or
    :class:`~polymodal.data.manifest.Manifest` objects) hold the same rows: the same file, a
    byte-identical copy in the same folder (whose relative paths name the same files), equal
    DataFrames, or the same Manifest (one object, or equal tables whose relative paths resolve in
    the same folder). Files that are not there hold no rows to compare."""
    if isinstance(a, str | os.PathLike) and isinstance(b, str | os.PathLike):
        a, b = Path(a).resolve(), Path(b).resolve()
        return a == b or (a.parent == b.parent and a.is_file() and b.is_file()
                          and a.stat().st_size == b.stat().st_size and manifest_key(a) == manifest_key(b))
    if isinstance(a, Manifest) and isinstance(b, Manifest):
        return a is b or (len(a) == len(b) and Path(a.root).resolve() == Path(b.root).resolve()
                          and a.frame.equals(b.frame))
    return isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame) and (a is b or a.equals(b))


def stat_key(path: str, row: int | None, stat: os.stat_result) -> bytes:
    """Hash of a file's identity: where it is (path and ``#row``), its size, times and inode."""
    ident = f"{path}\0{row}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0{stat.st_ino}\0{stat.st_dev}"
    return hashlib.blake2b(ident.encode("utf-8", "surrogateescape"), digest_size=KEY_BYTES).digest()


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
        sweep_leftovers(self.folder)
        self.parts = open_indexes(visible_folders(self.folder))

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
            publish_index(self.folder, SortedIndex.build(stat, content))
        except OSError as err:  # a read-only cache still answers; the next run hashes these files again
            warn_user(f"cannot write the stat memo in {self.folder} ({err}); files will be hashed again next run")
            return
        folders = visible_folders(self.folder)
        if len(folders) > self.MERGE_AT and (parts := open_indexes(folders)):
            try:
                publish_merged(self.folder, [p.keys for p in parts], [p.values for p in parts], folders)
            except OSError as err:  # every part still answers; a later flush merges them
                warn_user(f"cannot merge the stat memo's parts in {self.folder} ({err})")


KEY_CHUNK = 128  # values per thread task: a future per item costs more than hashing a small file


def _threaded(fn: Callable[[Any], Any], values: Sequence[Any], threads: int) -> list[Any]:
    """``[fn(v) for v in values]`` with exceptions returned in place of results, in ``threads``
    threads (file reads and hashing release the GIL)."""
    def chunk(part: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for value in part:
            try:
                out.append(fn(value))
            except OSError as err:  # a missing or unreadable file
                out.append(err)
        return out

    parts = [values[i:i + KEY_CHUNK] for i in range(0, len(values), KEY_CHUNK)]
    if threads <= 1 or len(parts) <= 1:
        return [r for part in parts for r in chunk(part)]
    with ThreadPoolExecutor(threads) as pool:
        return [r for part in pool.map(chunk, parts) for r in part]


def _stat_once(files: Sequence[str], threads: int) -> dict[str, os.stat_result | OSError]:
    """``os.stat`` of each distinct file (a shard is stat'ed once for all its rows)."""
    distinct = list(dict.fromkeys(files))
    return dict(zip(distinct, _threaded(os.stat, distinct, threads)))


ROWS_PER_READ = 4096  # shard rows read with one fancy index when hashing them


def _shard_row_keys(values: Sequence[str], refs: Sequence[tuple[str, int | None]], positions: Sequence[int],
                    stats: Mapping[str, os.stat_result | OSError]) -> dict[int, bytes | Exception]:
    """Content keys of shard rows (``shard.npy#12``), by position: each shard is opened once and
    its rows hashed straight from the memory map (the same keys as :func:`content_key`)."""
    by_shard: dict[str, list[int]] = {}
    for position in positions:
        by_shard.setdefault(refs[position][0], []).append(position)
    out: dict[int, bytes | Exception] = {}
    for file, group in by_shard.items():
        stat = stats[file]
        try:
            if isinstance(stat, OSError):
                raise stat
            shard = open_shard(file, stat)
        except (OSError, DecodeError) as err:
            out.update(dict.fromkeys(group, err))
            continue
        rows = np.array([refs[p][1] for p in group], np.int64)
        for position in np.flatnonzero(rows >= shard.shape[0]).tolist():  # the message shard_row gives
            try:
                shard_row(shard, int(rows[position]), values[group[position]])
            except DecodeError as err:
                out[group[position]] = err
        inside = np.flatnonzero(rows < shard.shape[0])
        prefix = sample_header(shard.dtype, shard.shape[1:])
        for start in range(0, len(inside), ROWS_PER_READ):  # one fancy index per block, bounded memory
            take = inside[start:start + ROWS_PER_READ]
            block = np.ascontiguousarray(np.asarray(shard)[rows[take]])
            out.update((group[i], _digest(prefix + sample.tobytes())) for i, sample in zip(take.tolist(), block))
    return out


def content_keys(values: Sequence[Any], file_based: bool, memo: StatMemo | None = None
                 ) -> tuple[np.ndarray, dict[int, Exception]]:
    """Content keys of ``values`` (file cells or inline values), and the files that could not be
    read, by position.

    With a ``memo``, a file whose identity is remembered is not read again; the others are hashed
    and, once settled, added to it (written at ``memo.flush()``). Identities use the time a file
    last changed, ctime included, as copies that keep the source's mtime (``cp -p``,
    ``rsync -t``, tar) get a fresh ctime.
    """
    keys = np.zeros(len(values), f"S{KEY_BYTES}")
    errors: dict[int, Exception] = {}
    if not file_based:
        for position, value in enumerate(values):
            keys[position] = content_key(value, False)
        return keys, errors
    threads = min(4, os.cpu_count() or 1)
    refs = [split_row_ref(v) for v in values]
    stats = _stat_once([f for f, row in refs if memo is not None or row is not None], threads)
    todo = np.arange(len(values))
    if memo is not None:
        idents = np.zeros(len(values), f"S{KEY_BYTES}")
        changed = np.zeros(len(values), np.int64)
        for position, (file, row) in enumerate(refs):
            stat = stats[file]
            if isinstance(stat, OSError):
                errors[position] = stat
            else:
                idents[position] = stat_key(file, row, stat)
                # a folder's times do not move when a file in it is edited: never remembered
                changed[position] = NEVER_SETTLED if stat_module.S_ISDIR(stat.st_mode) else max(stat.st_mtime_ns,
                                                                                                  stat.st_ctime_ns)
        remembered, found = memo.lookup(idents)
        found[list(errors)] = False
        keys[found] = remembered[found]
        todo = np.flatnonzero(~found)
        todo = todo[~np.isin(todo, list(errors))]
    hashed_at = time.time_ns()
    rows = [p for p in todo.tolist() if refs[p][1] is not None]
    files = [p for p in todo.tolist() if refs[p][1] is None]
    results = _shard_row_keys(values, refs, rows, stats)
    results.update(zip(files, _threaded(lambda v: content_key(v, True), [values[p] for p in files], threads)))
    for position, result in results.items():
        if isinstance(result, Exception):
            errors[position] = result
        else:
            keys[position] = result
    if memo is not None:
        hashed = todo[~np.isin(todo, list(errors))]
        settled = hashed[changed[hashed] < hashed_at - StatMemo.SETTLE_NS]
        memo.add(idents[settled], keys[settled])
    return keys, errors
