"""The layout of a recording's array: shared by training-time decoding and the torch-free runtime."""

from __future__ import annotations

import numpy as np


def channels_first(array: np.ndarray, layout: str = "auto") -> np.ndarray:
    """A 1-D or 2-D recording as (channels, samples).

    Args:
        array: (samples,), or 2-D in ``layout``.
        layout: ``channels_first`` (C, T) as stored; ``channels_last`` (T, C), transposed;
            ``auto``: the longer axis is time (wrong for a clip shorter than its channel count,
            which then needs one of the other two).

    Returns:
        (C, T) array (a view where it can be); arrays of other ranks are returned as given.

    Raises:
        ValueError: an unknown ``layout``.
    """
    if layout not in ("auto", "channels_first", "channels_last"):
        raise ValueError(f"layout must be auto, channels_first or channels_last; got {layout!r}")
    if array.ndim == 1:
        return array[None, :]
    if array.ndim != 2:
        return array
    if layout == "channels_last" or (layout == "auto" and array.shape[0] > array.shape[1]):
        return array.T
    return array


def fit_length(wave: np.ndarray, n: int, crop: str) -> np.ndarray:
    """Crop (from the start or the centre) or zero-pad a 1-D or (C, L) array to length ``n``."""
    length = wave.shape[-1]
    if length > n:
        start = (length - n) // 2 if crop == "center" else 0
        return wave[..., start:start + n]
    if length < n:
        out = np.zeros((*wave.shape[:-1], n), wave.dtype)
        out[..., :length] = wave
        return out
    return wave
