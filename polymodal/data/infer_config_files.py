"""What a manifest's file column holds, for ``polymodal config init`` (:mod:`polymodal.data.infer_config`):
each kind of file opened on a sample of the rows (headers where they suffice) for the settings a
modality needs: an image's size and colour, a clip's sample rate and longest length, a signal's
length (and, from 1,024 samples on, a spectrogram), a video's frame size and colour, its sound
track's rate and length (a video column's tracks as a second, audio, modality).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from polymodal.config.encoders import FLATTEN_MAX_SIDE
from polymodal.data.manifest import Manifest
from polymodal.data.video_io import FRAME_SUFFIXES, VIDEO_SUFFIXES, import_av
from polymodal.utils.images import GREY_LEVELS, colour_mode, grey_image, grey_pixels, image_array, wider_than_8_bits

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus"})  # what libsndfile reads
ARRAY_SUFFIXES = frozenset({".npy", ".npz", ".mat", ".csv"})
FILE_KINDS = {**{s: "image" for s in FRAME_SUFFIXES}, **{s: "audio" for s in AUDIO_SUFFIXES},
              **{s: "video" for s in VIDEO_SUFFIXES}, **{s: "array" for s in ARRAY_SUFFIXES}}
SAMPLE_FILES = 20  # files opened per file column
# what a reader raises on a file it cannot read: Pillow's UnidentifiedImageError is an OSError,
# libsndfile's error a RuntimeError, PyAV's InvalidDataError a ValueError
READ_ERRORS = (OSError, ValueError, EOFError, RuntimeError)
SPECTROGRAM_FROM = 1024  # signals this long or longer are read as spectrograms
MAX_IMAGE_SIDE = 128  # larger pictures are resized to this (a CPU-sized start; raise it on a GPU)
# beyond FLATTEN_MAX_SIDE (config.encoders), the default cnn's projection of its flattened feature map
# outgrows the data: a third stage and the feature map's mean instead (a few hundred thousand weights at any size)
LARGE_IMAGE_CNN = {"name": "cnn", "channels": [32, 64, 128], "pool": "avg"}
MAX_VIDEO_SIDE = 64  # frames are resized to at most this (every sampled frame goes through the encoder)


def judge_files(manifest: Manifest, column: str, rows: np.ndarray, kind: str, suffixes: list[str]
           ) -> tuple[str, str, dict[str, Any]]:
    """What a column of ``kind`` files is, judged on the first ones that can be read among those
    of ``rows`` (spread over the manifest)."""
    named = "/".join(suffixes)
    paths = [p for p in manifest.resolve_all(manifest.take(column, rows)) if p is not None]
    found = [p for p in paths if os.path.isfile(p) or os.path.isdir(p)]
    absent = f"; {len(paths) - len(found)} of the {len(paths)} looked at not found" if len(found) < len(paths) else ""
    if not found:
        return "skipped", f"{named} paths, none of the {len(paths)} looked at found (relative to {manifest.root})", {}
    if kind == "video" and any(word in column.lower() for word in ("audio", "sound", "speech", "voice")):
        kind, named = "track", f"{named} files' sound tracks (by the column's name):"
    reader = {"image": _image_settings, "audio": _audio_settings, "array": _array_settings,
              "video": _video_settings, "track": _track_settings}[kind]
    sampled = found if kind in ("audio", "track") else found[:SAMPLE_FILES]  # headers are cheap: every length counts
    if kind == "audio":  # a .npy of samples states no rate: the files that do, first and alone counted
        found = sorted(found, key=lambda p: p.lower().endswith(".npy"))
        sampled = [p for p in found if not p.lower().endswith(".npy")]
    reasons = []
    for path in found[:SAMPLE_FILES]:
        try:
            became, settings = reader(path, sampled)
        except READ_ERRORS as err:
            reasons.append(str(err))
            continue
        read = 1 if kind == "video" else len(sampled)  # one video's first frame is decoded
        said = _described(became, settings.pop("colour_why", None), settings["preprocess"], read)
        wide = settings.pop("wide", None)
        if wide:
            said += f"; {_wide_note(wide, read)}"
        return became, f"{named} {said}{absent}", settings
    return "skipped", f"{named} files, none of the first {len(reasons)} readable ({reasons[0]})", {}


def _described(kind: str, colour_why: str | None, preprocess: dict[str, Any], looked_at: int) -> str:
    """The settings read from the files, in words (``images, 28 px grey``), with why the colour
    is what it is where the files' modes alone would not say (``colour_why``)."""
    if kind in ("image", "video"):
        said = f"{kind}s, {preprocess['size']} px {'grey' if preprocess['color'] == 'gray' else 'colour'}"
        if colour_why is not None:
            said += f" ({colour_why})"
        if kind == "image" and preprocess["size"] > FLATTEN_MAX_SIDE:
            said += (f"; over {FLATTEN_MAX_SIDE} px: encoder cnn with 3 stages and pool: avg (the feature map's "
                     "mean: weights that do not grow with the image)")
        return said
    if kind == "audio":
        return (f"audio, {preprocess['sample_rate'] / 1000:g} kHz, up to {preprocess['max_seconds']:g} s in the "
                f"{looked_at} file(s) read")
    read = f"signals of up to {preprocess['length']:,} samples in the {looked_at} file(s) read"
    if "spectrogram" in preprocess:
        read += (f"; long windows: read as log power spectrograms (n_fft {preprocess['spectrogram']['n_fft']}): a few "
                 "frames of frequencies in place of every sample, as fine and much faster to learn from")
    return read


