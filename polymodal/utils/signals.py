"""Recordings as arrays, shared by training-time decoding and the torch-free runtime: their
layout (channels first), cropping or padding to a length, band-limited resampling, where
fixed windows start (the window cutter and the CWRU converter), a spectrogram's log scale,
the notes on a signal cut or padded to the model's length or with channels that hold one value
throughout (a dead or stuck sensor), and the refusal of an audio-format signal file recorded at
another rate than the modality reads."""

from __future__ import annotations

import math

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


def window_starts(length: int, window: int, hop: int, max_windows: int | None = None) -> np.ndarray:
    """The start of every ``window``-sample window ``hop`` apart that fits in ``length`` samples;
    with ``max_windows``, at most that many of them, evenly spaced."""
    starts = np.arange(0, length - window + 1, hop)
    if max_windows is not None and len(starts) > max_windows:
        starts = starts[np.linspace(0, len(starts) - 1, max_windows).round().astype(int)]
    return starts


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


SPECTROGRAM_FLOOR = 1e-10  # power added before a 'db' spectrogram's log: silence reads 10 log10(1e-10) = -100 dB


def spectrogram_db(power: np.ndarray) -> np.ndarray:
    """``10 * log10(power + SPECTROGRAM_FLOOR)``: a signal spectrogram's ``scale: db``, the same
    array in training (:class:`~polymodal.data.modalities.signal.SignalPreprocessor`) and in the
    runtime (:class:`~polymodal.deploy.features.signal.SignalFeatures`); float32, of ``power``'s shape."""
    return (10.0 * np.log10(np.asarray(power, np.float64) + SPECTROGRAM_FLOOR)).astype(np.float32)


def flat_channels(window: np.ndarray, valid: int) -> list[int]:
    """The channels of a (C, L) window that hold one value throughout its first ``valid``
    samples (a disconnected, dead or stuck sensor; a live one always varies a little); none when
    fewer than 2 samples are valid. Training, prediction and the runtime warn about them alike."""
    if valid < 2:
        return []
    part = window[:, :valid]
    return np.flatnonzero((part == part[:, :1]).all(axis=1)).tolist()


def flat_note(window: np.ndarray, channel: int) -> str:
    """What :func:`flat_channels` found in one channel of ``window``, in the words the runtime and
    the eager predictor both use."""
    return f"channel {channel} holds one value throughout ({window[channel, 0]:g}): a disconnected or stuck sensor?"


def length_note(samples: int, length: int, crop: str, exact: bool = True) -> str | None:
    """The note on a signal of ``samples`` samples cut or zero-padded to the model's ``length``
    (``preprocess.crop``: which part is kept); None when it is that long. ``exact``: the runtime's
    note on one request names the count; an encoded manifest's notes, grouped into one warning
    with their rows, say only fewer or more (one note per direction, not one per length)."""
    if samples == length:
        return None
    done = f"cropped to its {'first' if crop == 'start' else 'central'} {length:,}" if samples > length \
        else f"zero-padded to {length:,}"
    if not exact:
        return f"{'more' if samples > length else 'fewer'} samples than the {length:,} the model reads: {done}"
    return f"{samples:,} samples where the model reads {length:,}: {done}"


def _hz(rate: float) -> str:
    """A rate in words: ``12,000 Hz``, ``22,050.5 Hz``."""
    return f"{int(rate) if float(rate).is_integer() else rate:,} Hz"


def rate_mismatch(rate: int, sample_rate: float | None, file_rate: int | None, recorded: bool = True) -> str | None:
    """Why a signal file whose header declares ``rate`` Hz (a WAV, FLAC or OGG file; arrays and CSV files
    declare none) is refused, or None when the modality reads signals at that rate: at
    ``preprocess.sample_rate`` when it is set, else at ``file_rate``, the rate of the first training
    file fitted on (None: its training files declared none). ``recorded`` False (a run saved before
    the rate was recorded, which read every file as if at ``sample_rate``): nothing is checked, so
    such a run still reads its own files. Training and the runtime refuse alike."""
    if not recorded:
        return None
    if sample_rate is not None:
        expected, source = sample_rate, "preprocess.sample_rate"
    elif file_rate is not None:
        expected, source = file_rate, "the rate of its training files"
    else:
        return None
    if rate == expected:
        return None
    return (f"the file's header declares {_hz(rate)}; this modality reads signals at {_hz(expected)} ({source}): "
            f"resample the file to {_hz(expected)}")


# soxr "HQ" (training resamples with librosa's res_type="soxr_hq") is linear-phase with this gain
# near the lower of the two Nyquist frequencies, measured on sines: 0.99 at 93% of it, 0.93 at
# 94%, 0.5 at 95.7%, 0.13 at 97%, 0.02 at 98%. 0.5 * erfc((f - EDGE) / WIDTH) fits it within 0.01.
SOXR_EDGE, SOXR_WIDTH = 0.9568, 0.01667


def _soxr_gain(f: np.ndarray) -> np.ndarray:
    """Gain at ``f``, a fraction of the lower Nyquist frequency (1 in the passband, 0 past it)."""
    gain = np.ones_like(f)
    edge = f > 0.85  # below it the gain is 1 to within 1e-19
    erfc = np.frompyfunc(math.erfc, 1, 1)
    gain[edge] = 0.5 * erfc((f[edge] - SOXR_EDGE) / SOXR_WIDTH).astype(np.float64)
    return gain


def _fast_fft_size(n: int, step: int) -> int:
    """The smallest multiple of ``step`` at least ``n`` whose quotient by ``step`` has no prime
    factor above 5 (a fast FFT size when ``step``'s own factors are small)."""
    m = max(1, -(-n // step))
    while True:
        k = m
        for prime in (2, 3, 5):
            while k % prime == 0:
                k //= prime
        if k == 1:
            return m * step
        m += 1


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """A mono waveform (N,) at ``rate`` Hz resampled to ``target`` Hz, band-limited, as training does.

    The clip is zero-padded to at least twice its length (so its end does not wrap around onto its
    start) and to a multiple of ``rate / gcd(rate, target)`` (so both sample grids fit the
    padded length exactly), its spectrum cut at the lower Nyquist frequency with soxr's transition
    band (:func:`_soxr_gain`) and transformed back at the new length. Like librosa's soxr
    resampling, the result has ``ceil(N * target / rate)`` samples, the last one zero when soxr's
    own length, N * target / rate rounded, is one shorter.

    Returns:
        float32 samples (ceil(N * target / rate),).
    """
    n = samples.size
    n_out = math.ceil(n * target / rate)
    n_kept = min(n_out, math.floor(n * target / rate + 0.5))
    step = rate // math.gcd(rate, target)
    size = _fast_fft_size(2 * n, step)
    out_size = size * target // rate
    spectrum = np.fft.rfft(samples.astype(np.float64), size)
    bins = min(size, out_size) // 2 + 1
    kept = np.zeros(out_size // 2 + 1, np.complex128)
    kept[:bins] = spectrum[:bins] * _soxr_gain(np.arange(bins) / (min(size, out_size) / 2))
    wave = np.fft.irfft(kept, out_size)[:n_kept] * (out_size / size)
    return np.pad(wave, (0, n_out - n_kept)).astype(np.float32)
