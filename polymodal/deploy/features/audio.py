"""Audio in the runtime: WAV (the standard library) or FLAC/OGG (``soundfile``), a ``.npy`` waveform, a
video's sound track (PyAV), resampling, and waveform / spectrogram / log-mel / MFCC in numpy."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from polymodal.deploy.errors import ExportError, RequestError
from polymodal.deploy.features.base import AMIN, NPY_MAGIC, Features
from polymodal.deploy.features.video import is_video, require_av, video_path
from polymodal.errors import DecodeError, OversizedInputError
from polymodal.utils.npy import npy_from_bytes
from polymodal.utils.signals import fit_length, resample
from polymodal.utils.wav import SILENT_NOTE, TruncatedAudioError, mono_samples, read_sound

# leading bytes of the audio files the runtime reads: (offset, bytes, type name); the service's too
AUDIO_SIGNATURES = ((8, b"WAVE", "WAV"), (0, b"fLaC", "FLAC"), (0, b"OggS", "OGG"))
# what a second of compressed audio may decode to, at most: 192 kHz stereo (studio recordings); a
# file of more channels or a higher rate is refused from its header (its decoded samples would
# outgrow the request limits: a 176 KB FLAC of silence at 655 kHz and 8 channels held 1 GB)
SAMPLES_PER_SECOND = 192_000 * 2


def audio_format(data: bytes) -> str | None:
    """The audio format of file content by its leading bytes (``WAV``, ``FLAC``, ``OGG``), or None."""
    return next((name for offset, magic, name in AUDIO_SIGNATURES if data[offset:offset + len(magic)] == magic), None)


def read_wav(data: bytes, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 waveform and sample rate of audio file bytes (WAV, FLAC, OGG), read as training
    reads a file (:func:`~polymodal.utils.wav.read_sound`); ``max_seconds``: a compressed file is
    decoded no further than one frame past it, and refused from its header when its rate and
    channels would decode more than :data:`SAMPLES_PER_SECOND` samples a second over it, so a
    small upload cannot expand into gigabytes.

    Raises:
        RequestError: 413 ``too_large`` for a file past that budget, 422 ``corrupt_file`` for a
            truncated file, 415 ``unsupported_type`` for one libsndfile cannot read.
    """
    budget = None if max_seconds is None else math.ceil(max_seconds * SAMPLES_PER_SECOND)
    try:
        return read_sound(io.BytesIO(data), max_seconds=max_seconds, max_values=budget)
    except OversizedInputError as err:
        raise RequestError(err.reason, status=413, code="too_large") from None
    except TruncatedAudioError as err:
        raise RequestError(err.reason, status=422, code="corrupt_file") from None
    except (DecodeError, OSError):
        from polymodal.deploy.features.signatures import looks_like  # (it imports these features)

        seen = looks_like(data)
        raise RequestError("not a readable audio file (WAV, FLAC, OGG)" + (f": it looks like {seen}" if seen else ""),
                           status=415, code="unsupported_type") from None


def audio_seconds(data: bytes) -> float | None:
    """An audio file's duration as its header declares it, or None when it declares none."""
    try:
        import soundfile

        info = soundfile.info(io.BytesIO(data))
    except (ImportError, RuntimeError, OSError, TypeError, ValueError):  # LibsndfileError is a RuntimeError
        return None  # no soundfile, or a header it cannot read: the length is unknown
    return info.frames / info.samplerate if info.samplerate > 0 and 0 < info.frames < 2**62 else None


