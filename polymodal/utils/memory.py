"""Giving freed memory back to the operating system after a pass over a large manifest.

glibc keeps what Python, numpy, pandas' CSV parser and the hashing threads free in its heaps (one
per thread that allocated) instead of returning it, so the resident memory of a process that has
walked a million-row manifest stays at its high-water mark even though the live data is small.
:func:`release_memory` asks glibc to return the free pages (``malloc_trim``), as Dask does for
its workers' unmanaged memory. Elsewhere (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import Any

LARGE_ROWS = 65_536  # passes over fewer rows leave too little behind to be worth a trim


@functools.cache
def _malloc_trim() -> Callable[[int], Any] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory(rows: int) -> bool:
    """Return free heap memory to the OS after a pass over ``rows`` rows (only when that is large).

    Returns:
        Whether a trim ran.
    """
    trim = _malloc_trim()
    if trim is None or rows < LARGE_ROWS:
        return False
    trim(0)
    return True