def _image_settings(path: str, paths: list[str]) -> tuple[str, dict[str, Any]]:
    """The largest side (at most :data:`MAX_IMAGE_SIDE`) among ``paths``; ``gray`` when every one
    read is grey in content (:func:`~polymodal.utils.images.grey_image`: a mode of one channel, or
    colour channels within :data:`~polymodal.utils.images.GREY_LEVELS` of each other), else ``rgb``."""
    from PIL import Image

    sides: list[int] = []
    stored_in_colour, coloured = [], []  # the files read in a colour mode; those holding colour
    wide = []  # those stored wider than 8 bits
    for other in dict.fromkeys([path, *paths]):  # ``path`` first, once
        try:
            with Image.open(other) as image:
                side, grey, mode = max(image.size), grey_image(image), image.mode if colour_mode(image) else None
                wide += [other] if wider_than_8_bits(image) else []
        except (OSError, ValueError):  # reported when the manifest is encoded
            if other == path:
                raise
            continue
        sides.append(side)
        stored_in_colour += [mode] if mode is not None else []
        coloured += [] if grey else [other]
    color = "rgb" if coloured else "gray"
    size = int(min(max(sides), MAX_IMAGE_SIDE))
    settings: dict[str, Any] = {"preprocess": {"size": size, "color": color, "normalize": "standard"},
                                "colour_why": _colour_why(len(sides), stored_in_colour, coloured), "wide": wide}
    if size > FLATTEN_MAX_SIDE:  # the default cnn's flattened map would make millions of weights
        settings["encoder"] = dict(LARGE_IMAGE_CNN)
    return "image", settings


def _wide_note(wide: list[str], read: int) -> str:
    """What becomes of images stored wider than 8 bits (``wide``: their paths), and the setting
    that keeps their brightness."""
    return (f"{len(wide)} of the {read} read are stored wider than 8 bits (such as {os.path.basename(wide[0])}): "
            "each is scaled by its own maximum; to keep every image's absolute brightness, set preprocess.value_range "
            "to the values that read as black and white (e.g. [0, 4095] for 12-bit scans)")


def _colour_why(read: int, stored_in_colour: list[str], coloured: list[str]) -> str | None:
    """Why images are grey or colour where their modes alone would not say (None: they do): some
    of those ``read`` hold colour (``coloured``: their paths), or all are grey though some are
    stored in a colour mode (``stored_in_colour``: their modes)."""
    if coloured:
        return None if len(coloured) == read else \
            f"{len(coloured)} of the {read} read hold colour, such as {os.path.basename(coloured[0])}"
    if not stored_in_colour:
        return None
    return (f"every one of the {read} read is grey in content, including {len(stored_in_colour)} stored as "
            f"{'/'.join(sorted(set(stored_in_colour)))}: each pixel's three colour channels within {GREY_LEVELS} "
            "levels of each other")


