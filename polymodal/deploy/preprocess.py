"""Per-modality preprocessing in numpy, from an export's JSON state (no torch).

Each class mirrors the ``decode`` + ``featurize`` steps of the training-time preprocessor of its
kind (``polymodal.data.modalities``) and produces the same cached-form arrays, which the exported
graph then normalises itself. The export's parity check compares the two on held-out rows.

Accepted values per kind:

- image: encoded file bytes (PNG, JPEG, BMP, GIF, TIFF, WebP; decoded with Pillow), a file path,
  or a uint8 array (H, W) / (H, W, C).
- audio: WAV bytes or path (16-bit PCM with the standard library; other encodings with
  ``soundfile`` when installed), or a ``(waveform, sample_rate)`` pair. Another sample rate than
  the model's is resampled band-limited (:func:`~polymodal.utils.signals.resample`: FFT, with the passband edge of the soxr
  resampler training uses; samples differ from training's by about 1e-3 inside the clip, and by up
  to about 2e-2 in its first and last few milliseconds, where the two filters ring differently).
  A video container (bytes or path) gives its sound track, read with PyAV as training reads it.
- text: a string. signal: an array (C, L), or ``.npy`` or CSV bytes/path (told apart by content; a
  CSV is read as training reads it: :mod:`polymodal.utils.signal_csv`). tabular: a mapping column -> value.
- video: a container's bytes or path (MP4, MOV, WebM, MKV, AVI; decoded with PyAV), a frame folder's
  path, a ``.npy`` clip (bytes or path) or a (T, H, W[, C]) array; sampled and converted by the
  training code (:mod:`polymodal.data.video_io`, which needs numpy, Pillow and PyAV, no torch).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from polymodal.deploy.errors import ExportError, RequestError, content_start
from polymodal.errors import DecodeError, MissingDependencyError, OversizedInputError
from polymodal.utils.images import EXIF_FORMATS, converted_and_resized, to_8bit
from polymodal.utils.npy import npy_from_bytes
from polymodal.utils.signal_csv import is_csv_text, non_finite_reason, pick_channels, read_csv_signal
from polymodal.utils.signals import channels_first, fit_length, resample
from polymodal.utils.text import UNK_ID, cleaner, word_ids
from polymodal.utils.values import blank, number
from polymodal.utils.wav import mono_samples, read_pcm_wav, truncation_reason, wav_frames

AMIN = 1e-10
NPY_MAGIC = b"\x93NUMPY"


def read_bytes(value: Any) -> bytes:
    """File content from bytes or a path."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return Path(str(value)).read_bytes()