def stft_power(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(B, N) -> (B, T, n_fft // 2 + 1) power of a centred, zero-padded periodic-Hann STFT (T = 1 +
    (N + 2 (n_fft // 2) - n_fft) // hop: 1 + N // hop for an even n_fft)."""
    pad = n_fft // 2
    padded = np.pad(x.astype(np.float64), ((0, 0), (pad, pad)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop]  # (B, T, n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spec = np.fft.rfft(frames * window, axis=-1)
    return (spec.real ** 2 + spec.imag ** 2).astype(np.float32)


class AudioFeatures(Features):
    kind = "audio"
    # the config's audio features this class computes (a test keeps them equal to the config's choices)
    features: ClassVar[tuple[str, ...]] = ("waveform", "spectrogram", "log_mel", "mfcc")

    def __init__(self, name: str, meta: Mapping[str, Any], on_error: str | None = None):
        super().__init__(name, meta, on_error)
        self._held: tuple[Any, bool] | None = None  # the last value holds asked about, and the answer
        cfg = self.cfg
        if cfg["features"] not in self.features:
            raise ExportError(f"modality '{name}': audio features '{cfg['features']}' have no numpy implementation "
                             f"(the runtime computes {', '.join(self.features)})")
        self.rate = int(cfg["sample_rate"])
        self.n_samples = round(cfg["max_seconds"] * self.rate)
        self.n_fft = round(cfg["frame_ms"] * self.rate / 1000)
        self.hop = round(cfg["hop_ms"] * self.rate / 1000)

    def read(self, value: Any) -> tuple[np.ndarray, int]:
        """The mono waveform and its sample rate, as given (before resampling and cutting): a
        ``.npy`` array has no rate and is taken to be at the model's, as training takes it."""
        if isinstance(value, tuple):
            samples, rate = np.asarray(value[0]), int(value[1])
            if rate <= 0:
                raise self.fail(f"the sample rate must be positive; got {rate}", "bad_input")
            return self.mono(samples, "numeric samples", "bad_input"), rate
        if isinstance(value, np.ndarray):  # samples without their rate cannot be resampled
            raise self.fail(f"an array of samples needs its sample rate: give (samples, sample_rate); got an array "
                            f"of shape {value.shape} alone", "bad_input")
        if is_video(value):
            self.check_path(value)
            return self.sound_track(value)
        data = self.file_bytes(value)
        source = "" if isinstance(value, bytes | bytearray | memoryview) else f" (file '{value}')"
        if data.startswith(NPY_MAGIC):
            try:
                array = npy_from_bytes(data)
            except (ValueError, OSError, EOFError) as err:
                raise self.fail(f"not a readable .npy array ({err}){source}", "corrupt_file") from None
            return self.mono(array, f"a .npy array of samples{source}", "bad_input"), self.rate
        try:
            return read_wav(data)
        except RequestError as err:  # said of the bytes alone: the modality and the file named
            raise self.fail(f"{err.reason}{source}", err.code, err.status) from None

    def mono(self, samples: np.ndarray, what: str, code: str) -> np.ndarray:
        """``samples`` (N,), (N, channels) or (channels, N) as float32 mono, as training reads an
        array: the channels mixed down, integer PCM scaled onto [-1, 1) as a WAV file of it reads."""
        if samples.dtype.kind not in "iuf" or samples.ndim not in (1, 2):
            raise self.fail(f"expected {what}: numeric (integer or float), 1-D or 2-D (samples x channels); got "
                            f"dtype {samples.dtype}, shape {samples.shape}", code)
        return mono_samples(samples)

    def holds(self, value: Any) -> bool:
        """Whether ``value`` holds sound: a video without an audio track (a camera without a
        microphone) does not, and its row is read with this modality absent, as training reads it
        (:class:`~polymodal.data.video_io.NoAudioTrackError`). A video is asked once however often
        its row is (the last value's answer is kept)."""
        if not is_video(value):
            return True
        held = self._held  # read once: another request's thread may replace it meanwhile
        if held is None or held[0] is not value:
            held = (value, self._has_track(value))
            self._held = held
        return held[1]

    def _has_track(self, value: Any) -> bool:
        from polymodal.data.video_io import has_audio_track

        if isinstance(value, str | Path) and not Path(value).exists():
            return True  # left to decode, which names the missing file
        require_av(f"the sound track of a video (audio modality '{self.name}')")
        try:
            with video_path(value) as path:
                return has_audio_track(path)
        except DecodeError:
            return True  # an unreadable video: decode refuses it, with FFmpeg's reason

    def absent_note(self, count: int) -> str:
        said = "1 row's video holds" if count == 1 else f"{count} rows' videos hold"
        return f"{said} no audio track: {'its' if count == 1 else 'their'} audio modality '{self.name}' is read as absent"

    def decode(self, value: Any) -> tuple[np.ndarray, int]:
        samples, rate = self.read(value)
        if samples.size == 0:
            raise self.fail("the audio holds no samples", "empty_file")
        if rate != self.rate:  # band-limited, as training resamples (soxr)
            samples = resample(samples, rate, self.rate)
        if not np.isfinite(samples).all():
            raise self.fail("the audio holds NaN or infinite samples", "bad_input")
        valid = min(samples.size, self.n_samples)
        return fit_length(samples, self.n_samples, self.cfg["crop"]), valid

    def notes(self, value: Any) -> list[str]:
        """That the audio was resampled to the model's rate, cut to its length (a shorter clip is
        padded, as in training, without a note), or is silent; or that a video holds no audio
        track, and was read with this modality absent."""
        if not self.holds(value):
            return ["the video holds no audio track: read as absent"]
        samples, rate = self.read(value)
        notes = [f"{rate:,} Hz resampled to the model's {self.rate:,} Hz"] if rate != self.rate else []
        seconds, model = samples.size / rate, self.n_samples / self.rate
        if samples.size * self.rate > (self.n_samples + self.hop) * rate:  # by more than a hop, as training notes it
            part = "first" if self.cfg["crop"] == "start" else "central"
            notes.append(f"{seconds:.2f} s where the model reads {model:g} s: cut to its {part} {model:g} s")
        if samples.size > 1 and np.ptp(samples) == 0:
            notes.append(SILENT_NOTE)
        return notes

    def sound_track(self, value: Any, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
        """The mono waveform and sample rate of a video container's first audio stream (PyAV), as
        training reads an audio column that names a video; ``max_seconds``: refuse (413) a longer
        track, decoded no further than the limit."""
        require_av(f"the sound track of a video (audio modality '{self.name}')")
        from polymodal.data.video_io import read_video_audio

        try:
            with video_path(value) as path:
                return read_video_audio(path, max_seconds)
        except OversizedInputError as err:
            raise self.fail(err.reason, "too_long", 413) from None
        except DecodeError as err:
            raise self.fail(err.reason, "corrupt_file") from None

    def featurize(self, samples: Sequence[tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
        waves = np.stack([s[0] for s in samples])  # (B, N)
        valid = np.asarray([s[1] for s in samples], np.int64)
        features = self.cfg["features"]
        if features == "waveform":
            return {"x": waves[:, :, None].astype(np.float32), "length": valid.astype(np.int32)}
        power = stft_power(waves, self.n_fft, self.hop)
        if features in ("log_mel", "mfcc"):
            power = power @ np.asarray(self.state["mel_bank"], np.float32)
        feats = 10.0 * np.log10(np.maximum(power, AMIN))
        top_db = self.cfg.get("top_db")
        if top_db is not None:  # clipped below each clip's peak, as training's power_to_db does
            feats = np.maximum(feats, feats.max(axis=(1, 2), keepdims=True) - top_db)
        if features == "mfcc":
            feats = feats @ np.asarray(self.state["dct"], np.float32)
        lengths = np.minimum(1 + valid // self.hop, feats.shape[1]).astype(np.int32)
        return {"x": feats.astype(np.float32), "length": lengths}