def _video_settings(path: str, paths: list[str]) -> tuple[str, dict[str, Any]]:
    """The first video's frame size (at most :data:`MAX_VIDEO_SIDE`) and whether its first frame
    is grey (:func:`~polymodal.utils.images.grey_pixels`: its three colour channels within
    :data:`~polymodal.utils.images.GREY_LEVELS` levels of each other, as images are judged)."""
    with import_av().open(path) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream)).to_ndarray(format="rgb24").astype(np.int16)
        side = max(stream.width, stream.height)
    grey = grey_pixels(frame)
    return "video", {"preprocess": {"size": int(min(side, MAX_VIDEO_SIDE)), "color": "gray" if grey else "rgb",
                                    "normalize": "standard"}}


def _track_settings(path: str, paths: list[str]) -> tuple[str, dict[str, Any]]:
    """The audio track of the first video: its sample rate (at most 16 kHz); the longest track
    among ``paths`` (at most 10 s; a container's header says, nothing is decoded)."""
    rate, _, _ = _track_header(path)
    if rate is None:
        raise ValueError(f"{path} has no audio track")
    headers = []
    for other in paths:
        try:
            headers.append(_track_header(other))
        except READ_ERRORS:  # reported when the manifest is encoded
            continue
    return "audio", {"preprocess": _track_preprocess(rate, headers)}


def judge_sound(manifest: Manifest, column: str, rows: np.ndarray, suffixes: list[str]
                ) -> tuple[str, dict[str, Any]] | None:
    """Whether a video column's files at ``rows`` hold sound tracks, which an ``audio`` modality on
    the same column reads: (why, its settings: the highest track rate, at most 16 kHz, and the
    longest track, at most 10 s, from every readable header), or None where none of them holds one.
    Videos without a track are counted in ``why``: their rows read the audio modality as absent."""
    paths = [p for p in manifest.resolve_all(manifest.take(column, rows)) if p is not None and os.path.isfile(p)]
    headers, silent, unread = [], [], 0
    for path in paths:  # one header each (video_io.has_audio_track's test, with the rate and length)
        try:
            header = _track_header(path)
        except READ_ERRORS:  # reported when the manifest is encoded
            unread += 1
            continue
        if header[0] is None:
            silent.append(path)
        else:
            headers.append(header)
    if not headers:
        return None
    rates = [rate for rate, _, _ in headers]
    preprocess = _track_preprocess(max(rates), headers)
    read = len(rates) + len(silent)
    why = (f"{'/'.join(suffixes)} files' sound tracks (read from the same column): audio, "
           f"{preprocess['sample_rate'] / 1000:g} kHz, up to {preprocess['max_seconds']:g} s in the {read} file(s) read")
    if silent:
        why += (f"; {len(silent)} of the {read} hold no audio track, such as {os.path.basename(silent[0])}: their "
                "rows read this audio modality as absent")
    if unread:
        why += f"; {unread} more unreadable"
    return why, {"preprocess": preprocess}


MAX_TRACK_SECONDS = 10.0  # the longest max_seconds config init proposes for sound tracks (a CPU-sized start)


def _track_preprocess(rate: int, headers: list[tuple[int | None, float | None, float]]) -> dict[str, Any]:
    """An audio modality's settings for sound tracks (``headers``: :func:`_track_header`'s): at most
    16 kHz (``rate``); ``max_seconds`` the longest known track (at most 10 s; 10 s where no header
    tells a length, as a browser's MediaRecorder WebM does not), at least 0.1 s, plus one codec
    frame, rounded up to the hundredth."""
    known = [seconds for _, seconds, _ in headers if seconds]
    longest = min(MAX_TRACK_SECONDS, max(known)) if known else MAX_TRACK_SECONDS
    frame = max((frame for _, _, frame in headers), default=0.0)
    return {"sample_rate": min(16_000, rate), "max_seconds": math.ceil(100 * (max(longest, 0.1) + frame)) / 100}


