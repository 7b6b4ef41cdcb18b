"""Encoder configs. The ``name`` literal of each class is the name users write in YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from polymodal.config.base import StrictModel

Dropout = Annotated[float, Field(ge=0.0, lt=1.0)]


def check_heads(cfg: object) -> object:
    """Attention splits ``dim`` evenly across ``heads``."""
    dim, heads = cfg.dim, cfg.heads  # type: ignore[attr-defined]
    if dim % heads:
        raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
    return cfg


class EncoderConfig(StrictModel):
    """Fields every encoder has.

    Attributes:
        freeze: ``none`` trains everything, ``all`` freezes the encoder (linear probing), an integer
            N trains only the last N blocks of a pretrained backbone.
    """

    kinds: ClassVar[tuple[str, ...]] = ()
    freeze: Literal["none", "all"] | Annotated[int, Field(ge=0)] = "none"


# --- image -------------------------------------------------------------------------------------
class ImageCnnConfig(EncoderConfig):
    """LeNet/VGG-style stack: per stage, ``convs_per_stage`` 3x3 convs then a 2x2 max-pool."""

    kinds: ClassVar[tuple[str, ...]] = ("image",)
    name: Literal["cnn"] = "cnn"
    dim: PositiveInt = 128
    channels: list[PositiveInt] = Field(default=[32, 64], min_length=1)
    convs_per_stage: PositiveInt = 1
    kernel: PositiveInt = 3
    batch_norm: bool = True
    dropout: Dropout = 0.0


class ResNetConfig(EncoderConfig):
    """torchvision ResNet; ``weights`` is a local state-dict file (never downloaded)."""

    kinds: ClassVar[tuple[str, ...]] = ("image",)
    name: Literal["resnet"] = "resnet"
    depth: Literal[18, 34, 50] = 18
    dim: PositiveInt | None = None
    weights: Path | None = None


class TimmConfig(EncoderConfig):
    """Any timm architecture; ``weights`` is a local file (``.pth``/``.safetensors``)."""

    kinds: ClassVar[tuple[str, ...]] = ("image",)
    name: Literal["timm"] = "timm"
    arch: str = "resnet18"
    dim: PositiveInt | None = None
    weights: Path | None = None


# --- sequences (audio frames, signal samples) --------------------------------------------------
class SequenceRnnConfig(EncoderConfig):
    """LSTM/GRU over a sequence of feature vectors (audio frames, signal samples)."""

    kinds: ClassVar[tuple[str, ...]] = ("audio", "signal")
    name: Literal["rnn"] = "rnn"
    hidden: PositiveInt = 128
    layers: PositiveInt = 1
    cell: Literal["lstm", "gru"] = "gru"
    bidirectional: bool = True
    pooling: Literal["last", "mean", "max"] = "mean"
    dropout: Dropout = 0.0
    stem_stride: PositiveInt = Field(1, description="strided conv before the RNN to shorten long signals")


class SequenceTransformerConfig(EncoderConfig):
    """A small Transformer encoder over a sequence of feature vectors, trained from scratch."""

    kinds: ClassVar[tuple[str, ...]] = ("audio", "signal")
    name: Literal["transformer"] = "transformer"
    dim: PositiveInt = 128
    layers: PositiveInt = 2
    heads: PositiveInt = 4
    ff: PositiveInt = 256
    dropout: Dropout = 0.1
    pooling: Literal["cls", "mean"] = "mean"
    stem_stride: PositiveInt = 1

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> SequenceTransformerConfig:
        return check_heads(self)


class MelCnnConfig(EncoderConfig):
    """2-D CNN over a (time, frequency) spectrogram."""

    kinds: ClassVar[tuple[str, ...]] = ("audio",)
    name: Literal["mel_cnn"] = "mel_cnn"
    dim: PositiveInt = 128
    channels: list[PositiveInt] = Field(default=[32, 64, 128], min_length=1)
    batch_norm: bool = True
    dropout: Dropout = 0.1


class Cnn1dConfig(EncoderConfig):
    """1-D CNN over (channels, samples) signals, one stride-2 pooling stage per entry of ``channels``."""

    kinds: ClassVar[tuple[str, ...]] = ("signal",)
    name: Literal["cnn1d"] = "cnn1d"
    dim: PositiveInt = 128
    channels: list[PositiveInt] = Field(default=[32, 64, 128], min_length=1)
    kernel: PositiveInt = 7
    stem_stride: PositiveInt = 1
    batch_norm: bool = True
    dropout: Dropout = 0.1


# --- text --------------------------------------------------------------------------------------
class EmbeddingBagConfig(EncoderConfig):
    """Mean of word vectors; ``vectors`` initialises them from a local word-vector file."""

    kinds: ClassVar[tuple[str, ...]] = ("text",)
    name: Literal["embedding_bag"] = "embedding_bag"
    dim: PositiveInt = 128
    vectors: Path | None = None
    train_vectors: bool = True


class TextRnnConfig(SequenceRnnConfig):
    """Word embeddings followed by an LSTM/GRU."""

    kinds: ClassVar[tuple[str, ...]] = ("text",)
    embed_dim: PositiveInt = 128


class TextCnnConfig(EncoderConfig):
    """Kim-style text CNN: parallel convolutions of several widths, max-pooled over time."""

    kinds: ClassVar[tuple[str, ...]] = ("text",)
    name: Literal["cnn"] = "cnn"
    embed_dim: PositiveInt = 128
    channels: PositiveInt = 100
    kernel_sizes: list[PositiveInt] = Field(default=[3, 4, 5], min_length=1)
    dropout: Dropout = 0.1


class TextTransformerConfig(SequenceTransformerConfig):
    """A small Transformer over word embeddings, trained from scratch."""

    kinds: ClassVar[tuple[str, ...]] = ("text",)


class HfConfig(EncoderConfig):
    """A transformers ``AutoModel`` read from a local folder (no hub access)."""

    kinds: ClassVar[tuple[str, ...]] = ("text",)
    name: Literal["hf"] = "hf"
    path: Path
    pooling: Literal["cls", "mean"] = "mean"


# --- tabular -----------------------------------------------------------------------------------
class TabularMlpConfig(EncoderConfig):
    """MLP over standardised numbers and embedded categories."""

    kinds: ClassVar[tuple[str, ...]] = ("tabular",)
    name: Literal["mlp"] = "mlp"
    dim: PositiveInt = 64
    hidden: list[PositiveInt] = Field(default=[64])
    category_dim: PositiveInt = 8
    dropout: Dropout = 0.1


ImageEncoder = Annotated[ImageCnnConfig | ResNetConfig | TimmConfig, Field(discriminator="name")]
TextEncoder = Annotated[
    EmbeddingBagConfig | TextRnnConfig | TextCnnConfig | TextTransformerConfig | HfConfig,
    Field(discriminator="name"),
]
AudioEncoder = Annotated[MelCnnConfig | SequenceRnnConfig | SequenceTransformerConfig, Field(discriminator="name")]
SignalEncoder = Annotated[Cnn1dConfig | SequenceRnnConfig | SequenceTransformerConfig, Field(discriminator="name")]
TabularEncoder = TabularMlpConfig
