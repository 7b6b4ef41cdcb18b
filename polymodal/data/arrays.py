"""``.npy`` cells, including rows of packed arrays.

A file cell may name a whole ``.npy`` file (``clip.npy``) or one row of a larger array
(``shard_007.npy#123``: row 123 along the first axis). Packing many small samples into a few
memory-mapped shards is how million-sample datasets stay manageable on disk: no million small
files, and a row is read without loading its shard.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

import numpy as np

from polymodal.errors import DecodeError

_ROW = re.compile(r"^(?P<file>.+\.npy)#(?P<row>\d+)$", re.IGNORECASE)


def split_row_ref(path: str) -> tuple[str, int | None]:
    """``"a/b.npy#12"`` -> ``("a/b.npy", 12)``; any other path -> ``(path, None)``."""
    match = _ROW.match(path)
    return (match["file"], int(match["row"])) if match else (path, None)


@lru_cache(maxsize=128)
def _shard(path: str, identity: tuple[int, ...]) -> np.ndarray:
    """A shard memory-mapped once per identity: a file replaced under the same path is mapped anew."""
    return np.load(path, mmap_mode="r", allow_pickle=False)


def load_npy(path: str) -> np.ndarray:
    """The array a ``.npy`` cell names (a whole file, or one row of a shard).

    Raises:
        DecodeError: unreadable file, or a row outside the shard.
    """
    file, row = split_row_ref(path)
    try:
        if row is None:
            return np.load(file, allow_pickle=False)
        stat = os.stat(file)
        shard = _shard(file, (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
    except (OSError, ValueError) as err:
        raise DecodeError(f"not a readable .npy array ({err})", path=path) from None
    if row >= shard.shape[0]:
        raise DecodeError(f"row {row} is outside the array, which has {shard.shape[0]} rows", path=path)
    return np.array(shard[row])


def content_bytes(path: str) -> bytes | None:
    """The bytes that identify a row reference's content (None for ordinary files)."""
    file, row = split_row_ref(path)
    if row is None:
        return None
    sample = load_npy(path)
    return f"{sample.dtype.str}{sample.shape}".encode() + sample.tobytes()