def _track_header(path: str) -> tuple[int | None, float | None, float]:
    """A video's sound track: its sample rate (None: it has none), its length in seconds (None:
    no header tells it) and one codec frame's seconds: a decoded track runs on to its last frame's
    end (AAC pads 4,000 samples to 4,096), which a ``max_seconds`` of the header's length alone
    would cut, with a warning, on every row.

    Raises:
        ValueError: the container cannot be read (FFmpeg's reason), or its track states no rate.
    """
    av = import_av()
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                return None, None, 0.0
            stream = container.streams.audio[0]
            if not stream.rate:
                raise ValueError(f"{path}: its audio track states no sample rate")
            seconds = (float(stream.duration * stream.time_base) if stream.duration
                       else container.duration / 1e6 if container.duration else None)
            return int(stream.rate), seconds, (stream.codec_context.frame_size or 0) / stream.rate
    except av.FFmpegError as err:  # not every one is an OSError or a ValueError
        raise ValueError(f"{path}: {err}") from None


def _audio_settings(path: str, paths: list[str]) -> tuple[str, dict[str, Any]]:
    """The highest sample rate (at most 16 kHz) and the longest clip (at most 10 s) of ``paths``
    (``path``: refused when a ``.npy`` array of samples, which states no rate)."""
    import soundfile

    if path.lower().endswith(".npy"):
        raise ValueError(f"{path}: a .npy array of samples states no sample rate")
    infos = [soundfile.info(path)]
    for other in paths:
        try:
            infos.append(soundfile.info(other))
        except (RuntimeError, soundfile.LibsndfileError):  # reported when the manifest is encoded
            continue
    rate = int(min(16_000, max(i.samplerate for i in infos)))
    seconds = min(10.0, max(i.duration for i in infos))
    return "audio", {"preprocess": {"sample_rate": rate, "max_seconds": round(max(seconds, 0.1), 2)}}


def _array_settings(path: str, paths: list[str]) -> tuple[str, dict[str, Any]]:
    """A ``.npy`` picture ((H, W) both above 16 and at most 4 times as long one way as the other,
    or (H, W, 1|3|4)) is an image; any other array a signal as long as the longest of ``paths``."""
    from polymodal.data.modalities.signal import read_signal
    from polymodal.errors import DecodeError

    if path.lower().endswith(".npy"):
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        picture = (len(shape) == 2 and min(shape) > 16 and max(shape) <= 4 * min(shape)) or \
            (len(shape) == 3 and shape[-1] in (1, 3, 4) and min(shape[:2]) > 16)
        if picture:
            color = "rgb" if len(shape) == 3 and shape[-1] > 1 and not _grey_arrays(path, paths) else "gray"
            return "image", {"preprocess": {"size": int(min(max(shape[:2]), MAX_IMAGE_SIDE)), "color": color,
                                            "normalize": "standard"}}
    try:
        lengths = [read_signal(path).shape[-1]]
    except DecodeError as err:
        raise ValueError(err.reason) from None
    for other in paths:
        try:
            lengths.append(read_signal(other).shape[-1])
        except DecodeError:  # reported when the manifest is encoded
            continue
    length = int(max(lengths))
    if length < SPECTROGRAM_FROM:
        return "signal", {"preprocess": {"length": length}}
    n_fft = 256 if length >= 2 * SPECTROGRAM_FROM else 128  # 15 frames or more, half-overlapped
    return "signal", {"preprocess": {"length": length, "spectrogram": {"n_fft": n_fft, "hop": n_fft // 2}}}


def _grey_arrays(path: str, paths: list[str]) -> bool:
    """Whether ``.npy`` pictures (H, W, 3|4) are all grey in content, as image files are judged
    (:func:`~polymodal.utils.images.grey_pixels`, on the pixels training reads)."""
    for other in dict.fromkeys([path, *paths]):
        try:
            pixels = image_array(np.load(other, allow_pickle=False), other)
        except (OSError, ValueError):  # reported when the manifest is encoded (a DecodeError is a ValueError)
            if other == path:
                raise
            continue
        if pixels.ndim == 3 and not grey_pixels(pixels):
            return False
    return True