class Features:
    """Base class: ``featurize(values)`` -> the modality's arrays (N, ...) for its graph inputs.

    Args:
        name: the modality name.
        meta: the modality's entry in ``deploy.json`` (``kind``, ``preprocess``, ``state``, ``inputs``).
    """

    kind: ClassVar[str]

    def __init__(self, name: str, meta: Mapping[str, Any]):
        self.name = name
        self.cfg = dict(meta["preprocess"])
        self.state = dict(meta.get("state") or {})
        self.inputs = {k: (tuple(v["shape"]), v["dtype"]) for k, v in meta["inputs"].items()}

    def decode(self, value: Any) -> Any:
        raise NotImplementedError

    def stack(self, samples: Sequence[Any]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def featurize(self, values: Sequence[Any]) -> dict[str, np.ndarray]:
        """Decoded and stacked arrays of ``values`` (all present)."""
        return self.stack([self.decode(v) for v in values])

    def notes(self, value: Any) -> list[str]:
        """What a caller should know about how ``value`` (present, featurised) was read, such as a
        category the model never learned; none by default."""
        return []

    def empty(self, n: int) -> dict[str, np.ndarray]:
        """Zero arrays for ``n`` rows where the modality is absent."""
        return {k: np.zeros((n, *shape), dtype) for k, (shape, dtype) in self.inputs.items()}

    def fail(self, message: str, code: str = "bad_input", status: int = 422) -> RequestError:
        return RequestError(f"modality '{self.name}' ({self.kind}): {message}", status=status, code=code, field=self.name)


# --- image -------------------------------------------------------------------------------------
class ImageFeatures(Features):
    kind = "image"
    MODES: ClassVar[dict[str, str]] = {"rgb": "RGB", "gray": "L", "hsv": "HSV"}

    def decode(self, value: Any) -> np.ndarray:
        try:
            from PIL import Image, ImageOps
        except ImportError:
            raise MissingDependencyError("Pillow", "decoding image files in the runtime") from None
        if isinstance(value, np.ndarray):
            array = value[..., 0] if value.ndim == 3 and value.shape[-1] == 1 else value
            if array.ndim not in (2, 3) or array.dtype != np.uint8:
                raise self.fail(f"expected a uint8 (H, W) or (H, W, C) array; got {array.dtype} {value.shape}")
            image = Image.fromarray(array)
        else:
            image = self.open(read_bytes(value))
            if image.format in EXIF_FORMATS:
                image = ImageOps.exif_transpose(image)
            image = to_8bit(image)  # 16-bit scans and float images, as in training
        return self.from_pil(image)

    def from_pil(self, image: Any) -> np.ndarray:
        """A decoded Pillow image -> colour-converted, resized uint8 (H, W, C), as training does
        (HSV resized as RGB); also used per video frame."""
        size = self.cfg["size"]
        height, width = (size, size) if isinstance(size, int) else size
        try:
            image = converted_and_resized(image, self.MODES[self.cfg["color"]], self.cfg.get("background"),
                                          (height, width), self.cfg["resize"])
        except ValueError as err:  # a colour mode Pillow does not convert (LAB, ...)
            raise self.fail(f"unsupported image colour mode {image.mode} ({err})", "unsupported_type", 415) from None
        array = np.asarray(image, dtype=np.uint8)
        return array[:, :, None] if array.ndim == 2 else array

    def open(self, data: bytes) -> Any:
        """A loaded Pillow image, refusing what the model's ``max_pixels`` refuses."""
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:
            raise self.fail(f"refused as a decompression bomb ({err})", "too_many_pixels", 413) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise self.fail("not a recognised image (PNG, JPEG, BMP, GIF, TIFF, WebP)",
                            "unsupported_type", 415) from None
        pixels = image.width * image.height
        if pixels > self.cfg["max_pixels"]:
            raise self.fail(f"image is {image.width}x{image.height} = {pixels:,} pixels; at most "
                            f"{self.cfg['max_pixels']:,} are allowed", "too_many_pixels", 413)
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as err:
            raise self.fail(f"corrupt or truncated image ({err})", "corrupt_file") from None
        return image

    def stack(self, samples: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {"x": np.stack(samples).astype(np.uint8, copy=False)}


# --- video -------------------------------------------------------------------------------------
# leading bytes of the video containers PyAV is given: (offset, bytes, type name); MP4, MOV, M4V
# and 3GP open with an ``ftyp`` box, WebM and Matroska with EBML's magic, AVI is a RIFF of type AVI
# (a WAV is a RIFF of type WAVE), MPEG program streams with a pack header
VIDEO_SIGNATURES = ((4, b"ftyp", "MP4/MOV"), (0, b"\x1a\x45\xdf\xa3", "WebM/MKV"), (8, b"AVI ", "AVI"),
                    (0, b"\x00\x00\x01\xba", "MPEG-PS"))


def video_container(data: bytes) -> str | None:
    """The container type of a video file's bytes (see :data:`VIDEO_SIGNATURES`), or None."""
    return next((name for offset, magic, name in VIDEO_SIGNATURES if data[offset:offset + len(magic)] == magic), None)


def has_av() -> bool:
    """Whether PyAV, which decodes video containers, can be imported."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def require_av(what: str) -> None:
    """Raise :class:`MissingDependencyError` naming ``what`` needs PyAV, when it is not installed."""
    if not has_av():
        raise MissingDependencyError("av", f"decoding {what}")


def is_video(value: Any) -> bool:
    """Whether ``value`` is a video container: bytes that open like one, or a path with a video suffix."""
    if isinstance(value, bytes | bytearray | memoryview):
        return video_container(bytes(value[:12])) is not None
    if isinstance(value, str | Path):
        from polymodal.data.video_io import VIDEO_SUFFIXES

        return Path(value).suffix.lower() in VIDEO_SUFFIXES
    return False


@contextmanager
def video_path(value: Any) -> Iterator[str]:
    """A path PyAV opens for ``value``: the path itself, or bytes written to a temporary file
    (FFmpeg reads a container in several passes; it tells the format by the content, so the
    ``.mp4`` name suits any container)."""
    if not isinstance(value, bytes | bytearray | memoryview):
        yield str(value)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="polymodal-video-") as folder:
        path = Path(folder) / "upload.mp4"
        path.write_bytes(value)
        try:
            yield str(path)
        except DecodeError as err:  # FFmpeg names the file: the temporary one means nothing to the sender
            raise type(err)(err.reason.replace(f"'{path}'", "the upload").replace(str(path), "the upload")) from None


class VideoFeatures(Features):
    """Video: a container (bytes or a path: mp4, mov, webm, mkv, avi; PyAV), a folder of frame
    images, a ``.npy`` clip (bytes or a path) or a (T, H, W[, C]) array; frames sampled, then
    converted and resized as images, by the training code (:mod:`polymodal.data.video_io`)."""

    kind = "video"

    def __init__(self, name: str, meta: Mapping[str, Any]):
        super().__init__(name, meta)
        require_av(f"video modality '{name}'")
        self.frame = ImageFeatures(name, {**meta, "inputs": {}})  # each frame converted as an image is
        self.frames = int(self.cfg["frames"])
        self.max_frames, self.max_pixels = int(self.cfg["max_frames"]), int(self.cfg["max_pixels"])

    def limit(self, max_frames: int, max_pixels: int) -> None:
        """Read no clip of more frames, or larger frames, than these as well as the model's own
        ``max_frames`` and ``max_pixels`` (the service's limits)."""
        self.max_frames, self.max_pixels = min(self.max_frames, max_frames), min(self.max_pixels, max_pixels)

    def pick(self, total: int) -> np.ndarray:
        from polymodal.data.video_io import sample_indices

        return sample_indices(total, self.frames, self.cfg["sampling"], self.cfg["stride"])

    def by_time(self, times: np.ndarray) -> np.ndarray:
        from polymodal.data.video_io import sample_times

        return sample_times(times, self.frames)

    def decode(self, value: Any) -> tuple[np.ndarray, int]:
        from polymodal.data.arrays import load_npy
        from polymodal.data.video_io import array_frames, read_frames

        by_time = self.by_time if self.cfg["sampling"] == "uniform" else None
        if isinstance(value, bytearray | memoryview):
            value = bytes(value)
        try:
            if isinstance(value, np.ndarray) or (isinstance(value, bytes) and value.startswith(NPY_MAGIC)):
                try:
                    array = value if isinstance(value, np.ndarray) else npy_from_bytes(value)
                except (ValueError, OSError, EOFError) as err:  # a truncated or malformed .npy
                    raise self.fail(f"not a readable .npy clip ({err})", "corrupt_file") from None
                frames = array_frames(array, self.pick, self.max_frames, max_pixels=self.max_pixels,
                                      convert=self.frame.from_pil, path="the clip")
            else:
                if isinstance(value, bytes) and video_container(value[:12]) is None:
                    raise self.fail(f"not a video container ({', '.join(n for _, _, n in VIDEO_SIGNATURES)}) nor a "
                                    f".npy clip; got {len(value):,} bytes starting with {content_start(value)}",
                                    "unsupported_type", 415)
                with video_path(value) as path:
                    frames = read_frames(path, self.pick, self.max_frames, load_npy, by_time,
                                         max_pixels=self.max_pixels, convert=self.frame.from_pil)
        except OversizedInputError as err:  # more frames or larger frames than allowed
            raise self.fail(err.reason, "too_large", 413) from None
        except DecodeError as err:  # unreadable, truncated
            raise self.fail(err.reason, "corrupt_file") from None
        clip = np.zeros((self.frames, *frames[0].shape), np.uint8)
        clip[:len(frames)] = frames
        return clip, len(frames)

    def stack(self, samples: Sequence[tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
        return {"x": np.stack([s[0] for s in samples]), "length": np.asarray([s[1] for s in samples], np.int32)}


# --- audio -------------------------------------------------------------------------------------
def read_wav(data: bytes, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 waveform and sample rate of WAV bytes (16-bit PCM here, else ``soundfile``).
    ``max_seconds``: a compressed file (FLAC, OGG) is decoded no further than one frame past it,
    so a small upload cannot expand into gigabytes (a 16-bit WAV is no larger decoded than sent)."""
    try:
        fast = read_pcm_wav(io.BytesIO(data))
    except DecodeError as err:  # a truncated upload
        raise RequestError(err.reason, status=422, code="corrupt_file") from None
    if fast is not None:
        return fast
    try:
        import soundfile
    except ImportError:
        raise MissingDependencyError("soundfile", "decoding audio other than 16-bit PCM WAV") from None
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as audio:
            rate = audio.samplerate
            frames = -1 if max_seconds is None or rate <= 0 else math.floor(max_seconds * rate) + 1
            samples = audio.read(frames=frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError, TypeError):
        raise RequestError("not a readable audio file (WAV, FLAC, OGG)", status=415, code="unsupported_type") from None
    declared = wav_frames(io.BytesIO(data))  # libsndfile clips a truncated WAV's frame count silently
    if declared is not None and declared[1] < declared[0]:
        raise RequestError(truncation_reason(*declared), status=422, code="corrupt_file")
    return samples.mean(axis=1), int(rate)


def audio_seconds(data: bytes) -> float | None:
    """An audio file's duration as its header declares it, or None when it declares none."""
    try:
        import soundfile

        info = soundfile.info(io.BytesIO(data))
    except (ImportError, RuntimeError, OSError, TypeError, ValueError):  # LibsndfileError is a RuntimeError
        return None  # no soundfile, or a header it cannot read: the length is unknown
    return info.frames / info.samplerate if info.samplerate > 0 and 0 < info.frames < 2**62 else None


def stft_power(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """(B, N) -> (B, 1 + N // hop, n_fft // 2 + 1) power of a centred, zero-padded periodic-Hann STFT."""
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

    def __init__(self, name: str, meta: Mapping[str, Any]):
        super().__init__(name, meta)
        cfg = self.cfg
        if cfg["features"] not in self.features:
            raise ExportError(f"modality '{name}': audio features '{cfg['features']}' have no numpy implementation "
                             f"(the runtime computes {', '.join(self.features)})")
        self.rate = int(cfg["sample_rate"])
        self.n_samples = round(cfg["max_seconds"] * self.rate)
        self.n_fft = round(cfg["frame_ms"] * self.rate / 1000)
        self.hop = round(cfg["hop_ms"] * self.rate / 1000)

    def read(self, value: Any) -> tuple[np.ndarray, int]:
        """The mono waveform and its sample rate, as given (before resampling and cutting)."""
        if isinstance(value, tuple):
            samples, rate = np.asarray(value[0]), int(value[1])
            if rate <= 0:
                raise self.fail(f"the sample rate must be positive; got {rate}", "bad_input")
            if samples.dtype.kind not in "iuf" or samples.ndim not in (1, 2):
                raise self.fail(f"expected numeric samples, 1-D or 2-D (samples x channels); got dtype "
                                f"{samples.dtype}, shape {samples.shape}", "bad_input")
            samples = mono_samples(samples)  # as training reads an array: stereo mixed down, PCM scaled
        elif is_video(value):
            samples, rate = self.sound_track(value)
        else:
            samples, rate = read_wav(read_bytes(value))
        return samples, rate

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
        padded, as in training, without a note), or is silent."""
        samples, rate = self.read(value)
        notes = [f"{rate:,} Hz resampled to the model's {self.rate:,} Hz"] if rate != self.rate else []
        seconds, model = samples.size / rate, self.n_samples / self.rate
        if samples.size * self.rate > self.n_samples * rate:  # longer than the model reads
            part = "first" if self.cfg["crop"] == "start" else "central"
            notes.append(f"{seconds:.2f} s where the model reads {model:g} s: cut to its {part} {model:g} s")
        if samples.size > 1 and np.ptp(samples) == 0:
            notes.append("the audio is silent (one value throughout): a muted or disconnected microphone?")
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

    def stack(self, samples: Sequence[tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
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


# --- text --------------------------------------------------------------------------------------
class TextFeatures(Features):
    kind = "text"

    def __init__(self, name: str, meta: Mapping[str, Any]):
        super().__init__(name, meta)
        self.clean = cleaner(self.cfg, self.state.get("stop_words") or ())
        self.max_tokens = int(self.cfg["max_tokens"])
        self.unk_id, self.pad_id = int(self.state.get("unk_id", UNK_ID)), int(self.state.get("pad_id", 0))
        if self.cfg["tokenizer"] == "word":
            self.encode = self.count = word_ids(self.state["vocab"])
            return
        try:  # wordpiece / bpe trained on the texts, or a pretrained (transformers 'fast') tokenizer: its JSON
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingDependencyError("tokenizers", f"text modality '{name}' ({self.cfg['tokenizer']})") from None
        whole, cut = Tokenizer.from_str(self.state["tokenizer_json"]), Tokenizer.from_str(self.state["tokenizer_json"])
        whole.no_truncation()
        whole.no_padding()
        cut.no_padding()
        if self.cfg["tokenizer"] == "pretrained":  # as transformers calls it: special tokens within max_tokens
            cut.enable_truncation(self.max_tokens, direction=self.state.get("truncation_side", "right"))
        self.encode = lambda text: cut.encode(text).ids
        self.count = lambda text: whole.encode(text).ids  # uncut: for the note that a text was cut

    def decode(self, value: Any) -> list[int]:
        if not isinstance(value, str):
            raise self.fail(f"expected a string; got {type(value).__name__}")
        return self.encode(self.clean(value))[: self.max_tokens] or [self.unk_id]  # as in training: one unknown token

    def notes(self, value: Any) -> list[str]:
        """That the text was cut to the model's ``max_tokens``, or cleaned to nothing (read as one
        unknown token)."""
        ids = self.count(self.clean(value))
        if not ids:
            return ["the text holds no word once cleaned (punctuation, stop words): read as one unknown token"]
        if len(ids) > self.max_tokens:
            side = self.state.get("truncation_side", "right")
            how = (f"cut to {self.max_tokens:,} (the tokenizer cuts from the {side})" if self.cfg["tokenizer"] == "pretrained"
                   else f"cut to its first {self.max_tokens:,}")
            return [f"{len(ids):,} tokens where the model reads {self.max_tokens:,}: {how}"]
        return []

    def stack(self, samples: Sequence[list[int]]) -> dict[str, np.ndarray]:
        ids = np.full((len(samples), self.max_tokens), self.pad_id, np.int32)
        lengths = np.zeros(len(samples), np.int32)
        for i, sample in enumerate(samples):
            ids[i, : len(sample)] = sample
            lengths[i] = len(sample)
        return {"ids": ids, "length": lengths}


# --- tabular -----------------------------------------------------------------------------------
class TabularFeatures(Features):
    kind = "tabular"

    def __init__(self, name: str, meta: Mapping[str, Any]):
        super().__init__(name, meta)
        self.numeric = list(meta["columns"])
        self.categorical = list(meta["categorical"])
        self.lookup = {c: {v: i + 1 for i, v in enumerate(cats)} for c, cats in self.state["categories"].items()}

    def number(self, value: Any, column: str) -> float:
        try:
            return number(value)
        except ValueError as err:
            raise self.fail(f"column '{column}' {err}") from None

    @staticmethod
    def category(value: Any) -> str | None:
        if blank(value):
            return None
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    def decode(self, value: Any) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(value, Mapping):
            raise self.fail(f"expected a mapping of columns {self.numeric + self.categorical}; got {type(value).__name__}")
        numbers = np.asarray([self.number(value.get(c), c) for c in self.numeric], np.float64)
        missing = np.isnan(numbers)
        fill, center, scale = (np.asarray(self.state[k], np.float64) for k in ("fill", "center", "scale"))
        with np.errstate(over="ignore"):  # a value out of range once scaled is refused below
            scaled = (np.where(missing, fill, numbers) - center) / scale
            num = np.concatenate([scaled, missing.astype(np.float64)]) if self.cfg["missing_indicator"] else scaled
            num32 = num.astype(np.float32)
        cats = [self.lookup[c].get(self.category(value.get(c)), 0) for c in self.categorical]
        if not np.isfinite(num32).all():
            bad = [c for c, v in zip(self.numeric, num32) if not np.isfinite(v)]
            raise self.fail(f"columns {bad} are out of range once scaled (float32 overflows)")
        return num32, np.asarray(cats, np.int64)

    def notes(self, value: Mapping[str, Any]) -> list[str]:
        """The categories of ``value`` the model did not learn (read as the unknown category)."""
        return [f"column '{c}': {value[c]!r} is a category the model did not learn (read as unknown; learned: "
                f"{', '.join(map(repr, self.state['categories'][c][:10]))}"
                f"{' ...' if len(self.state['categories'][c]) > 10 else ''})"
                for c in self.categorical if (key := self.category(value.get(c))) is not None and key not in self.lookup[c]]

    def stack(self, samples: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
        n = len(samples)
        return {"num": np.stack([s[0] for s in samples]).reshape(n, -1).astype(np.float32),
                "cat": np.stack([s[1] for s in samples]).reshape(n, len(self.categorical))}


# --- signal ------------------------------------------------------------------------------------
class SignalFeatures(Features):
    """A signal as training reads one: a ``.npy`` array (laid out by ``preprocess.layout``) or a CSV
    file (one column per channel; read by :mod:`polymodal.utils.signal_csv`, as in training), told
    apart by their content; then ``preprocess.channels``, crop or pad to ``length``."""

    kind = "signal"

    def decode(self, value: Any) -> tuple[np.ndarray, int, int]:
        """(channels, length) samples, the valid count and the count the signal held."""
        channels = self.cfg.get("channels")
        names = channels if channels and isinstance(channels[0], str) else None
        lines = None
        if isinstance(value, np.ndarray):
            array, source = value, ""
        else:
            source = "" if isinstance(value, bytes | bytearray | memoryview) else f" (file {value})"
            try:
                data = read_bytes(value)
            except OSError as err:
                raise self.fail(f"cannot read the signal file{source}: {err.strerror or err}", "bad_input") from None
            if data.startswith(NPY_MAGIC):
                try:
                    array = npy_from_bytes(data)
                except (ValueError, OSError, EOFError) as err:
                    raise self.fail(f"not a readable .npy array ({err}){source}", "corrupt_file") from None
            elif is_csv_text(data):
                try:
                    table = read_csv_signal(data, names)
                except DecodeError as err:
                    raise self.fail(f"{err.reason}{source}", "corrupt_file") from None
                array, lines = table.samples, table.lines
            else:
                raise self.fail(f"neither a .npy array nor a CSV file (UTF-8 text){source}; got {len(data):,} bytes "
                                f"starting with {content_start(data)}", "unsupported_type", 415)
        if lines is None:  # an array: its layout as in training (a CSV's columns are always its channels)
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "iufb":  # as training reads one
                raise self.fail(f"expected a real-valued numeric .npy array; got dtype "
                                f"{getattr(array, 'dtype', type(array).__name__)}{source}")
            if names is not None:
                raise self.fail(f"preprocess.channels names columns {names}, which only a CSV file has; got an "
                                f"array{source}")
            array = channels_first(np.asarray(array, np.float32), self.cfg.get("layout", "auto"))
        if array.size == 0:
            raise self.fail(f"the signal holds no samples (shape {array.shape}){source}")
        if channels is not None and names is None and array.ndim == 2:
            try:
                array = pick_channels(array, channels)
            except DecodeError as err:
                raise self.fail(f"{err.reason}{source}") from None
        expected = int(self.state["n_channels"])
        if array.ndim != 2 or array.shape[0] != expected:
            raise self.fail(f"expected {expected} channel(s) as in training; got an array of shape {array.shape}{source}")
        if not np.isfinite(array).all():
            raise self.fail(f"{non_finite_reason(array, lines)}{source}")
        length = int(self.cfg["length"])
        return fit_length(array, length, self.cfg["crop"]), min(array.shape[-1], length), array.shape[-1]

    def notes(self, value: Any) -> list[str]:
        """That the signal was cropped or zero-padded to the model's ``length``, and which channels
        are flat (one value throughout: a sensor disconnected or stuck, which a model trained on
        live signals may still read as ordinary)."""
        length = int(self.cfg["length"])
        window, valid, samples = self.decode(value)
        notes = [f"channel {c} holds one value throughout ({window[c, 0]:g}): a disconnected or stuck sensor?"
                 for c in range(window.shape[0]) if valid > 1 and np.ptp(window[c, :valid]) == 0]
        if samples != length:
            done = f"cropped to its {'first' if self.cfg['crop'] == 'start' else 'central'} {length:,}" \
                if samples > length else f"zero-padded to {length:,}"
            notes.insert(0, f"{samples:,} samples where the model reads {length:,}: {done}")
        return notes

    def stack(self, samples: Sequence[tuple[np.ndarray, int, int]]) -> dict[str, np.ndarray]:
        x = np.stack([s[0] for s in samples])  # (B, C, L)
        valid = np.asarray([s[1] for s in samples], np.int64)
        spec = self.cfg.get("spectrogram")
        if spec is None:
            return {"x": x, "length": valid.astype(np.int32)}
        b, c, n = x.shape
        power = stft_power(x.reshape(b * c, n), spec["n_fft"], spec["hop"])  # (B*C, T, F)
        feats = np.log1p(power).reshape(b, c, power.shape[1], power.shape[2]).transpose(0, 1, 3, 2)
        lengths = np.minimum(1 + valid // spec["hop"], power.shape[1]).astype(np.int32)
        return {"x": feats.reshape(b, -1, power.shape[1]).astype(np.float32), "length": lengths}


FEATURES: dict[str, type[Features]] = {cls.kind: cls for cls in (ImageFeatures, AudioFeatures, TextFeatures,
                                                                 TabularFeatures, SignalFeatures, VideoFeatures)}
