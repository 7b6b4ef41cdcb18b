"""polymodal: multimodal deep learning (images, text, audio, signals, tables) from one config.

    from polymodal import MultimodalPredictor
    pred = MultimodalPredictor.from_config("config.yaml").fit("train.csv", "valid.csv", out="runs/a")

The names below are imported on first use, so ``import polymodal`` stays cheap for the command
line and the config tools.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {  # public name -> the module that defines it
    "MultimodalPredictor": "polymodal.predictor",
    "AnomalyDetector": "polymodal.anomaly.detector",
    "Config": "polymodal.config",
    "load_config": "polymodal.config",
    "read_manifest": "polymodal.data.manifest",
    "infer_config": "polymodal.data.infer_config",
    "check_manifests": "polymodal.data.checks",
    "PolymodalError": "polymodal.errors",
    "PolymodalWarning": "polymodal.errors",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'polymodal' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
