"""polymodal: multimodal deep learning (images, text, audio, signals, tables) from one config."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["MultimodalPredictor", "load_config", "__version__"]


def __getattr__(name: str):  # lazy: importing polymodal stays cheap for the CLI and config tools
    if name == "MultimodalPredictor":
        from polymodal.predictor import MultimodalPredictor

        return MultimodalPredictor
    if name == "load_config":
        from polymodal.config import load_config

        return load_config
    raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
