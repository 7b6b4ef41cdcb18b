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

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the config class that holds these settings
    from polymodal.config.preprocess import AudioPreprocess

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
    """Indices of the mel filters that cover no FFT bin strictly inside their edges (a bin on an
    edge has weight 0). Stricter than librosa's warning, which never counts a filter whose lower
    edge is 0 Hz: the 0 Hz bin sits on that edge, so with no other bin under it the filter is
    empty all the same (a band of -100 dB in every clip).

    Args:
        fmax: ``None`` means ``sample_rate / 2``.
    """
    top = sample_rate / 2 if fmax is None else fmax
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(top), n_mels + 2))  # (n_mels + 2,)
    bins = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # (n_fft // 2 + 1,), ascending
    first_above = np.searchsorted(bins, edges[:-2], side="right")  # first bin above each lower edge
    first_at_top = np.searchsorted(bins, edges[2:], side="left")  # first bin at or above each upper edge
    empty = first_at_top <= first_above
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


def check_audio_frames(prep: AudioPreprocess) -> None:
    """The frames that ``frame_ms``, ``hop_ms`` and ``sample_rate`` make must hold samples, and
    the mel filters must fit in their spectrum (see the module docstring):

    - ``n_fft = round(frame_ms * sample_rate / 1000)`` at least 2, a clip (``max_seconds``) at least
      one frame long and the hop at least 1 sample;
    - ``fmin`` below ``fmax`` (or ``sample_rate / 2``);
    - ``n_mels`` at most the ``n_fft // 2 + 1`` FFT bins, and no mel filter empty (without a bin
      strictly inside it: librosa's "Empty filters" warning, a constant feature).

    Raises:
        ValueError: naming the key, what is allowed and what was given.
    """
    if prep.features == "waveform":
        return
    setting = f"frame_ms {prep.frame_ms:g} at sample_rate {prep.sample_rate}"
    n_fft = frame_samples(prep.frame_ms, prep.sample_rate)
    if n_fft < 2:
        raise ValueError(f"frame_ms: a frame must hold at least 2 samples for features '{prep.features}'; "
                         f"{setting} gives {n_fft}")
    if prep.max_seconds * 1000.0 < prep.frame_ms:  # one frame, padded: the clip would be one feature vector
        raise ValueError(f"max_seconds: a clip of {prep.max_seconds:g} s is shorter than one frame (frame_ms "
                         f"{prep.frame_ms:g}); at least {prep.frame_ms / 1000.0:g}")
    hop = frame_samples(prep.hop_ms, prep.sample_rate)
    if hop < 1:
        raise ValueError(f"hop_ms: the hop must be at least 1 sample; hop_ms {prep.hop_ms:g} at sample_rate "
                         f"{prep.sample_rate} gives {hop}")
    if prep.features == "spectrogram":
        return
    top = prep.sample_rate / 2 if prep.fmax is None else prep.fmax
    if prep.fmin >= top:
        raise ValueError(f"fmin: must be below fmax ({top:g} Hz{' = sample_rate / 2' if prep.fmax is None else ''}); "
                         f"got {prep.fmin:g}")
    n_bins = n_fft // 2 + 1
    if prep.n_mels > n_bins:
        raise ValueError(f"n_mels: must be at most {n_bins}, the FFT bins of a {n_fft}-sample frame ({setting}: "
                         f"n_fft // 2 + 1); got {prep.n_mels} (lower n_mels, or raise frame_ms)")
    empty = empty_mel_filters(prep.sample_rate, n_fft, prep.n_mels, prep.fmin, prep.fmax)
    if empty:
        fits = most_mel_filters(prep.sample_rate, n_fft, prep.fmin, prep.fmax, below=prep.n_mels)
        shown = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        advice = f"n_mels {fits} fits" if fits is not None else f"widen fmin..fmax ({prep.fmin:g}..{top:g} Hz)"
        raise ValueError(
            f"n_mels: {prep.n_mels} mel filters between {prep.fmin:g} and {top:g} Hz are too narrow for FFT bins "
            f"{prep.sample_rate / n_fft:g} Hz apart ({setting}): filter(s) {shown} would cover no bin and "
            f"always be zero; {advice} (or raise frame_ms); got {prep.n_mels}"
        )


__all__ = ["check_audio_frames", "empty_mel_filters", "frame_samples", "most_mel_filters"]
