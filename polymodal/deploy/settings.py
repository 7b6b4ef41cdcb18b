"""Settings of the HTTP service (``polymodal serve``): limits, authentication, micro-batching."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from polymodal.config.base import StrictModel

LOOPBACK = "127.0.0.1"


class ServeSettings(StrictModel):
    """What ``polymodal serve`` accepts and how it batches.

    Attributes:
        host: interface to bind; loopback unless told otherwise.
        port: TCP port.
        token: when set, ``/predict``, ``/explain`` and ``/metadata`` need ``Authorization: Bearer <token>``.
        max_request_bytes: the largest request body (413 above).
        max_image_pixels: the largest image or video frame (width x height) a request may carry (413 above).
        max_audio_seconds: the longest audio clip or sound track (413 above).
        max_video_frames: the most frames a video may hold (413 above; a clip's frames are decoded
            up to the sampled ones, so its length is what a request costs).
        max_text_chars: the longest text (413 above).
        max_batch: most requests run through the network together.
        max_wait_ms: how long a batch, having taken the requests waiting, stays open for more
            (0: runs at once; requests arriving meanwhile form the next batch).
        threads: onnxruntime intra-op threads (None: its default).
        quantized: serve the int8 graph of the export.
    """

    host: str = LOOPBACK
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    token: str | None = None
    max_request_bytes: PositiveInt = 10 * 1024 * 1024
    max_image_pixels: PositiveInt = 4096 * 4096
    max_audio_seconds: PositiveFloat = 30.0
    max_video_frames: PositiveInt = 3000
    max_text_chars: PositiveInt = 10_000
    max_batch: Annotated[int, Field(ge=1, le=1024)] = 32
    max_wait_ms: Annotated[float, Field(ge=0.0, le=1000.0)] = 0.0
    threads: PositiveInt | None = None
    quantized: bool = False

    @field_validator("token")
    @classmethod
    def _printable_ascii(cls, token: str | None) -> str | None:
        """HTTP headers carry Latin-1 bytes, which clients and the server spell a non-ASCII token
        in differently: such a token would never match (every request refused)."""
        if token is not None and not (token.isascii() and token.isprintable() and " " not in token):
            raise ValueError("the bearer token must be printable ASCII without spaces (letters, digits, "
                             "-._~+/=...), as an Authorization header carries it; generate one with "
                             "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        return token
