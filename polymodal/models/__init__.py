"""Model layer: plain ``nn.Module``s (encoders, fusion, heads, objectives, ``MultimodalNet``).

No Lightning, no CLI and no file I/O beyond reading pretrained weights given by path.
"""

from polymodal.models.model import MultimodalNet, build_model

__all__ = ["MultimodalNet", "build_model"]
