"""Errors of the deployment layer (export, runtime, service), part of polymodal's hierarchy."""

from __future__ import annotations

from polymodal.errors import PolymodalError


class ExportError(PolymodalError, RuntimeError):
    """A model cannot be exported, or the exported graph disagrees with the eager model."""


class RequestError(PolymodalError, ValueError):
    """One input of a prediction request is unusable.

    Attributes:
        status: the HTTP status the service answers with (400, 413, 415, 422).
        code: a short machine-readable reason (``too_large``, ``unsupported_type``...).
        field: the modality or form field at fault, or None for the whole request.
    """

    def __init__(self, message: str, *, status: int = 400, code: str = "bad_request", field: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field

    def to_json(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": str(self), "field": self.field}}
