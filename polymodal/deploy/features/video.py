"""Video in the runtime: containers, frame folders, ``.npy`` clips and arrays, decoded and sampled by
training's own :mod:`polymodal.data.video_io` (numpy, Pillow, PyAV; no torch); the container
signatures the service accepts."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.deploy.errors import content_start
from polymodal.deploy.features.base import NPY_MAGIC, Features
from polymodal.deploy.features.image import ImageFeatures
from polymodal.errors import DecodeError, MissingDependencyError, OversizedInputError
from polymodal.utils.npy import npy_from_bytes

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
            err.reason = err.reason.replace(f"'{path}'", "the upload").replace(str(path), "the upload")
            err.path, err.args = None, (err.reason,)
            raise


class VideoFeatures(Features):
    """Video: a container (bytes: mp4, mov, webm, mkv, avi, MPEG-PS; or a path with one of training's
    video suffixes, :data:`~polymodal.data.video_io.VIDEO_SUFFIXES`; PyAV), a folder of frame
    images, a ``.npy`` clip (bytes or a path) or a (T, H, W[, C]) array; frames sampled, then
    converted and resized as images, by the training code (:mod:`polymodal.data.video_io`)."""

    kind = "video"

    def __init__(self, name: str, meta: Mapping[str, Any], on_error: str | None = None):
        super().__init__(name, meta, on_error)
        require_av(f"video modality '{name}'")
        self.frame = ImageFeatures(name, {**meta, "inputs": {}})  # each frame converted as an image is
        self.frames = int(self.cfg["frames"])
        self.max_frames, self.max_pixels = int(self.cfg["max_frames"]), int(self.cfg["max_pixels"])
        self.limit_names: dict[str, str] = {}  # the model's setting -> the option of a tighter service limit

    def limit(self, max_frames: int, max_pixels: int) -> None:
        """Hold clips to the service's limits too (``polymodal serve --max-video-frames`` and
        ``--max-image-pixels``), where they are tighter than the model's ``max_frames`` and
        ``max_pixels``: a clip is refused from its header where that tells its size, else while it
        is decoded; the refusal names the option."""
        from polymodal.data.video_io import MAX_FRAMES_SETTING, MAX_PIXELS_SETTING

        if max_frames < self.max_frames:
            self.max_frames = max_frames
            self.limit_names[MAX_FRAMES_SETTING] = "the service's --max-video-frames"
        if max_pixels < self.max_pixels:
            self.max_pixels = max_pixels
            self.limit_names[MAX_PIXELS_SETTING] = "the service's --max-image-pixels"

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
                                      convert=self.frame.from_pil, path="the clip",
                                      value_range=self.cfg.get("value_range"))
            else:
                if isinstance(value, bytes) and video_container(value[:12]) is None:
                    raise self.fail(f"not a video container ({', '.join(n for _, _, n in VIDEO_SIGNATURES)}) nor a "
                                    f".npy clip; got {len(value):,} bytes starting with {content_start(value)}",
                                    "unsupported_type", 415)
                self.check_path(value)  # a container's or a frame folder's
                self.check_type(value)
                with video_path(value) as path:
                    frames = read_frames(path, self.pick, self.max_frames, load_npy, by_time,
                                         max_pixels=self.max_pixels, convert=self.frame.from_pil,
                                         value_range=self.cfg.get("value_range"))
        except OversizedInputError as err:  # more frames or larger frames than allowed
            reason = err.reason
            for setting, option in self.limit_names.items():
                reason = reason.replace(setting, option)
            if err.measure == "frames":
                reason += f" (the model reads {self.frames} of them)"
            raise self.fail(reason, "too_long" if err.measure == "frames" else "too_many_pixels", 413) from None
        except DecodeError as err:  # unreadable, truncated
            raise self.fail(err.reason, "corrupt_file") from None
        clip = np.zeros((self.frames, *frames[0].shape), np.uint8)
        clip[:len(frames)] = frames
        return clip, len(frames)

    def check_type(self, value: Any) -> None:
        """Refuse (415) a path to a file of a type that is no video cell (an image, a sound file),
        as training refuses it (:func:`~polymodal.data.video_io.read_frames`)."""
        from polymodal.data.arrays import split_row_ref
        from polymodal.data.video_io import VIDEO_SUFFIXES, unsupported_video_type

        if not isinstance(value, str | os.PathLike) or os.path.isdir(value):
            return
        suffix = Path(value).suffix.lower()
        if suffix not in VIDEO_SUFFIXES and suffix != ".npy" and split_row_ref(str(value))[1] is None:
            raise self.fail(f"file '{value}': {unsupported_video_type(suffix)}", "unsupported_type", 415)

    def featurize(self, samples: Sequence[tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
        return {"x": np.stack([s[0] for s in samples]), "length": np.asarray([s[1] for s in samples], np.int32)}
