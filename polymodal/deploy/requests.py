"""Turn an HTTP request body into one runtime row, enforcing the service's limits (``read_row``
reads the body; ``RequestParser`` checks its values).

Two body formats carry the same inputs (any subset of the model's modalities; a plain
``application/x-www-form-urlencoded`` form works like multipart for text and tabular fields):

- ``multipart/form-data``: one file per image / audio / signal / video modality (field = modality name),
  a form field per text modality (field = modality name) and per tabular column (field = column).
  A signal file is a ``.npy`` array, a CSV file (UTF-8 text, one column per channel) or a WAV file
  (every channel kept), told apart by content whatever the part's content type says (``text/csv``,
  ``application/octet-stream``).
  A video is a container (MP4/MOV, WebM/MKV, AVI, MPEG-PS) or a ``.npy`` clip; an audio modality
  takes a container too and reads its sound track (where PyAV is installed), or a ``.npy`` of
  samples at the model's rate, as training reads one.
- ``application/json``: ``{"<image modality>": "<base64 file>", "<text modality>": "text",
  "<tabular modality>": {"<column>": value}}``. The base64 may be line-wrapped (whitespace is
  ignored, as MIME and ``base64.encodebytes`` wrap it) and may carry a ``data:<type>;base64,``
  prefix (a data URL, as ``FileReader.readAsDataURL`` gives). A signal may instead be its samples
  inline, ``{"<signal modality>": [0.1, 0.2, ...]}`` or one list per channel, laid out as a
  ``.npy`` array of that shape is.

As in a manifest, an empty value is a missing modality: blank text, a table whose cells are all
empty, an empty file (a zero-byte part, which is also what an HTML file input sends when no file
is chosen) or an empty base64 string. An empty file that was sent (a named zero-byte part, an empty
base64 string) is named in the answer's ``warnings``, since a file that arrived empty is more
often a fault (a recording cut off, a copy that failed) than a choice.

Every problem raises :class:`~polymodal.deploy.errors.RequestError` with its HTTP status: 400
malformed body, 413 over a limit, 415 unsupported file type, 422 unusable or missing values.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import reprlib
import wave
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from polymodal.deploy.errors import RequestError, content_start
from polymodal.deploy.features import (
    NPY_MAGIC,
    audio_seconds,
    read_wav,
    video_container,
)
from polymodal.deploy.features.signatures import FILE_KINDS, accepted_types, file_type, looks_like
from polymodal.deploy.runtime import Runtime, given
from polymodal.deploy.settings import ServeSettings
from polymodal.utils.suggest import did_you_mean


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when it names a key twice (JSON would keep the last silently), as a
    multipart body naming a field twice is."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise RequestError(f"field {key!r} is given twice in the JSON body; give it once", status=422,
                               code="duplicate_field", field=key)
        seen[key] = value
    return seen


def empty_upload(name: str) -> str:
    """The warning for a file sent empty, read as an absent modality."""
    return f"the upload for '{name}' is empty (0 bytes): read as absent"


@dataclass
class ParsedBody:
    """What a request body gave: the runtime row, and what to tell the caller about how it was read."""

    row: dict[str, Any]
    warnings: list[str] = dataclass_field(default_factory=list)  # e.g. an empty upload read as an absent modality


def undecodable_field(field: str, charset: str) -> RequestError:
    """The error for a form field whose bytes are not text in the body's charset."""
    return RequestError(f"form field '{field}' is not valid {charset} text; send text and tabular fields "
                        f"{charset}-encoded", status=422, code="bad_encoding", field=field)


