"""16-bit PCM WAV read with the standard library and one ``frombuffer``: the fast path shared by
training-time audio and signal decoding and the torch-free deployment runtime (about 3x faster than
libsndfile for short clips), the check that a WAV file holds the frames its header declares
(libsndfile, like the standard library, reads a truncated data chunk as a shorter clip), and
:func:`read_sound`, which reads any audio-format file (WAV, FLAC, OGG) with every channel kept."""

from __future__ import annotations

import math
import os
import struct
import wave
from typing import BinaryIO

import numpy as np

from polymodal.errors import DecodeError, MissingDependencyError, OversizedInputError

# Streaming writers that cannot seek back leave a placeholder data size: 0xFFFFFFFF (ffmpeg),
# 0x7FFFFFFF or just under it (arecord, sox), or 0. A declared size from here up is read as
# unknown (its whole frames are used) rather than as a truncated file: real WAV data of 2 GiB
# or more is rare, and what it would miss is only a truncated copy of one.
STREAMED_AT = 0x7FFF0000


def size_unknown(declared_bytes: int) -> bool:
    """Whether a WAV data chunk's declared size is a streaming writer's placeholder."""
    return declared_bytes == 0 or declared_bytes >= STREAMED_AT


# the note on a clip that holds one value throughout, in training's warning and the runtime's notes
SILENT_NOTE = "the audio is silent (one value throughout): a muted or disconnected microphone?"


class TruncatedAudioError(DecodeError):
    """An audio file that holds fewer frames than its header declares (a truncated copy or upload)."""


def truncation_reason(declared: int, held: int) -> str:
    """The message of a WAV file whose data chunk holds fewer frames than its header declares."""
    return f"truncated WAV: header declares {declared} frames, the file holds {held}"


def read_pcm_wav(source: str | BinaryIO, *, mono: bool = True) -> tuple[np.ndarray, int] | None:
    """Float32 samples in [-1, 1) and sample rate of a 16-bit PCM WAV (a path or a binary file
    object): a mono waveform (N,), the channels averaged (audio), or with ``mono`` False every
    channel, (channels, N) (signals), the values libsndfile reads (each sample / 32768).

    Returns:
        None when the file is not plain 16-bit PCM WAV (float, 24-bit, WAVE_FORMAT_EXTENSIBLE, a
        chunk past the end, no whole frame): libsndfile may still read it.

    Raises:
        OSError: the file cannot be opened or read.
        DecodeError: a data chunk shorter than its header declares (a truncated file).
    """
    try:
        with wave.open(source, "rb") as handle:
            if handle.getsampwidth() != 2 or handle.getcomptype() != "NONE":
                return None
            channels, rate, declared = handle.getnchannels(), handle.getframerate(), handle.getnframes()
            raw = handle.readframes(declared)
    except (wave.Error, EOFError, RuntimeError):  # RuntimeError: a chunk past the end
        return None
    held = len(raw) // (2 * channels)
    if held < declared and not size_unknown(declared * 2 * channels):
        # the standard library stops at the RIFF size (bytes 4-8), which some writers understate:
        # the data chunk is only truncated when it runs past the end of the file itself
        raw = _data_chunk_bytes(source) or raw
        held = len(raw) // (2 * channels)
        if held < declared:
            raise TruncatedAudioError(truncation_reason(declared, held),
                                      path=source if isinstance(source, str) else None)
    raw = raw[:held * 2 * channels]  # whole frames (a streamed file of unknown size)
    if not raw:
        return None
    data = np.frombuffer(raw, "<i2")
    if not mono:  # (frames, channels) interleaved -> (channels, frames)
        return np.ascontiguousarray(data.reshape(-1, channels).T, np.float32) * np.float32(1 / 32768), rate
    mixed = data.reshape(-1, channels).mean(axis=1, dtype=np.float32) if channels > 1 else data.astype(np.float32)
    return mixed * np.float32(1 / 32768), rate


# libsndfile formats whose frame count is estimated (an MP3 without a Xing/Info header: from its
# size and bit rate), so fewer frames read is not truncation
ESTIMATED_LENGTH_FORMATS = frozenset({"MP3", "MPEG"})  # soundfile names MPEG Layer III "MP3"


