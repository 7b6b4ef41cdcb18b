"""Frame sizes and mel filters of the audio features, worked out from the config alone.

The audio preprocessor (``polymodal.data.modalities.audio``) frames a clip with
``n_fft = round(frame_ms * sample_rate / 1000)`` samples and a hop of
``round(hop_ms * sample_rate / 1000)``; its power spectrum has ``n_fft // 2 + 1`` bins, spaced
``sample_rate / n_fft`` Hz apart. The mel filterbank is librosa's (Slaney mel scale, ``htk=False``):
``n_mels + 2`` edge frequencies evenly spaced on the mel scale from ``fmin`` to ``fmax``; filter
``i`` rises from edge ``i`` to edge ``i + 1`` and falls to edge ``i + 2``. A filter with no FFT bin
strictly between its outer edges is empty (all zeros: librosa's "Empty filters detected in mel
frequency basis" warning), so that feature is the same constant for every clip. The lowest filters
are the narrowest, which is why too many mels for a short frame (coarse bins) leave them empty.
"""

from __future__ import annotations

import numpy as np

# Slaney's mel scale (librosa.hz_to_mel with htk=False): linear below 1 kHz, logarithmic above
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0  # numpy's log, as librosa, so that edges match it to the last bit


def frame_samples(ms: float, sample_rate: int) -> int:
    """Samples in ``ms`` milliseconds, rounded as the audio preprocessor does (n_fft, hop)."""
    return round(ms * sample_rate / 1000)


def _hz_to_mel(hz: float) -> float:
    return hz / _F_SP if hz < _MIN_LOG_HZ else _MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOGSTEP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    return np.where(mels >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL)), _F_SP * mels)


def empty_mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> list[int]:
    """Indices of the mel filters that cover no FFT bin (librosa's test: a filter whose lower edge
    is 0 Hz is never counted as empty).

    Args:
        fmax: ``None`` means ``sample_rate / 2``.
    """
    top = sample_rate / 2 if fmax is None else fmax
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(top), n_mels + 2))  # (n_mels + 2,)
    bins = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # (n_fft // 2 + 1,), ascending
    first_above = np.searchsorted(bins, edges[:-2], side="right")  # first bin above each lower edge
    first_at_top = np.searchsorted(bins, edges[2:], side="left")  # first bin at or above each upper edge
    empty = (first_at_top <= first_above) & (edges[:-2] != 0)
    return [int(i) for i in np.flatnonzero(empty)]


def most_mel_filters(sample_rate: int, n_fft: int, fmin: float, fmax: float | None, below: int) -> int | None:
    """A large ``n_mels`` under ``below`` that leaves no filter empty, or None when even one filter
    is empty. Found by bisection (more filters are narrower), so it always fits but, where the
    bins happen to line up with the edges, a slightly larger one may fit too."""
    def fits(n: int) -> bool:
        return not empty_mel_filters(sample_rate, n_fft, n, fmin, fmax)

    low, high = 0, below  # fits(low) is assumed (0: vacuous), fits(high) is not
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low or None


__all__ = ["empty_mel_filters", "frame_samples", "most_mel_filters"]
