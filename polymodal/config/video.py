"""Video encoder configs (``kind: video``). The modality and its preprocessing live with the other
kinds in :mod:`polymodal.config.modalities`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BeforeValidator, Field, PositiveInt, ValidationError, ValidationInfo, model_validator

from polymodal.config.base import format_validation_error
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


IMAGE_ENCODERS: dict[str, type[EncoderConfig]] = {
    cls.model_fields["name"].default: cls for cls in get_args(get_args(ImageEncoder)[0])}


def image_encoder_per_frame(value: Any, info: ValidationInfo) -> Any:
    """An image encoder written directly on a video modality (``encoder: {name: resnet, ...}``) is
    shorthand for ``frame_cnn`` with that frame encoder, ``temporal: mean`` and no projection
    (``dim: null``); the stored config is the explicit ``frame_cnn`` form."""
    if isinstance(value, Mapping):
        name = value.get("name", "frame_cnn")
        if name == "frame_cnn":
            return value
        if not isinstance(name, str) or name not in IMAGE_ENCODERS:
            raise ValueError(f"encoder '{name}' is neither a video encoder nor an image encoder; allowed: "
                             f"'frame_cnn', or an image encoder run on every frame ({', '.join(IMAGE_ENCODERS)}); "
                             f"got name: {name!r}")
        cls = IMAGE_ENCODERS[name]
        try:
            value = cls.model_validate(value, context=info.context)  # a config file's folder
        except ValidationError as err:  # its problems, under the keys the user wrote
            raise ValueError("; ".join(format_validation_error(err, value, cls))) from None
    if isinstance(value, tuple(IMAGE_ENCODERS.values())):
        return FrameCnnConfig(frame=value, temporal="mean", dim=None)
    return value


VideoEncoder = Annotated[FrameCnnConfig, BeforeValidator(image_encoder_per_frame)]

__all__ = ["FrameCnnConfig", "VideoEncoder", "image_encoder_per_frame"]
