"""``.npy`` reading that checks the header before allocating: shared by training-time decoding and
the torch-free deployment runtime.

A ``.npy`` header states the array's shape, and ``np.load`` allocates that much memory before it
reads the data. A truncated file, or a hostile upload of a few hundred bytes whose header claims
terabytes, would then fail with ``MemoryError`` (or take the machine's memory); here it fails with
a ``ValueError`` that says what the header promised and what the file holds.
"""

from __future__ import annotations

import io
import math
import os
from typing import BinaryIO

import numpy as np


def read_npy(stream: BinaryIO, size: int) -> np.ndarray:
    """The array in a ``.npy`` stream of ``size`` bytes (read from its current position).

    Raises:
        ValueError: not a ``.npy`` stream, an object array (pickles are refused), or a header
            whose shape needs more bytes than the stream holds.
    """
    start = stream.tell()
    version = np.lib.format.read_magic(stream)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = reader(stream)
    if dtype.hasobject:
        raise ValueError("the array holds Python objects, which are refused (pickle)")
    needed = math.prod(shape) * dtype.itemsize
    available = size - (stream.tell() - start)
    if needed > available:
        raise ValueError(f"the header describes a {dtype} array of shape {shape} ({needed:,} bytes) but only "
                         f"{available:,} bytes follow it: a truncated or corrupt file")
    stream.seek(start)
    return np.load(stream, allow_pickle=False)


def npy_from_bytes(data: bytes) -> np.ndarray:
    """The array in ``.npy`` file content (see :func:`read_npy`)."""
    return read_npy(io.BytesIO(data), len(data))


def npy_from_file(path: str | os.PathLike[str]) -> np.ndarray:
    """The array in a ``.npy`` file (see :func:`read_npy`).

    Raises:
        OSError: the file cannot be opened or read.
        ValueError: as :func:`read_npy`.
    """
    with open(path, "rb") as handle:
        return read_npy(handle, os.fstat(handle.fileno()).st_size)
