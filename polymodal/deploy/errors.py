"""Errors of the deployment layer (export, runtime, service), part of polymodal's hierarchy."""

from __future__ import annotations

from polymodal.errors import PolymodalError


class ExportError(PolymodalError, RuntimeError):
    """A model cannot be exported, or the exported graph disagrees with the eager model."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an error from another library (the ONNX exporter appends the
    whole traced graph to its message), prefixed with its type when the message is empty."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def content_start(data: bytes, shown: int = 12) -> str:
    """How a file that is not of an accepted type begins, for its error message: its first
    characters when they are printable text (``text 'hello'``), else its first bytes in hex
    (``bytes 47 49 46 38``), the form file-type signatures are listed in."""
    head = data[:shown]
    more = "..." if len(data) > shown else ""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        return f"text '{text}{more}'"
    return f"bytes {head.hex(' ')}{more}"


def onnxruntime_errors() -> tuple[type[Exception], ...]:
    """The exception classes onnxruntime raises (its C++ status codes: ``NotImplemented``, ``Fail``,
    ``InvalidGraph``...; they derive from ``Exception`` only); none without onnxruntime."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except ImportError:
        return ()
    return tuple(c for c in vars(state).values() if isinstance(c, type) and issubclass(c, Exception))


class RequestError(PolymodalError, ValueError):
    """One input of a prediction request is unusable.

    Attributes:
        status: the HTTP status the service answers with (400, 413, 415, 422).
        code: a short machine-readable reason (``too_large``, ``unsupported_type``...).
        field: the modality or form field at fault, or None for the whole request.
        row: the index of the row at fault in the rows given to the runtime, or None; the message
            then starts with it (``row 3: ...``).
        reason: the message without the row.
    """

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request", field: str | None = None,
                 row: int | None = None):
        super().__init__(message if row is None else f"row {row}: {message}")
        self.reason = message
        self.status = status
        self.code = code
        self.field = field
        self.row = row

    def in_row(self, row: int) -> RequestError:
        """This error, about row ``row`` of the rows given to the runtime."""
        return RequestError(self.reason, status=self.status, code=self.code, field=self.field, row=row)

    def to_json(self) -> dict[str, object]:
        """The service's answer: the message without the row (a request is one row)."""
        return {"error": {"code": self.code, "message": self.reason, "field": self.field}}