def read_sound(source: str | BinaryIO, *, mono: bool = True, max_seconds: float | None = None,
               max_values: int | None = None) -> tuple[np.ndarray, int]:
    """Samples and sample rate of an audio-format file (a path or a binary file object): 16-bit PCM
    WAV with the standard library (:func:`read_pcm_wav`), anything else libsndfile reads (WAV of
    other encodings, FLAC, OGG) with ``soundfile``, the same float32 values either way; a file
    that holds fewer frames than its header declares is refused.

    Args:
        mono: average the channels into one waveform; False keeps every channel.
        max_seconds: libsndfile decodes no further than one frame past this (a compressed upload
            cannot expand into gigabytes; a 16-bit WAV is no larger decoded than sent).
        max_values: with ``max_seconds``, refuse a compressed file whose rate and channels would
            decode past this many samples over ``max_seconds`` (a small FLAC of silence at 655
            kHz and 8 channels), read from its header before anything is decoded.

    Returns:
        float32 samples, (N,) mono or (channels, N), possibly empty; the rate the header declares.

    Raises:
        OSError: the file cannot be opened or read.
        DecodeError: (naming ``source`` when it is a path) a file libsndfile cannot read (corrupt,
            a header without a data chunk, not an audio format it knows), or a truncated one
            (:class:`TruncatedAudioError`).
        MissingDependencyError: the file is not 16-bit PCM WAV and ``soundfile`` is not installed.
    """
    path = source if isinstance(source, str) else None
    fast = read_pcm_wav(source, mono=mono)
    if fast is not None:
        return fast
    try:
        import soundfile
    except ImportError:
        raise MissingDependencyError("soundfile", "decoding audio other than 16-bit PCM WAV") from None
    try:
        declared = wav_frames(source)  # libsndfile clips a truncated WAV's frame count silently
        if path is None:
            source.seek(0)
        with soundfile.SoundFile(source) as handle:
            frames, rate, fmt = handle.frames, handle.samplerate, handle.format
            capped = max_seconds is not None and rate > 0
            if capped and max_values is not None:
                decoded = min(frames, math.floor(max_seconds * rate) + 1) * handle.channels
                if decoded > max_values:
                    raise OversizedInputError(
                        f"the audio is {rate:,} Hz x {handle.channels} channel(s): {decoded:,} samples to decode, "
                        f"more than the {max_values:,} allowed (a rate of at most {max_values // max(1, handle.channels) / max_seconds:,.0f} Hz "
                        f"for {handle.channels} channel(s) over {max_seconds:g} s)", measure="samples", path=path)
            # libsndfile reads a format it cannot seek in (GSM 6.10, G.721 WAV) only a given count of frames
            count = math.floor(max_seconds * rate) + 1 if capped else -1 if handle.seekable() else frames
            samples = handle.read(frames=count, dtype="float32", always_2d=True)  # (N, channels)
    # TypeError: a file object of no known format; ValueError: what libsndfile cannot read as asked
    except OversizedInputError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        # libsndfile's own words, without its "Error opening <_io.BytesIO object at 0x...>: "
        said = getattr(err, "error_string", None) or str(err)
        raise DecodeError(f"unreadable or corrupt audio ({said})", path=path) from None
    if declared is not None and declared[1] < declared[0]:
        raise TruncatedAudioError(truncation_reason(*declared), path=path)
    if samples.shape[0] < min(frames, count if capped else frames) and fmt not in ESTIMATED_LENGTH_FORMATS:
        raise TruncatedAudioError(f"truncated audio: header declares {frames} frames, the file holds {samples.shape[0]}",
                          path=path)
    return (samples.mean(axis=1) if mono else np.ascontiguousarray(samples.T)), int(rate)


def wav_frames(source: str | BinaryIO) -> tuple[int, int] | None:
    """(frames the header declares, whole frames the file holds) of a RIFF/WAVE file, read from its
    ``fmt `` and ``data`` chunk headers alone.

    Returns:
        None when the file is not RIFF/WAVE, its chunks cannot be walked up to ``data``, or the
        data size is a streaming writer's placeholder (:func:`size_unknown`): the decoder judges those.

    Raises:
        OSError: the file cannot be opened or read.
    """
    if not isinstance(source, str):  # bytes in memory (an upload)
        return _wav_frames(source, source.seek(0, os.SEEK_END))
    with open(source, "rb") as handle:
        return _wav_frames(handle, os.path.getsize(source))


def _wav_frames(handle: BinaryIO, size: int) -> tuple[int, int] | None:
    """:func:`wav_frames` of an open file of ``size`` bytes."""
    found = _data_chunk(handle, size)
    if found is None:
        return None
    start, declared, block_align = found
    if not block_align or size_unknown(declared):
        return None
    held = min(declared, size - start)
    return declared // block_align, held // block_align


def _data_chunk_bytes(source: str | BinaryIO) -> bytes | None:
    """The bytes of a WAV file's data chunk, as many of its declared size as the file holds,
    found by walking the chunks up to the file's real end (whatever its RIFF size says); None
    when they cannot be walked to a data chunk."""
    if not isinstance(source, str):
        return _read_data_chunk(source, source.seek(0, os.SEEK_END))
    with open(source, "rb") as handle:
        return _read_data_chunk(handle, os.path.getsize(source))


def _read_data_chunk(handle: BinaryIO, size: int) -> bytes | None:
    """:func:`_data_chunk_bytes` of an open file of ``size`` bytes."""
    found = _data_chunk(handle, size)
    if found is None:
        return None
    start, declared, _ = found
    handle.seek(start)
    return handle.read(min(declared, size - start))


def _data_chunk(handle: BinaryIO, size: int) -> tuple[int, int, int | None] | None:
    """(offset of the data, declared data bytes, the ``fmt `` chunk's block align, None when no
    ``fmt `` chunk comes first) of a RIFF/WAVE file of ``size`` bytes, walking its chunk headers
    up to ``data``; None when it is not RIFF/WAVE or the walk ends before a data chunk."""
    block_align = None
    handle.seek(0)
    head = handle.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= size:
        handle.seek(offset)
        chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
        if chunk_id == b"fmt ":
            fmt = handle.read(14)
            if len(fmt) < 14:
                return None
            block_align = struct.unpack("<H", fmt[12:14])[0]
        elif chunk_id == b"data":
            return offset + 8, chunk_size, block_align
        offset += 8 + chunk_size + chunk_size % 2  # chunks are padded to an even size
    return None


def mono_samples(array: np.ndarray) -> np.ndarray:
    """Samples as float32 mono: integer PCM scaled onto [-1, 1) as a WAV file of them reads
    (unsigned centred on half its range), and a 2-D (samples, channels) or (channels, samples)
    array averaged over its short axis, the channels."""
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        half = (int(info.max) - int(info.min) + 1) / 2
        array = (array.astype(np.float64) - (int(info.min) + half)) / half
    wave = np.asarray(array, np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1 if wave.shape[0] > wave.shape[1] else 0)
    return wave
