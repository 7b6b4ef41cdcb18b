"""Video encoder configs (``kind: video``). The modality and its preprocessing live with the other
kinds in :mod:`polymodal.config.modalities`."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from polymodal.config.encoders import Dropout, EncoderConfig, ImageCnnConfig, ImageEncoder, check_heads


class FrameCnnConfig(EncoderConfig):
    """Any image encoder applied to every sampled frame, then a temporal model over the frame
    vectors.

    Attributes:
        frame: the per-frame image encoder (``cnn``, ``resnet``, ``timm`` with local pretrained
            weights...; its own ``freeze`` applies). A pretrained frame encoder brings its input
            size and normalisation to the video preprocessing, as it does for images.
        temporal: ``mean`` (masked average of the frame vectors), ``gru`` (bidirectional GRU of
            ``dim`` units per direction, averaged) or ``transformer`` (``layers`` of self-attention
            with learned frame positions, averaged).
        dim: width after the temporal model (``mean``: a projection; None keeps the frame width).
    """

    kinds: ClassVar[tuple[str, ...]] = ("video",)
    name: Literal["frame_cnn"] = "frame_cnn"
    frame: ImageEncoder = Field(default_factory=ImageCnnConfig)
    temporal: Literal["mean", "gru", "transformer"] = "mean"
    dim: PositiveInt | None = 128
    layers: PositiveInt = 1
    heads: PositiveInt = 4
    dropout: Dropout = 0.1

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> FrameCnnConfig:
        if self.temporal != "mean" and self.dim is None:
            raise ValueError(f"temporal '{self.temporal}' needs dim (its hidden width); got dim: null")
        if self.dim is not None:
            check_heads(self)  # the transformer splits dim across heads
        return self

    def preprocess_defaults(self, preprocess: Any) -> dict[str, Any]:
        """The frame encoder's own input size and normalisation (pretrained backbones)."""
        return self.frame.preprocess_defaults(preprocess)

    def check_preprocess(self, preprocess: Any) -> None:
        self.frame.check_preprocess(preprocess)


VideoEncoder = FrameCnnConfig

__all__ = ["FrameCnnConfig", "VideoEncoder"]
