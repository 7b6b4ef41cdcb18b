"""Encoders, one file per modality kind; all registered in ``ENCODERS`` against their config class."""

from polymodal.models.encoders import audio, image, sequence, signal, speech, tabular, text, video  # noqa: F401 - registration
from polymodal.models.encoders.base import Encoder, EncoderOutput

__all__ = ["Encoder", "EncoderOutput"]
