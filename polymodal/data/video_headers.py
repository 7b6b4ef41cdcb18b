"""What a video container's header promises (its frame count, its duration) and the check that
decoding delivered it: a truncated AVI or WebM decodes as a shorter clip without an error, so
the frames read are compared with the header once the stream has ended."""

from __future__ import annotations

import re
from typing import Any

from polymodal.errors import DecodeError


def reported_frames(stream: Any) -> int:
    """The frame count in the stream's header (0 when it has none: webm, mkv)."""
    return int(stream.frames)


TRUNCATION_TOLERANCE = 0.05  # of the header's duration (and at least two frames): edit lists, rounding


def _tag_seconds(stream: Any) -> float | None:
    """A Matroska / WebM track's ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``, written by FFmpeg and
    mkvmerge) in seconds; None without one."""
    for key, value in stream.metadata.items():
        match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", str(value).strip())
        if key.upper().startswith("DURATION") and match:
            hours, minutes, seconds = match.groups()
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def header_seconds(container: Any, stream: Any) -> float | None:
    """How long the header says the video stream lasts: the shortest of its frame count over its
    average rate (mp4, mov, avi), its own duration and its ``DURATION`` tag (mkv, webm); the
    container's duration only where the video is its one stream (an audio track may outlast it).
    None when nothing says (a webm from a browser's MediaRecorder)."""
    spans = []
    frames, rate = reported_frames(stream), stream.average_rate
    if frames and rate:
        spans.append(frames / float(rate))
    if stream.duration and stream.time_base:
        spans.append(float(stream.duration * stream.time_base))
    tag = _tag_seconds(stream)
    if tag:
        spans.append(tag)
    if not spans and len(container.streams) == 1 and container.duration:
        spans.append(container.duration / 1_000_000)  # AV_TIME_BASE
    return min(spans) if spans else None


def check_complete(container: Any, stream: Any, seen: int, first: int, last: int, path: str,
                    held: int | None = None) -> None:
    """Refuse a stream that ended well short of its header: decoded frames that cover less of the
    header's duration than it says, by more than ``TRUNCATION_TOLERANCE`` of it and two frames,
    and (where the header counts its frames) fewer frames than it counts. A truncated AVI or WebM
    decodes as a shorter clip without an error (a half AVI often as its first frame alone).

    A header count the frames do not reach with the clip's time covered is not truncation: an edit
    list's trimmed lead-in, an AVI's empty chunks for dropped frames. The last frame covers its
    own duration (``held``, stream ticks) where the container gives one: a recording that ends on
    a still frame shown for seconds is whole.
    """
    expected = header_seconds(container, stream)
    reported = reported_frames(stream)
    if expected is None or (reported and seen >= reported):
        return
    tick = float(stream.time_base)
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    interval = (last - first) * tick / (seen - 1) if seen > 1 else (1 / rate if rate else 0.0)
    if interval <= 0:  # every frame stamped alike: the stamps say nothing about time covered
        return
    start = stream.start_time if stream.start_time is not None else first
    covered = (last - start) * tick + (held * tick if held and held > 0 else interval)
    if expected - covered <= max(2 * interval, TRUNCATION_TOLERANCE * expected):
        return
    total = f"{reported:,}" if reported else f"about {round(expected / interval):,}"
    raise DecodeError(f"stream ended after {seen:,} of {total} frames ({covered:.2f} s of at least {expected:.2f} s; "
                      "truncated?)", path=path)
