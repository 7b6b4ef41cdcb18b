"""Video encoder configs (``kind: video``). The modality lives with the other kinds in
:mod:`polymodal.config.modalities`, its preprocessing in :mod:`polymodal.config.preprocess`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BeforeValidator, Field, PositiveInt, ValidationError, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from polymodal.config.base import format_validation_error
from polymodal.config.encoders import Dropout, EncoderConfig, ImageCnnConfig, ImageEncoder, check_heads


class FrameCnnConfig(EncoderConfig):
    """Any image encoder applied to every sampled frame, then a temporal model over the frame
    vectors.

    Attributes:
        frame: the per-frame image encoder (``cnn``, ``resnet``, ``timm`` with local pretrained
            weights...; its own ``freeze`` applies). A pretrained frame encoder brings its input
            size and normalisation to the video preprocessing, as it does for images. Gradual
            unfreezing works on the whole video encoder, so ``unfreeze`` is written on
            ``frame_cnn`` itself. The feature cache stores either of two things:

            - ``cache: true`` on ``frame_cnn`` (with its ``freeze: all``): the clip embeddings of
              the whole video encoder, frame encoder and temporal model; nothing of it trains.
            - ``frame.cache: true`` (with ``frame.freeze: all``): the frame encoder's vector of
              every frame, (T, D_frame) per clip, under a temporal model that trains on them
              (``frame_cnn``'s own ``freeze`` none, or a number of trailing blocks that stays
              within the temporal model; no ``unfreeze``, which would reach the frame encoder).
              The stored vectors are keyed by the frame encoder's weights and settings and the
              preprocessing only: training the temporal model, or changing its settings, reuses
              them (:meth:`cached_stage`).

            ``frame.cache`` where ``frame_cnn`` has no weights of its own (``temporal: mean``,
            ``dim: null``) is the same as ``cache`` and taken as it; beside ``cache: true`` it
            adds nothing (the clip embeddings hold what the frame vectors would give) and is
            dropped, so the two never conflict. ``frame.cache`` under ``freeze: all`` on a
            ``frame_cnn`` with weights of its own is refused: nothing would train on the vectors.
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

    def _cache_refusal(self) -> str:
        """``cache: true`` stores the clip embeddings of the whole video encoder: this section's own
        ``freeze`` must be all, whatever ``frame.freeze`` says (the temporal model would train)."""
        own = "no weights of its own" if self.temporal == "mean" and self.dim is None else "weights of its own"
        model = f"temporal: {self.temporal}, dim: {_flow(self.dim)}: {own}"
        if self.freeze == "all":  # then unfreeze is what trains part of it
            return (f"unfreeze: cache: true stores the clip embeddings of the whole video encoder, which unfreeze "
                    f"would train again; drop unfreeze or cache (got unfreeze: {_flow(self.unfreeze.model_dump())})")
        kept = "" if own.startswith("no") else " (its temporal model then keeps its initial weights)"
        return (f"freeze: must be all, this key (frame_cnn's own freeze, not frame.freeze), for cache: true, which "
                f"stores the clip embeddings of the whole video encoder: the frame encoder and the temporal model "
                f"({model}); frame.freeze: all freezes the frame encoder only. Set freeze: all beside cache{kept}; "
                f"or, to train the temporal model on cached per-frame vectors, write cache: true in frame (beside "
                f"frame.freeze: all) instead of here (got freeze: {self.freeze!r}, frame.freeze: "
                f"{self.frame.freeze!r})")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> FrameCnnConfig:
        if self.temporal != "mean" and self.dim is None:
            raise ValueError(f"temporal '{self.temporal}' needs dim (its hidden width); got dim: null")
        if self.dim is not None:
            check_heads(self)  # the transformer splits dim across heads
        return self

    @model_validator(mode="after")
    def _frame_settings_the_video_encoder_reads(self) -> FrameCnnConfig:
        if self.frame.unfreeze is not None:  # finetune_callbacks schedules the modality's encoder only
            raise ValueError("frame.unfreeze: gradual unfreezing is scheduled on the whole video encoder, never on "
                             "its frame encoder; write unfreeze (and freeze) on frame_cnn itself; got frame.unfreeze: "
                             f"{_flow(self.frame.unfreeze.model_dump())}")
        if not self.frame.cache:  # (frame.cache already needs frame.freeze: all: EncoderConfig's own check)
            return self
        if self.cache:  # the clip embeddings (freeze: all, checked) hold what the frame vectors would give
            self.frame = self.frame.model_copy(update={"cache": False})
            return self
        if self.temporal == "mean" and self.dim is None:
            if self.freeze not in ("none", "all", 0) or self.unfreeze is not None:  # 0 blocks to train: all
                raise ValueError(f"frame.cache: the feature cache stores the outputs of a frozen video encoder, but "
                                 f"frame_cnn trains part of it (freeze: {self.freeze!r}, unfreeze: "
                                 f"{'set' if self.unfreeze is not None else None}); drop frame.cache, or set freeze: "
                                 f"all without unfreeze on frame_cnn")
            # nothing of frame_cnn's own to train: caching the frame encoder caches the video encoder
            self.frame = self.frame.model_copy(update={"cache": False})
            self.freeze, self.cache = "all", True  # in this order: cache needs freeze: all
            return self
        model = f"temporal: {self.temporal}, dim: {_flow(self.dim)}"
        if self.unfreeze is not None:
            raise ValueError(f"frame.cache: the frame encoder's cached per-frame vectors need it frozen for good, but "
                             f"frame_cnn's unfreeze trains its blocks, the frame encoder's too, as epochs pass; drop "
                             f"unfreeze (the temporal model trains with freeze: none) or frame.cache (got unfreeze: "
                             f"{_flow(self.unfreeze.model_dump())})")
        if self.freeze in ("all", 0):  # freeze: 0 trains no block either
            raise ValueError(f"frame.cache: the frame encoder's per-frame vectors are cached for a temporal model "
                             f"that trains on them, but frame_cnn's freeze: {self.freeze!r} freezes its temporal model "
                             f"({model}) too; set freeze: none on frame_cnn to train it, or write cache: true on "
                             f"frame_cnn to cache the clip embeddings of the whole frozen video encoder (got freeze: "
                             f"{self.freeze!r}, frame.cache: true)")
        return self  # the per-frame vectors are cached (cached_stage); freeze: N is checked once built

    def cached_stage(self) -> tuple[str, EncoderConfig] | None:
        """``frame`` with ``frame.cache`` (after validation only where the temporal model trains:
        see the class docstring): the frame encoder's per-frame vectors are stored."""
        return ("frame", self.frame) if self.frame.cache else None

    def preprocess_defaults(self, preprocess: Any) -> dict[str, Any]:
        """The frame encoder's own input size and normalisation (pretrained backbones)."""
        return self.frame.preprocess_defaults(preprocess)

    def check_preprocess(self, preprocess: Any) -> None:
        self.frame.check_preprocess(preprocess)


