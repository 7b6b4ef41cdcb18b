"""One preprocessor per modality kind, registered in ``PREPROCESSORS`` against its modality config."""

from polymodal.data.modalities import audio, image, signal, tabular, text, video  # noqa: F401 - registration
from polymodal.data.modalities.base import PREPROCESSORS, ArraySpec, Preprocessor


def build_preprocessor(cfg: object, name: str) -> Preprocessor:
    """The preprocessor for a modality config."""
    return PREPROCESSORS.build(cfg, name=name)


__all__ = ["PREPROCESSORS", "ArraySpec", "Preprocessor", "build_preprocessor"]
