"""File types by their leading bytes: what each kind of modality accepts (the HTTP service's
check of an upload) and what any file is, in words (``it looks like a WAV audio file``), for the
messages of the service and the runtime that refuse a file of the wrong type."""

from __future__ import annotations

import functools

from polymodal.deploy.features.audio import AUDIO_SIGNATURES
from polymodal.deploy.features.base import NPY_MAGIC
from polymodal.deploy.features.video import VIDEO_SIGNATURES, has_av
from polymodal.utils.signal_csv import is_csv_text

# leading bytes of the file types each kind accepts: (offset, bytes, type name)
SIGNATURES = {
    "image": [(0, b"\x89PNG\r\n\x1a\n", "PNG"), (0, b"\xff\xd8\xff", "JPEG"), (0, b"GIF8", "GIF"), (0, b"BM", "BMP"),
              (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"), (8, b"WEBP", "WebP")],
    "audio": [*AUDIO_SIGNATURES, (0, NPY_MAGIC, "NPY")],
    # a signal's WAV decodes to float32 samples a few times what was sent (2x for 16-bit PCM, 8x for 4-bit
    # ADPCM, 20x for GSM 6.10), within --max-request-mb; FLAC and OGG, which the runtime reads, are refused
    # here: a small compressed upload (silence) could decode to thousands of times its size
    "signal": [(0, NPY_MAGIC, "NPY"), AUDIO_SIGNATURES[0]],  # WAV
    "video": [*VIDEO_SIGNATURES, (0, NPY_MAGIC, "NPY")],
}
# file types that have no leading bytes of their own, recognised by the whole content: (test, type name)
CONTENT_TYPES = {"signal": [(is_csv_text, "CSV")]}  # UTF-8 text (a CSV's header and rows are read later)
FILE_KINDS = frozenset(SIGNATURES)
# leading bytes of files no modality takes, for the message refusing one: (offset, bytes, what it is)
OTHER_SIGNATURES = [(0, b"%PDF-", "a PDF document"), (0, b"PK\x03\x04", "a ZIP archive (or a .npz, .docx, .xlsx)")]


@functools.cache
def signatures(kind: str) -> tuple[tuple[int, bytes, str], ...]:
    """The leading bytes of the file types ``kind`` accepts: :data:`SIGNATURES`, plus for audio
    the video containers, whose sound track it reads as training does, where PyAV is installed."""
    extra = VIDEO_SIGNATURES if kind == "audio" and has_av() else ()
    return (*SIGNATURES[kind], *extra)


def accepted_types(kind: str) -> list[str]:
    return sorted({name for _, _, name in signatures(kind)} | {name for _, name in CONTENT_TYPES.get(kind, [])})


def file_type(kind: str, data: bytes) -> str | None:
    """The recognised type name of a file's content, or None."""
    found = next((name for offset, magic, name in signatures(kind) if data[offset:offset + len(magic)] == magic), None)
    return found or next((name for test, name in CONTENT_TYPES.get(kind, []) if test(data)), None)


@functools.cache
def described_signatures() -> tuple[tuple[int, bytes, str], ...]:
    """What a file's leading bytes say it is, in words (``a WAV audio file``, ``an MP4/MOV video``):
    every kind's accepted types, whether or not this model has that kind, then :data:`OTHER_SIGNATURES`."""
    def a(name: str) -> str:  # the types' names are read as letters: an AVI, an MP4, an OGG, a PNG
        return f"{'an' if name[0] in 'AEIMO' else 'a'} {name}"

    nouns = {"image": "image", "audio": "audio file", "video": "video"}
    found = [(offset, magic, f"{a(name)} {nouns[kind]}") for kind in ("image", "audio")
             for offset, magic, name in SIGNATURES[kind] if magic != NPY_MAGIC]  # a .npy: said below
    found += [(offset, magic, f"{a(name)} video") for offset, magic, name in VIDEO_SIGNATURES]
    return (*found, (0, NPY_MAGIC, "a NumPy array (.npy)"), *OTHER_SIGNATURES)


def looks_like(data: bytes) -> str | None:
    """What a file is by its leading bytes (:func:`described_signatures`), in words, or None."""
    return next((words for offset, magic, words in described_signatures()
                 if data[offset:offset + len(magic)] == magic), None)