IMAGE_ENCODERS: dict[str, type[EncoderConfig]] = {
    cls.model_fields["name"].default: cls for cls in get_args(get_args(ImageEncoder)[0])}


def _flow(value: Any) -> str:
    """``value`` as YAML flow text (``{start: 2, every: 1}``), for the hints of error messages."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_flow(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _location(path: str, value: Mapping) -> tuple[str | int, ...]:
    """The key path ``a.0.b`` of a problem inside ``value`` as a pydantic location (list indices
    as ints); ``<root>`` (a rule of the whole section) is the empty location."""
    if path == "<root>":
        return ()
    location: list[str | int] = []
    node: Any = value
    for part in path.split("."):
        if isinstance(node, list | tuple) and part.isdigit():
            location.append(int(part))
            node = node[int(part)] if int(part) < len(node) else None
        else:
            location.append(part)
            node = node.get(part) if isinstance(node, Mapping) else None
    return tuple(location)


def _shorthand_problems(value: Mapping, cls: type[EncoderConfig], info: ValidationInfo) -> list[tuple[tuple, str]]:
    """``(location in value, message)`` for each problem of the image encoder ``value`` written on a
    video: keys only ``frame_cnn`` has, ``unfreeze`` (scheduled on the whole video encoder), and
    whatever ``cls`` refuses, worded against ``cls`` (its allowed keys)."""
    name = value["name"]
    frame_only = [key for key in value if key in FrameCnnConfig.model_fields and key not in cls.model_fields
                  and key != "frame"]  # (frame: the user meant name: frame_cnn; an unknown key says so)
    written = {"temporal": "gru"} if "temporal" not in frame_only else {}  # layers, heads: of gru/transformer
    explicit = _flow({**written, **{key: value[key] for key in frame_only}})[1:-1]
    problems = [((key,), f"unknown key '{key}' for image encoder '{name}', which runs on every frame with "
                         f"temporal: mean; {key} is a frame_cnn key: write the explicit form "
                         f"{{name: frame_cnn, frame: {{name: {name}, ...}}, {explicit}}}") for key in frame_only]
    if "unfreeze" in value:
        problems.append((("unfreeze",), f"gradual unfreezing is scheduled on the whole video encoder, never on "
                                        f"its frame encoder; write the explicit form {{name: frame_cnn, frame: "
                                        f"{{name: {name}, ...}}, freeze: {_flow(value.get('freeze', 'all'))}, "
                                        f"unfreeze: {_flow(value['unfreeze'])}}}"))
    rest = {key: item for key, item in value.items() if key not in frame_only and key != "unfreeze"}
    try:
        cls.model_validate(rest, context=info.context)  # a config file's folder
    except ValidationError as err:
        for line in format_validation_error(err, rest, cls):  # "key.path: message", or "<root>: message"
            path, _, message = line.partition(": ")
            problems.append((_location(path, rest), message))
    return problems


def _shorthand_error(location: tuple, message: str, value: Mapping) -> dict[str, Any]:
    """One problem of the shorthand, reported under ``location`` in the encoder's section. A rule
    that names a key the user did not write (``freeze: must be all for cache: true``) is worded as
    a rule of the section, which the config error reports under that key (a location the input
    lacks would be dropped)."""
    if location and location[0] not in value:
        path = ".".join(str(part) for part in location)
        return {"type": PydanticCustomError("value_error", f"{path}: {message}"), "loc": (), "input": value}
    return {"type": PydanticCustomError("encoder_shorthand", message), "loc": location, "input": value}


def image_encoder_per_frame(value: Any, info: ValidationInfo) -> Any:
    """An image encoder written directly on a video modality (``encoder: {name: resnet, ...}``) is
    shorthand for ``frame_cnn`` with that frame encoder, ``temporal: mean`` and no projection
    (``dim: null``); the stored config is the explicit ``frame_cnn`` form. Its ``freeze`` stays on
    the frame encoder; its ``cache`` becomes frame_cnn's (see :class:`FrameCnnConfig`).

    Raises:
        ValidationError: one problem per key of the shorthand, located under the encoder's own
            key path (``modalities.v.encoder.depth``).
    """
    if isinstance(value, Mapping):
        name = value.get("name", "frame_cnn")
        if name == "frame_cnn":
            return value
        if not isinstance(name, str) or name not in IMAGE_ENCODERS:
            raise ValueError(f"encoder '{name}' is neither a video encoder nor an image encoder; allowed: "
                             f"'frame_cnn', or an image encoder run on every frame ({', '.join(IMAGE_ENCODERS)}); "
                             f"got name: {name!r}")
        cls = IMAGE_ENCODERS[name]
        problems = _shorthand_problems(value, cls, info)
        if problems:  # each under the key the user wrote; the message already says what it got
            raise ValidationError.from_exception_data("encoder", [_shorthand_error(location, message, value)
                                                                  for location, message in problems])
        value = cls.model_validate(value, context=info.context)
    if isinstance(value, tuple(IMAGE_ENCODERS.values())):
        return FrameCnnConfig(frame=value, temporal="mean", dim=None)
    return value


VideoEncoder = Annotated[FrameCnnConfig, BeforeValidator(image_encoder_per_frame)]

__all__ = ["FrameCnnConfig", "VideoEncoder", "image_encoder_per_frame"]
