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
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.data.arrays import content_bytes, split_row_ref
from polymodal.data.cache import (
    SortedIndex,
    open_indexes,
    publish_index,
    publish_merged,
    sweep_leftovers,
    visible_folders,
)
from polymodal.errors import DecodeError

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
            warnings.warn(f"cannot write the stat memo in {self.folder} ({err}); files will be hashed again next run",
                          stacklevel=2)
            return
        folders = visible_folders(self.folder)
        if len(folders) > self.MERGE_AT and (parts := open_indexes(folders)):
            try:
                publish_merged(self.folder, [p.keys for p in parts], [p.values for p in parts], folders)
            except OSError as err:  # every part still answers; a later flush merges them
                warnings.warn(f"cannot merge the stat memo's parts in {self.folder} ({err})", stacklevel=2)


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
