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
from polymodal.utils.npy import npy_from_file

_ROW = re.compile(r"^(?P<file>.+\.npy)#(?P<row>\d+)$", re.IGNORECASE)


def split_row_ref(path: str) -> tuple[str, int | None]:
    """``"a/b.npy#12"`` -> ``("a/b.npy", 12)``; any other path -> ``(path, None)``."""
    match = _ROW.match(path)
    return (match["file"], int(match["row"])) if match else (path, None)


@lru_cache(maxsize=128)
def _shard(path: str, identity: tuple[int, ...]) -> np.ndarray:
    """A shard memory-mapped once per identity: a file replaced under the same path is mapped anew."""
    return np.load(path, mmap_mode="r", allow_pickle=False)


def open_shard(file: str, stat: os.stat_result | None = None, *, path: str | None = None) -> np.ndarray:
    """The ``.npy`` shard ``file``, memory-mapped (``stat``: its ``os.stat``, when already taken).

    Raises:
        DecodeError: unreadable file (named as ``path``, the cell, when given).
    """
    try:
        stat = stat or os.stat(file)
        return _shard(file, (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
    except (OSError, ValueError) as err:
        raise DecodeError(f"not a readable .npy array ({err})", path=path or file) from None


def shard_row(shard: np.ndarray, row: int, path: str) -> np.ndarray:
    """Row ``row`` of a shard, copied out of the memory map.

    Raises:
        DecodeError: a row outside the shard (``path``: the cell, for the message).
    """
    if row >= shard.shape[0]:
        raise DecodeError(f"row {row} is outside the array, which has {shard.shape[0]} rows", path=path)
    return np.array(shard[row])


def load_npy(path: str) -> np.ndarray:
    """The array a ``.npy`` cell names (a whole file, or one row of a shard).

    Raises:
        DecodeError: unreadable file, or a row outside the shard.
    """
    file, row = split_row_ref(path)
    if row is None:
        try:
            return npy_from_file(file)
        except (OSError, ValueError) as err:
            raise DecodeError(f"not a readable .npy array ({err})", path=path) from None
    return shard_row(open_shard(file, path=path), row, path)


def sample_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The dtype and shape part of :func:`sample_bytes` (the same for every row of a shard)."""
    return f"{dtype.str}{tuple(shape)}".encode()


def sample_bytes(sample: np.ndarray) -> bytes:
    """The bytes that identify one shard row's content: dtype, shape and data."""
    return sample_header(sample.dtype, sample.shape) + sample.tobytes()