class RequestParser:
    """Validates request inputs against a runtime's modalities and the service's limits."""

    def __init__(self, runtime: Runtime, settings: ServeSettings):
        self.runtime = runtime
        self.settings = settings
        self.kinds = {name: spec["kind"] for name, spec in runtime.meta["modalities"].items()}
        self.columns = {c: name for name, spec in runtime.meta["modalities"].items() if spec["kind"] == "tabular"
                        for c in [*spec["columns"], *spec["categorical"]]}
        for name, kind in self.kinds.items():  # clips are held to the service's limits as they are read
            if kind == "video":
                runtime.features[name].limit(settings.max_video_frames, settings.max_image_pixels)

    # -- bodies -------------------------------------------------------------------------------
    def from_json(self, body: bytes) -> ParsedBody:
        try:
            data = json.loads(body, object_pairs_hook=_no_repeated_keys)
        except RequestError:
            raise
        except ValueError as err:  # not JSON, not UTF-8, or an integer past Python's 4,300 digits
            raise RequestError(f"the body is not valid JSON ({err})", code="malformed_body") from None
        except RecursionError:
            raise RequestError("the JSON body is nested too deeply; send an object keyed by modality",
                               code="malformed_body") from None
        if not isinstance(data, dict):
            raise RequestError(f"the JSON body must be an object keyed by modality {sorted(self.kinds)}; "
                               f"got {type(data).__name__}", status=422, code="malformed_body")
        row: dict[str, Any] = {}
        empty: list[str] = []
        for name, value in data.items():
            kind = self._kind(name)
            if value is None:
                continue
            if kind == "signal" and isinstance(value, list):  # samples inline: one list, or one per channel
                row[name] = self.samples(name, value)
            elif kind in FILE_KINDS:
                data = self._base64(name, value)
                if data:  # "" is an empty file: a missing modality, as blank text is, named in a warning
                    row[name] = self.file(name, data)
                else:
                    empty.append(name)
            elif kind == "text":
                row[name] = self.text(name, value)
            else:
                row[name] = self.tabular(name, value)
        return self.finish(row, empty)

    def from_form(self, form: Mapping[str, list[Any]]) -> ParsedBody:
        """``form``: field name -> its values (strings, or uploads with ``.file`` / ``.filename``)."""
        row: dict[str, Any] = {}
        empty: list[str] = []
        for field, values in form.items():
            if len(values) != 1:
                raise RequestError(f"field '{field}' was sent {len(values)} times; send it once", status=422,
                                   code="duplicate_field", field=field)
            value = values[0]
            if field in self.columns:
                if not isinstance(value, str):
                    raise RequestError(f"tabular column '{field}' must be a form field, not a file", status=422,
                                       code="bad_input", field=field)
                row.setdefault(self.columns[field], {})[field] = value if value.strip() else None
                continue
            kind = self._kind(field)
            if kind in FILE_KINDS:
                if isinstance(value, str):
                    if not value.strip():  # an empty field: a missing modality
                        continue
                    raise RequestError(f"modality '{field}' ({kind}) must be sent as a file upload; got a text field",
                                       status=422, code="bad_input", field=field)
                data = value.file.read()
                if data:
                    row[field] = self.file(field, data)
                elif value.filename:  # a named file sent empty: a missing modality, named in a warning
                    empty.append(field)  # (a part without a file name is an HTML file input left unchosen)
            elif kind == "text":
                if not isinstance(value, str):
                    raise RequestError(f"text modality '{field}' must be a form field, not a file", status=422,
                                       code="bad_input", field=field)
                if value.strip():
                    row[field] = self.text(field, value)
            else:
                raise RequestError(f"tabular modality '{field}' is sent as one form field per column "
                                   f"{sorted(c for c, n in self.columns.items() if n == field)}", status=422,
                                   code="unknown_field", field=field)
        for name, values in list(row.items()):
            if self.kinds[name] == "tabular":
                row[name] = self.tabular(name, values)
        return self.finish(row, empty)

    def finish(self, row: dict[str, Any], empty: list[str]) -> ParsedBody:
        """The row of the modalities given (``empty``: file modalities sent as empty files)."""
        row = {name: value for name, value in row.items() if given(value)}  # blank text, empty tables: missing
        warnings = [empty_upload(name) for name in empty]
        if not row:
            said = f" ({'; '.join(warnings)})" if warnings else ""
            raise RequestError(f"no input given{said}; send at least one of the modalities {sorted(self.kinds)} "
                               "(see GET /metadata)", status=422, code="missing_input")
        return ParsedBody(row, warnings)

    # -- values -------------------------------------------------------------------------------
    def _kind(self, name: str) -> str:
        if name in self.columns and name not in self.kinds:  # a table's column sent on its own in JSON
            table = self.columns[name]
            raise RequestError(f"'{name}' is a column of tabular modality '{table}': send it inside that "
                               f"modality, {{\"{table}\": {{\"{name}\": ...}}}}", status=422, code="unknown_field",
                               field=name)
        if name not in self.kinds:
            allowed = f"the modalities {sorted(self.kinds)}"
            if self.columns:
                allowed += (f" and its tables' columns {sorted(self.columns)} (form fields of their own; in JSON, "
                            "inside their table's object)")
            hint = "; the output /explain attributes is chosen in the query: POST /explain?output=NAME" \
                if name == "output" else ""
            meant = did_you_mean(name, [*self.kinds, *self.columns])
            raise RequestError(f"unknown field '{name}'{meant}; this model accepts {allowed}{hint}", status=422,
                               code="unknown_field", field=name)
        return self.kinds[name]

    @staticmethod
    def _base64(name: str, value: Any) -> bytes:
        """A JSON file value's bytes: standard base64, whitespace (line breaks) ignored, optionally
        after a ``data:<type>;base64,`` prefix."""
        if not isinstance(value, str):
            raise RequestError(f"modality '{name}' must be a base64 string in JSON; got {type(value).__name__}",
                               status=422, code="bad_input", field=name)
        payload = value
        if value[:5].lower() == "data:":
            header, comma, payload = value.partition(",")
            if not comma or not header.lower().rstrip().endswith(";base64"):
                raise RequestError(f"modality '{name}': a data URL must be base64-encoded, 'data:<type>;base64,"
                                   f"<data>'; got {header[:40]!r}", status=422, code="bad_base64", field=name)
        try:
            return base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"modality '{name}' is not valid base64: send the file's bytes as standard base64 "
                               "(A-Z, a-z, 0-9, '+', '/', '=' padding; spaces and line breaks are ignored), "
                               f"optionally after a 'data:<type>;base64,' prefix; got {len(value):,} characters "
                               f"starting {value[:20]!r}", status=422, code="bad_base64", field=name) from None

    def samples(self, name: str, value: list[Any]) -> np.ndarray:
        """A signal's samples sent inline in JSON, ``[x0, x1, ...]`` or one such list per channel
        (laid out as a ``.npy`` array of that shape is: ``preprocess.layout``), as an array; the
        request size bounds how many (a sample takes at least two bytes, ``0,``).

        Raises:
            RequestError: 422 for anything but numbers in one list or in lists of one length.
        """
        try:
            array = np.asarray(value)
        except (ValueError, OverflowError):  # lists of unequal lengths, or mixed with numbers
            array = None
        if array is None or array.dtype.kind not in "iuf" or array.ndim not in (1, 2):
            raise RequestError(f"modality '{name}' (signal): inline samples in JSON must be a list of numbers, or "
                               "one list of numbers per channel, all of one length (or the base64 of a "
                               f"{', '.join(accepted_types('signal'))} file); got {reprlib.repr(value)}", status=422,
                               code="bad_input", field=name)
        return array

    def file(self, name: str, data: bytes) -> Any:
        """Check a file's type and size limits; returns what the runtime decodes."""
        kind = self.kinds[name]
        found = file_type(kind, data)
        if found is None:
            seen = looks_like(data)  # a WAV sent to the image field: said, not left to the hex bytes
            said = "" if seen is None else f": it looks like {seen}, and field '{name}' takes {kind} files"
            raise RequestError(f"unsupported file type for {kind} modality '{name}'{said}; accepted: "
                               f"{', '.join(accepted_types(kind))}; got {len(data):,} bytes starting with {content_start(data)}",
                               status=415, code="unsupported_type", field=name)
        if kind == "image":
            self._check_pixels(name, data)
        elif kind == "audio":
            return self._audio(name, data)
        return data  # a video: its size limits are checked as it is decoded (VideoFeatures.limit)

    def _check_pixels(self, name: str, data: bytes) -> None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Image.DecompressionBombError as err:
            raise RequestError(f"image modality '{name}' refused as a decompression bomb ({err})", status=413,
                               code="too_many_pixels", field=name) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            reason = "not a recognised image" if isinstance(err, UnidentifiedImageError) else str(err)
            raise RequestError(f"image modality '{name}': unreadable image ({reason})", status=422,
                               code="corrupt_file", field=name) from None
        limit = self.settings.max_image_pixels
        if width * height > limit:
            raise RequestError(f"image modality '{name}' is {width}x{height} = {width * height:,} pixels; at most "
                               f"{limit:,} are allowed", status=413, code="too_many_pixels", field=name)

    def _too_long(self, name: str, what: str, seconds: float | None = None) -> RequestError:
        """The 413 for audio past ``--max-audio-seconds`` (``what``: the file or sound track, in words;
        ``seconds``: its length, where its header tells it), naming the option and how much of a
        clip the model reads."""
        limit = self.settings.max_audio_seconds
        reads = self.runtime.meta["modalities"][name]["preprocess"]["max_seconds"]
        length = f"lasts {seconds:.1f} s, more than" if seconds is not None else "is longer than"
        return RequestError(f"modality '{name}' (audio): {what} {length} the service's --max-audio-seconds "
                            f"({limit:g} s) (the model reads {reads:g} s of it)", status=413, code="too_long",
                            field=name)

    def _audio(self, name: str, data: bytes) -> tuple[Any, int] | bytes:
        limit = self.settings.max_audio_seconds
        if video_container(data) is not None:  # a video's sound track, decoded no further than the limit
            if not self.runtime.features[name].holds(data):  # no audio track: the modality absent, as in training
                return data
            try:
                samples, rate = self.runtime.features[name].sound_track(data, max_seconds=limit)
            except RequestError as err:
                if err.code == "too_long":
                    raise self._too_long(name, "the audio track") from None
                raise
            if samples.size == 0:
                raise RequestError(f"audio modality '{name}' holds no samples", status=422, code="empty_file", field=name)
            return samples, rate
        if data.startswith(NPY_MAGIC):  # samples at the model's rate, as training takes a .npy (no larger decoded)
            samples, rate = self.runtime.features[name].read(data)
        else:
            samples, rate = self._sound_file(name, data, limit)
        if rate <= 0 or samples.size == 0:
            raise RequestError(f"audio modality '{name}' holds no samples", status=422, code="empty_file", field=name)
        seconds = samples.size / rate
        if seconds > limit:
            declared = None if data.startswith(NPY_MAGIC) else audio_seconds(data)  # the header's, where it tells one
            raise self._too_long(name, "the audio", declared if declared is not None and declared > limit else None)
        return samples, rate

    def _sound_file(self, name: str, data: bytes, limit: float) -> tuple[np.ndarray, int]:
        """The mono samples and rate of an audio file (WAV, FLAC, OGG), decoded no further than ``limit`` s."""
        try:
            samples, rate = read_wav(data, max_seconds=limit)  # decoded no further than the limit
        except RequestError as err:
            if err.status != 413:
                raise RequestError(f"audio modality '{name}': unreadable audio ({err})", status=422,
                                   code="corrupt_file", field=name) from None
            raise RequestError(f"modality '{name}' (audio): {err.reason} (the service's --max-audio-seconds is "
                               f"{limit:g} s)", status=413, code="too_large", field=name) from None
        except (wave.Error, EOFError, ValueError) as err:
            raise RequestError(f"audio modality '{name}': unreadable audio ({err})", status=422, code="corrupt_file",
                               field=name) from None
        return samples, rate

    def text(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise RequestError(f"text modality '{name}' must be a string; got {type(value).__name__}", status=422,
                               code="bad_input", field=name)
        if len(value) > self.settings.max_text_chars:
            raise RequestError(f"text modality '{name}' has {len(value):,} characters; at most "
                               f"{self.settings.max_text_chars:,} are allowed", status=413, code="too_long", field=name)
        return value

    def tabular(self, name: str, value: Any) -> dict[str, Any]:
        spec = self.runtime.meta["modalities"][name]
        columns = [*spec["columns"], *spec["categorical"]]
        if not isinstance(value, dict):
            raise RequestError(f"tabular modality '{name}' must be an object of columns {columns}; got "
                               f"{type(value).__name__}", status=422, code="bad_input", field=name)
        features = self.runtime.features[name]
        features.check(value)  # columns the model does not have: the runtime's own rule
        for column, cell in value.items():
            if cell is not None and not isinstance(cell, int | float | str) or isinstance(cell, bool):
                raise RequestError(f"column '{column}' of '{name}' must be a number, a string or null; got "
                                   f"{type(cell).__name__}", status=422, code="bad_input", field=column)
            if isinstance(cell, str) and len(cell) > self.settings.max_text_chars:
                raise RequestError(f"column '{column}' of '{name}' is longer than {self.settings.max_text_chars:,} "
                                   "characters", status=413, code="too_long", field=column)
        features.decode(value)  # numbers that do not parse fail here, with the column named
        return value


@functools.cache
def strict_multipart_parser() -> type:
    """starlette's ``MultiPartParser``, recording what it lets pass: ``ended`` (False when the body
    stops before its closing boundary, whose parts starlette drops without a word),
    ``undecodable`` (form fields not valid in the body's ``charset``, which starlette would read
    as Latin-1) and ``unknown_charset`` (a ``charset`` parameter naming no codec, which starlette
    would also replace by Latin-1; the body is then not parsed)."""
    import codecs

    from starlette.formparsers import MultiPartParser, parse_options_header

    class StrictMultiPartParser(MultiPartParser):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.ended = False
            self.undecodable: list[str] = []
            self.unknown_charset: str | None = None

        async def parse(self) -> Any:
            charset = parse_options_header(self.headers.get("Content-Type", ""))[1].get(b"charset")
            if charset is not None:
                name = charset.decode("latin-1") if isinstance(charset, bytes) else str(charset)
                try:
                    codecs.lookup(name)
                except LookupError:
                    self.unknown_charset = name
                    return None
            return await super().parse()

        @property
        def charset(self) -> str:
            return self._charset or "utf-8"

        def on_part_end(self) -> None:
            part = self._current_part
            if part.file is None:
                try:
                    bytes(part.data).decode(self.charset)
                except UnicodeDecodeError:
                    self.undecodable.append(part.field_name)
            super().on_part_end()

        def on_end(self) -> None:
            self.ended = True
            super().on_end()

    return StrictMultiPartParser


async def read_row(request: Any, parser: RequestParser, settings: ServeSettings) -> ParsedBody:
    """One runtime row (and the warnings on how it was read) from a starlette request: the body read
    up to ``settings.max_request_bytes`` and parsed by its content type (JSON, multipart or a plain form)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.formparsers import MultiPartException

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.max_request_bytes:
        raise RequestError(f"the request body has {int(declared):,} bytes; at most {settings.max_request_bytes:,} "
                           f"({settings.max_request_bytes / 2**20:g} MiB) are allowed", status=413, code="too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.max_request_bytes:
            raise RequestError(f"the request body exceeds {settings.max_request_bytes:,} bytes "
                               f"({settings.max_request_bytes / 2**20:g} MiB)", status=413, code="too_large")
        chunks.append(chunk)
    body = b"".join(chunks)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        return await run_in_threadpool(parser.from_json, body)
    if kind == "multipart/form-data":
        async def replay() -> AsyncIterator[bytes]:
            yield body

        multipart = strict_multipart_parser()(request.headers, replay(), max_files=16, max_fields=256)
        try:
            form = await multipart.parse()
        except MultiPartException as err:
            raise RequestError(f"malformed multipart body ({err.message})", code="malformed_body") from None
        if multipart.unknown_charset is not None:
            raise RequestError(f"unknown charset {multipart.unknown_charset!r} in the Content-Type; send the "
                               "form UTF-8-encoded", status=415, code="unsupported_charset")
        if not multipart.ended or multipart.undecodable:
            await form.close()
            if not multipart.ended:
                raise RequestError("malformed multipart body (it ends before its closing boundary)",
                                   code="malformed_body")
            raise undecodable_field(multipart.undecodable[0], multipart.charset)
        fields: dict[str, list[Any]] = {}
        for key, value in form.multi_items():
            fields.setdefault(key, []).append(value)
        return await run_in_threadpool(parser.from_form, fields)
    if kind == "application/x-www-form-urlencoded":  # a plain HTML form: text and tabular fields only
        try:
            # surrogateescape keeps the bytes of a non-UTF-8 %XX escape, so the field can be named below
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                              max_num_fields=256, errors="surrogateescape")
        except (UnicodeDecodeError, ValueError) as err:
            raise RequestError(f"malformed form body ({err})", code="malformed_body") from None
        fields = {}
        for key, value in pairs:
            for text in (key, value):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise undecodable_field(key.encode("utf-8", "replace").decode(), "utf-8") from None
            fields.setdefault(key, []).append(value)
        return await run_in_threadpool(parser.from_form, fields)
    raise RequestError(f"unsupported content type '{kind or 'none'}'; send multipart/form-data, "
                       "application/x-www-form-urlencoded or application/json",
                       status=415, code="unsupported_media_type")
