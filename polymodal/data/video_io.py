"""Reading videos: frames with PyAV (the containers of :data:`VIDEO_SUFFIXES`: mp4, avi, webm, mkv,
mov, MPEG-TS...), a folder of frame images or a ``.npy`` of frames; the audio track of a container as
a mono waveform, aligned to its video stream's start; frame sampling (by index, or by timestamp on a
variable-frame-rate container).

PyAV (FFmpeg bindings, ``pip install av``) is imported lazily.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from polymodal.data.arrays import split_row_ref
from polymodal.data.video_headers import check_complete, reported_frames
from polymodal.errors import EMPTY_FILE, AbsentInputError, DecodeError, MissingDependencyError, OversizedInputError
from polymodal.utils.images import array_to_pil, pixels_to_8bit, to_8bit

# the containers a video cell (and an audio cell's sound track) is decoded from with PyAV: MPEG-4 and
# QuickTime, Matroska/WebM, AVI, MPEG program and transport streams (.ts: what network video recorders
# write), 3GPP, Flash, Windows Media, MXF, Ogg video and animated GIF
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".webm", ".mkv", ".mpg", ".mpeg", ".vob", ".ts", ".m2ts",
                            ".mts", ".3gp", ".3g2", ".flv", ".wmv", ".asf", ".mxf", ".ogv", ".gif"})
FRAME_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


class NoAudioTrackError(AbsentInputError):
    """A video container with pictures but no audio stream, read for its sound track (an audio
    modality's cell that names a video): a camera without a microphone, not a corrupt file. Its
    audio modality is read as absent, as an empty cell is (:class:`~polymodal.errors.AbsentInputError`)."""

    summary = ("video holds no audio track", "videos hold no audio track")


def import_av() -> Any:
    """PyAV's module (imported on first use: only video files need it).

    Raises:
        MissingDependencyError: PyAV is not installed.
    """
    try:
        import av
    except ImportError:
        raise MissingDependencyError("av", "decoding video files (mp4, avi, webm...)") from None
    return av


def sample_indices(total: int, frames: int, sampling: str, stride: int) -> np.ndarray:
    """Which of ``total`` frames to keep.

    Args:
        total: frames in the clip (>= 1).
        frames: frames wanted.
        sampling: ``uniform`` (evenly over the clip; repeats frames of a short clip) or ``stride``
            (every ``stride``-th frame from the start, at most ``frames``; fewer for a short clip).

    Returns:
        (K,) int64 indices, K == ``frames`` for ``uniform``, K <= ``frames`` for ``stride``.
    """
    if sampling == "uniform":
        return np.linspace(0, total - 1, frames).round().astype(np.int64)
    return np.arange(0, total, stride, dtype=np.int64)[:frames]


def sample_times(times: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` frames spread evenly in time: the frame on screen at each of ``frames`` evenly
    spaced instants from the first frame's timestamp to the last's.

    On a constant-rate clip (every timestamp within a tick, or 1% of a frame, of a straight line
    from the first to the last, as timestamp rounding leaves them) this is exactly ``uniform``
    sampling by index, and so it is where two frames share a timestamp (stamps not to be trusted);
    on a variable-frame-rate clip (a phone that slows down in the dark, a recorder that drops
    frames) it follows the clock, not the frame count.

    Args:
        times: (N,) presentation timestamps of the clip's frames in display order, any unit.
        frames: frames wanted.

    Returns:
        (frames,) int64 indices into ``times``.
    """
    n = len(times)
    stamps = np.asarray(times, np.float64)
    step = (stamps[-1] - stamps[0]) / max(n - 1, 1)
    drift = np.abs(stamps - (stamps[0] + step * np.arange(n))).max() if n > 2 else 0.0
    if drift <= max(1.0, 0.01 * step) or (np.diff(stamps) <= 0).any():
        return sample_indices(n, frames, "uniform", 1)
    instants = np.linspace(float(times[0]), float(times[-1]), frames)
    return np.searchsorted(times, instants, side="right").astype(np.int64) - 1


def _unopenable(path: str, err: Exception) -> str:
    """Why FFmpeg could not open ``path`` as a container (its InvalidDataError), with the likely
    cause: a file cut short, most often an mp4 whose index (``moov``) was to be written last."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        head = None
    if head == b"":
        return f"unreadable video: {EMPTY_FILE}"
    hint = "a file cut short (an mp4 whose index is written last, interrupted while recording) reads so"
    if head is not None and head[4:8] != b"ftyp":  # not an mp4/mov start: it may not be a video at all
        hint += ", as does a file that is not a video"
    return f"unreadable or corrupt video ({err}); truncated? {hint}"


def open_container(path: str) -> Any:
    """``av.open(path)`` for reading.

    Raises:
        DecodeError: FFmpeg cannot open it (its InvalidDataError), with the likely cause.
    """
    av = import_av()
    try:
        return av.open(path)
    except av.error.InvalidDataError as err:
        raise DecodeError(_unopenable(path, err), path=path) from None


def _missing_stream(container: Any, kind: str, path: str) -> DecodeError:
    """The error for a container without a ``kind`` stream: one with neither sound nor pictures
    was most likely cut short inside its header (an interrupted copy), not made without them."""
    if not container.streams.video and not container.streams.audio:
        return DecodeError("unreadable or truncated video: the container holds neither a video nor an audio stream "
                           "(a file cut short inside its header?)", path=path)
    if kind == "audio":
        return NoAudioTrackError("the video file holds no audio track (a camera without a microphone?)", path=path)
    return DecodeError("the video file holds no video stream", path=path)


def _video_stream(container: Any, path: str) -> Any:
    if not container.streams.video:
        raise _missing_stream(container, "video", path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _to_image(frame: Any) -> Image.Image:
    """A decoded frame as a Pillow image (converted at once by ``read_frames``'s ``convert``, so a
    full-resolution frame is never held past its own decoding)."""
    return frame.to_image()


def _unchanged(image: Image.Image) -> Image.Image:
    return image


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key for file names with digit runs compared as numbers: ``2.png`` before ``10.png``
    (FFmpeg's default ``frame%d.png``), ``f_9`` before ``f_10``; names equal but for leading zeros
    (``1.png``, ``01.png``) in plain string order."""
    parts = re.split(r"(\d+)", name)  # text at even positions, digit runs at odd ones
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), name


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """The frame images of a frame folder (files with an image suffix) in the order they are read:
    natural order (:func:`natural_key`), so unpadded numbers keep their order."""
    files = [p for p in Path(folder).iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


# the settings the size limits come from, as the refusals name them (a service that holds clips to
# tighter limits of its own names its options instead: deploy/features/video.py)
MAX_FRAMES_SETTING, MAX_PIXELS_SETTING = "preprocess.max_frames", "preprocess.max_pixels"


def _check_pixels(width: int, height: int, max_pixels: int | None, what: str, path: str) -> None:
    """Refuse frames of more than ``max_pixels`` pixels (None: no limit) before they are decoded."""
    if max_pixels is not None and width * height > max_pixels:
        raise OversizedInputError(f"{what} {width}x{height} = {width * height:,} pixels, more than {MAX_PIXELS_SETTING} "
                                  f"({max_pixels:,}); refused as a possible decompression bomb", measure="pixels",
                                  path=path)


def _too_many_frames(max_frames: int, path: str, found: int | None = None) -> OversizedInputError:
    """The refusal of a clip of more than ``max_frames`` frames (``found``: how many, where known)."""
    reason = (f"video has {found:,} frames, more than {MAX_FRAMES_SETTING} ({max_frames:,})" if found is not None
              else f"video has more than {MAX_FRAMES_SETTING} ({max_frames:,}) frames")
    return OversizedInputError(reason, measure="frames", path=path)


def _decode(path: str, keep: set[int], limit: int | None, max_frames: int, container: Any = None,
            convert: Callable[[Image.Image], Any] = _unchanged) -> tuple[dict[int, Any], int]:
    """Decode frames in order, converting only those whose index is in ``keep`` (to a Pillow image,
    then with ``convert``); from ``container`` when given (opened and not yet decoded), else from a
    fresh open of ``path``.

    Returns:
        The kept frames by index, and how many frames were read (at most ``limit``; None: all).

    Raises:
        DecodeError: the stream ends well before its header says it should (see :func:`~polymodal.data.video_headers.check_complete`).
    """
    if container is None:
        with open_container(path) as opened:
            return _read(opened, path, keep, limit, max_frames, convert)
    return _read(container, path, keep, limit, max_frames, convert)


def _read(container: Any, path: str, keep: set[int], limit: int | None, max_frames: int,
          convert: Callable[[Image.Image], Any]) -> tuple[dict[int, Any], int]:
    stream = _video_stream(container, path)
    kept: dict[int, Any] = {}
    seen = 0
    first = last = None  # the earliest and latest presentation timestamps read (stream ticks)
    held = None  # how long the latest frame stays on screen (stream ticks), where the container says
    for frame in container.decode(stream):
        if seen in keep:
            kept[seen] = convert(_to_image(frame))
        if frame.pts is not None:
            first = frame.pts if first is None else min(first, frame.pts)
            if last is None or frame.pts >= last:
                last, held = frame.pts, getattr(frame, "duration", None)
        seen += 1
        if seen > max_frames:
            raise _too_many_frames(max_frames, path)
        if limit is not None and seen >= limit:
            return kept, seen
    if first is not None and last is not None:  # the stream ended: where its header says it should?
        check_complete(container, stream, seen, first, last, path, held)
    return kept, seen


def _packet_times(path: str, max_frames: int) -> np.ndarray | None:
    """The presentation timestamps of the first video stream's frames, in display order, read by
    demuxing alone (no decoding): its packets with data, less those an edit list trims (which the
    decoder drops). None when some packet carries none (then frames are counted by decoding).

    Raises:
        DecodeError: more than ``max_frames`` frames (found as soon as the count passes it).
    """
    stamps = []
    with open_container(path) as container:
        for packet in container.demux(_video_stream(container, path)):
            if packet.size and not packet.is_discard:
                stamps.append(packet.pts)
                if len(stamps) > max_frames:
                    raise _too_many_frames(max_frames, path)
    if not stamps or any(stamp is None for stamp in stamps):
        return None
    return np.sort(np.asarray(stamps, np.int64))


def _timed(pick: Callable[[int], np.ndarray], times: np.ndarray, chosen: np.ndarray) -> Callable[[int], np.ndarray]:
    """``pick`` that answers ``chosen`` for a clip of as many frames as ``times`` stamps (and
    samples by index should decoding find another count)."""
    def timed(total: int) -> np.ndarray:
        return chosen if total == len(times) else pick(total)
    return timed


def _container_frames(path: str, pick: Callable[[int], np.ndarray], max_frames: int,
                      by_time: Callable[[np.ndarray], np.ndarray] | None = None, max_pixels: int | None = None,
                      convert: Callable[[Image.Image], Any] = _unchanged) -> list[Any]:
    """Decode the first video stream of a container; keep the frames ``pick(total)`` selects, or
    ``by_time(timestamps)`` where given and the stream's packets carry timestamps (a demuxing pass
    reads them, and their count is taken as the frame count; should decoding find another, the
    frames are sampled by index), each passed through ``convert`` as soon as it is decoded.

    Only the selected frames are ever held (never the whole clip), and each only in its converted
    form. The frame count comes from the
    timestamps where they are read, else from the container's header where it has one (mp4, avi,
    mov); decoding reads one frame past it to check it, or stops right after the last selected
    frame when the selection would be the same for any longer clip (``stride`` with all its
    frames). Without a count (webm, mkv, sampled by index) the first pass
    keeps the selection for the longest allowed clip while it counts, and a second pass takes the
    selection for the true count (decoding twice rather than holding the clip). A count the decoded
    frames contradict is replaced by theirs, so the frames are exactly those ``pick`` selects from
    all decoded frames, unless the stream ended well short of its header's duration (a truncated
    file: refused). (A filled ``stride`` never reads past its last frame, so ``max_frames``
    refuses a longer clip only through its header count.)
    """
    av = import_av()
    try:
        with open_container(path) as container:  # the header count and the first pass: one open
            stream = _video_stream(container, path)
            _check_pixels(stream.codec_context.width, stream.codec_context.height, max_pixels, "video frames are",
                          path)
            total = reported_frames(stream)
            if total > max_frames:  # refused before reading the file, where the header says so
                raise _too_many_frames(max_frames, path, total)
            times = _packet_times(path, max_frames) if by_time is not None else None
            if times is not None and by_time is not None:
                pick, total = _timed(pick, times, by_time(times)), len(times)
            total = total or max_frames  # no count: the longest allowed
            unread = container
            while True:
                wanted = pick(total)
                length_free = np.array_equal(wanted, pick(max_frames + 1))  # as for a clip too long to allow
                limit = int(wanted.max()) + 1 if length_free else total + 1  # one past the count: is it right?
                kept, seen = _decode(path, set(wanted.tolist()), limit, max_frames, unread, convert)
                unread = None  # a later pass opens the file again
                if seen == 0:
                    raise DecodeError("the video stream holds no frames", path=path)
                if seen == (limit if length_free else total):
                    return [kept[i] for i in wanted]
                # a wrong count: the stream ended at ``seen``, or it goes on past the count (count it all)
                total = seen if seen < limit else _decode(path, set(), None, max_frames)[1]
                if set(pick(total).tolist()) <= kept.keys():
                    return [kept[i] for i in pick(total)]
    except DecodeError:
        raise
    except (av.FFmpegError, OSError) as err:
        raise DecodeError(f"unreadable or corrupt video ({err})", path=path) from None


def _frame_file(file: Path, max_pixels: int | None, value_range: Sequence[float] | None = None) -> Image.Image:
    """One image of a frame folder, its size checked before its pixels are decoded (Pillow opens
    lazily), 16-bit frames scaled as image files are (:func:`~polymodal.utils.images.to_8bit`)."""
    try:
        with Image.open(file) as image:
            _check_pixels(image.width, image.height, max_pixels, "frame is", str(file))
            image.load()
            return to_8bit(image.copy(), value_range)
    except DecodeError:
        raise
    except Image.DecompressionBombError as err:
        raise DecodeError(f"refused as a decompression bomb ({err})", path=str(file)) from None
    except (OSError, SyntaxError, ValueError) as err:  # Pillow's errors for corrupt and truncated files
        raise DecodeError(f"unreadable frame ({err})", path=str(file)) from None


def _folder_frames(path: str, pick: Callable[[int], np.ndarray], max_pixels: int | None = None,
                   convert: Callable[[Image.Image], Any] = _unchanged,
                   value_range: Sequence[float] | None = None) -> list[Any]:
    files = frame_files(path)
    if not files:
        raise DecodeError(f"frame folder holds no images ({', '.join(sorted(FRAME_SUFFIXES))})", path=path)
    _check_one_size(files, path)
    wanted = pick(len(files))
    read = {index: convert(_frame_file(files[index], max_pixels, value_range)) for index in dict.fromkeys(wanted.tolist())}
    return [read[index] for index in wanted.tolist()]  # a short clip's repeated frame read once


def _check_one_size(files: list[Path], path: str) -> None:
    """Refuse a frame folder whose images are not all of one size, read from their headers (a
    header Pillow cannot read is left to the decoding of that frame, where it is sampled): resized
    alike, frames of another size would not line up, whichever frames the sampling picks.

    Raises:
        DecodeError: naming the sizes found, the commonest first, with their first files.
    """
    sizes: dict[tuple[int, int], list[str]] = {}
    for file in files:
        try:
            with Image.open(file) as image:
                size = image.size
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            continue
        sizes.setdefault(size, []).append(file.name)
    if len(sizes) > 1:
        found = " and ".join(f"{w}x{h} ({len(names)}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                             for (w, h), names in sorted(sizes.items(), key=lambda item: -len(item[1])))
        raise DecodeError(f"frame folder mixes image sizes: {found}; the frames of a clip share one size",
                          path=path)


def _npy_frame_pixels(shape: tuple[int, ...]) -> tuple[int, int]:
    """(width, height) of the frames of a (T, H, W), (T, H, W, C) or (T, C, H, W) array."""
    frame = shape[1:]
    if len(frame) == 3 and frame[0] in (1, 3, 4) and frame[-1] not in (1, 3, 4):  # channels first
        return frame[2], frame[1]
    return frame[1], frame[0]


def read_frames(path: str, pick: Callable[[int], np.ndarray], max_frames: int,
                npy: Callable[[str], np.ndarray],
                by_time: Callable[[np.ndarray], np.ndarray] | None = None, *, max_pixels: int | None = None,
                convert: Callable[[Image.Image], Any] = _unchanged,
                value_range: Sequence[float] | None = None) -> list[Any]:
    """The selected frames of a video file (one of :data:`VIDEO_SUFFIXES`), a frame folder or a
    ``.npy`` of frames (or a row of a packed one, ``clips.npy#3``), each passed through ``convert``
    as soon as it is decoded (by default kept as a Pillow image).

    A frame folder's images are read in natural order (:func:`frame_files`); the sampled ones must
    share one size.

    Args:
        pick: total frame count -> indices to keep (see :func:`sample_indices`).
        max_frames: refuse longer clips.
        npy: reads a ``.npy`` (or row reference) into (T, H, W[, C]) frames.
        by_time: a container's frame timestamps -> indices to keep (see :func:`sample_times`);
            used instead of ``pick`` when given and the container stamps its frames.
        max_pixels: refuse frames with more pixels (a container's by its header, a folder's
            images before they are decoded); None: no limit.
        convert: a decoded Pillow frame -> what to keep of it (resized to the model's size, so no
            full-resolution frame waits for the others).
        value_range: the values that read as black and white in frames stored wider than 8 bits
            (the image setting ``value_range``); None: scaled by their maximum.

    Raises:
        DecodeError: unreadable, corrupt, truncated, empty or oversized input, or a file of
            another type (an image, a sound file), with the path and the reason.
    """
    if Path(path).is_dir():
        return _folder_frames(path, pick, max_pixels, convert, value_range)
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return _container_frames(path, pick, max_frames, by_time, max_pixels, convert)
    if suffix == ".npy" or split_row_ref(path)[1] is not None:
        return array_frames(npy(path), pick, max_frames, max_pixels=max_pixels, convert=convert, path=path,
                            value_range=value_range)
    raise DecodeError(unsupported_video_type(suffix), path=path)


def unsupported_video_type(suffix: str) -> str:
    """Why a file of type ``suffix`` (``.wav``; empty: none) is no video cell, and what is."""
    found = f"video file type '{suffix}'" if suffix else "video file type (the file name has no suffix)"
    return (f"unsupported {found}; a video cell takes a video file ({', '.join(sorted(VIDEO_SUFFIXES))}), a folder "
            f"of frame images ({', '.join(sorted(FRAME_SUFFIXES))}) or a .npy of frames")


def array_frames(array: np.ndarray, pick: Callable[[int], np.ndarray], max_frames: int, *,
                 max_pixels: int | None = None, convert: Callable[[Image.Image], Any] = _unchanged,
                 path: str = "the array", value_range: Sequence[float] | None = None) -> list[Any]:
    """The selected frames of a (T, H, W) or (T, H, W, C) array of frames (a ``.npy`` clip), scaled
    to 8 bits once for the whole clip (from ``value_range`` when given) and each passed through ``convert`` (see :func:`read_frames`).

    Raises:
        DecodeError: another shape, more than ``max_frames`` frames or larger frames than
            ``max_pixels``, naming ``path``.
    """
    if array.ndim not in (3, 4) or array.shape[0] == 0:
        raise DecodeError(f"expected a (T, H, W) or (T, H, W, C) array of frames; got shape {array.shape}", path=path)
    if array.shape[0] > max_frames:
        raise _too_many_frames(max_frames, path, array.shape[0])
    _check_pixels(*_npy_frame_pixels(array.shape), max_pixels, "frames are", path)
    clip = pixels_to_8bit(np.asarray(array), path, value_range)  # one scale for the clip, not one guess per frame
    wanted = pick(array.shape[0]).tolist()
    converted = {index: convert(array_to_pil(clip[index], path)) for index in dict.fromkeys(wanted)}
    return [converted[index] for index in wanted]


def _stream_start(stream: Any) -> Fraction | None:
    """When ``stream`` starts, in seconds on the container's clock (its ``start_time``), or None
    where the container does not say."""
    if stream.start_time is None or stream.time_base is None:
        return None
    return stream.start_time * stream.time_base


def _lead_samples(container: Any, audio: Any, rate: int) -> int:
    """How many samples the audio stream starts after the first video stream (negative: before it),
    by their ``start_time``: silence to put before the sound (or samples to cut from its start) so
    that sample 0 plays with the first frame. 0 without a video stream, or where either start is
    unknown."""
    if not container.streams.video:
        return 0
    video_start, audio_start = _stream_start(container.streams.video[0]), _stream_start(audio)
    if video_start is None or audio_start is None:
        return 0
    return round((audio_start - video_start) * rate)


def has_audio_track(path: str) -> bool:
    """Whether the container at ``path`` holds an audio stream (read from its header; nothing is
    decoded).

    Raises:
        DecodeError: FFmpeg cannot open it.
    """
    av = import_av()
    try:
        with open_container(path) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError) as err:
        raise DecodeError(f"unreadable or corrupt video ({err})", path=path) from None


def read_video_audio(path: str, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """The first audio stream of a video container as a mono float32 waveform and its sample rate,
    aligned to the first video stream: sample 0 plays with the first frame. A track that starts
    later than the pictures (by the streams' ``start_time``) is preceded by that much silence; one
    that starts earlier loses the samples before the first frame. The encoder's leading delay that
    the container records (AAC's priming samples in an mp4 edit list, Opus's pre-skip) is trimmed
    by FFmpeg before that.

    Args:
        max_seconds: refuse a longer track (its length once aligned), decoding no further than one
            frame past the limit (a small compressed upload cannot expand into gigabytes of
            samples); None: no limit.

    Raises:
        NoAudioTrackError: the container holds pictures but no audio stream.
        DecodeError: no stream at all, an unreadable file, or a track that ends before the first
            frame; :class:`OversizedInputError` past ``max_seconds``.
    """
    av = import_av()
    try:
        with open_container(path) as container:
            if not container.streams.audio:
                raise _missing_stream(container, "audio", path)
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate)
            lead = _lead_samples(container, stream, rate)
            limit = None if max_seconds is None else math.floor(max_seconds * rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks, samples = [], lead  # samples: the aligned track's length so far
            for frame in container.decode(stream):
                new = [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
                chunks += new
                samples += sum(c.size for c in new)
                if limit is not None and samples > limit:
                    raise OversizedInputError(f"the audio track is longer than {max_seconds:g} s", measure="seconds",
                                              path=path)
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except DecodeError:
        raise
    except (av.FFmpegError, OSError) as err:
        raise DecodeError(f"unreadable or corrupt video ({err})", path=path) from None
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if wave.size == 0:
        raise DecodeError("the audio track holds no samples", path=path)
    if lead < 0 and wave.size <= -lead:
        raise DecodeError(f"the audio track ends before the first video frame (it starts {-lead / rate:.3f} s before "
                          f"the pictures and lasts {wave.size / rate:.3f} s)", path=path)
    return (np.concatenate([np.zeros(lead, np.float32), wave]) if lead > 0 else wave[-lead:]), rate


def write_video(path: str, frames: np.ndarray, fps: int = 10, audio: np.ndarray | None = None,
                sample_rate: int = 8000, codec: str | None = None) -> None:
    """Write (T, H, W) grey or (T, H, W, 3) RGB uint8 frames (and an optional mono float waveform
    in [-1, 1] as an audio track) to a container chosen by the suffix: ``.mp4``/``.mkv``/``.mov``
    (H.264 or MPEG-4 + AAC), ``.avi`` (MPEG-4 + PCM), ``.webm`` (VP9 + Opus).

    Used by the synthetic datasets and the tests; H and W should be even.
    """
    av = import_av()
    suffix = Path(path).suffix.lower()
    video_codec = codec or {".webm": "libvpx-vp9", ".avi": "mpeg4"}.get(suffix, "libx264")
    audio_codec = {".webm": "libopus", ".avi": "pcm_s16le"}.get(suffix, "aac")
    rgb = np.repeat(frames[..., None], 3, axis=-1) if frames.ndim == 3 else frames
    with av.open(path, mode="w") as container:
        stream = container.add_stream(video_codec, rate=fps)
        stream.width, stream.height = rgb.shape[2], rgb.shape[1]
        stream.pix_fmt = "yuv420p"
        a_stream = None
        if audio is not None:
            rate = 48_000 if audio_codec == "libopus" else sample_rate
            a_stream = container.add_stream(audio_codec, rate=rate)
            a_stream.layout = "mono"
        for image in rgb:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if a_stream is not None:
            wave = np.asarray(audio, np.float32)
            if a_stream.rate != sample_rate:
                import librosa

                wave = librosa.resample(wave, orig_sr=sample_rate, target_sr=a_stream.rate)
            pcm = np.clip(wave * 32767, -32768, 32767).astype(np.int16)[None, :]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = a_stream.rate
            # stamped at 0, the encoder's leading delay (AAC's 1,024 priming samples, Opus's pre-skip) gets
            # negative timestamps and the muxer an edit list that readers trim it by; unstamped, the
            # track would start that delay late
            frame.pts, frame.time_base = 0, Fraction(1, a_stream.rate)
            for packet in a_stream.encode(frame):
                container.mux(packet)
            for packet in a_stream.encode():
                container.mux(packet)
