"""Fusion and head configs."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, get_args

from pydantic import Field, PositiveInt, model_validator

from polymodal.config.base import StrictModel
from polymodal.config.encoders import Dropout, check_heads


# --- fusion ------------------------------------------------------------------------------------
class FusionConfig(StrictModel):
    """Fields shared by every fusion, and what a fusion can do (read by the validators of the
    sections that depend on it, and by the fusion module).

    Attributes:
        missing: what an absent modality becomes before fusing: ``learned`` (a trained
            missing-embedding per modality) or ``zero`` (nothing: zeros and masked out).
        makes_tokens: the fused representation is a token sequence (heads other than ``mlp``
            model it).
        produces_outputs: the fusion returns task outputs itself (a head per modality), so
            there is no shared head and no fused latent.
    """

    makes_tokens: ClassVar[bool] = False
    produces_outputs: ClassVar[bool] = False
    missing: Literal["learned", "zero"] = "learned"
    dropout: Dropout = 0.0


class ConcatFusionConfig(FusionConfig):
    """Early fusion: concatenate the modality features (and presence flags)."""

    name: Literal["concat"] = "concat"
    dim: PositiveInt | None = Field(None, description="optional projection of the concatenation")


class StackFusionConfig(FusionConfig):
    """Project every modality to ``dim`` and stack them as tokens (B, M, dim)."""

    makes_tokens: ClassVar[bool] = True
    name: Literal["stack"] = "stack"
    dim: PositiveInt = 128


class WeightedFusionConfig(FusionConfig):
    """Project to ``dim``; average with learned weights, renormalised over the present modalities
    (all of them with learned missing-embeddings, which stand in for an absent one)."""

    name: Literal["weighted"] = "weighted"
    dim: PositiveInt = 128


class GatedFusionConfig(FusionConfig):
    """Gated multimodal unit: per-sample gates (softmax over present modalities) weigh tanh projections."""

    name: Literal["gated"] = "gated"
    dim: PositiveInt = 128


MAX_TENSOR_WIDTH = 65_536  # the widest outer product tensor fusion builds


class TensorFusionConfig(FusionConfig):
    """Tensor fusion: outer product of ``[1, z_m]`` over modalities, z_m projected to ``factor_dim``."""

    name: Literal["tensor"] = "tensor"
    factor_dim: PositiveInt = 16
    dim: PositiveInt = 128

    def check_width(self, modalities: int) -> int:
        """The product's width ``(factor_dim + 1) ** modalities``; ValueError (naming the key) beyond
        :data:`MAX_TENSOR_WIDTH`. The config checks it, and so does the model built without one."""
        width = (self.factor_dim + 1) ** modalities
        if width > MAX_TENSOR_WIDTH:
            raise ValueError(f"fusion.factor_dim: fusion 'tensor' with {modalities} modalities and factor_dim "
                             f"{self.factor_dim} makes a {width:,}-wide product (limit {MAX_TENSOR_WIDTH:,}); lower "
                             "fusion.factor_dim or use fusion 'lowrank'")
        return width


class LowRankFusionConfig(FusionConfig):
    """Low-rank multimodal fusion: the tensor-fusion product computed through rank-``rank`` factors."""

    name: Literal["lowrank"] = "lowrank"
    dim: PositiveInt = 128
    rank: PositiveInt = 4


class AttentionFusionConfig(FusionConfig):
    """A Transformer over modality tokens.

    Attributes:
        tokens: use each encoder's token sequence where it has one (cross-modal attention between
            image regions, words and audio frames); otherwise one token per modality.
        cross: ``true`` adds a cross-attention block per modality, attending to the other modalities'
            tokens, before the joint layers.
    """

    makes_tokens: ClassVar[bool] = True
    name: Literal["attention"] = "attention"
    dim: PositiveInt = 128
    layers: PositiveInt = 1
    heads: PositiveInt = 4
    ff: PositiveInt = 256
    tokens: bool = False
    cross: bool = False

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> AttentionFusionConfig:
        return check_heads(self)


class LateFusionConfig(FusionConfig):
    """Late fusion: a head per modality; logits averaged with learned weights over present modalities."""

    produces_outputs: ClassVar[bool] = True
    name: Literal["late"] = "late"


AnyFusion = Annotated[
    ConcatFusionConfig | StackFusionConfig | WeightedFusionConfig | GatedFusionConfig | TensorFusionConfig
    | LowRankFusionConfig | AttentionFusionConfig | LateFusionConfig,
    Field(discriminator="name"),
]


def fusion_names(*, tokens_only: bool = False) -> list[str]:
    """The names of the fusions the config offers (``tokens_only``: those whose output is a token sequence)."""
    return [cls.model_fields["name"].default for cls in get_args(get_args(AnyFusion)[0])
            if cls.makes_tokens or not tokens_only]


# --- heads -------------------------------------------------------------------------------------
class MlpHeadConfig(StrictModel):
    """MLP over the fused vector (after attention fusion its CLS token's output, after stack the mean of the
    present modalities' tokens)."""

    name: Literal["mlp"] = "mlp"
    hidden: list[PositiveInt] = Field(default=[128])
    dropout: Dropout = 0.1


class RnnHeadConfig(StrictModel):
    """LSTM/GRU over the fused token sequence."""

    name: Literal["rnn"] = "rnn"
    hidden: PositiveInt = 128
    cell: Literal["lstm", "gru"] = "gru"
    bidirectional: bool = True
    dropout: Dropout = 0.1


class CnnHeadConfig(StrictModel):
    """1-D convolutions over the fused token sequence, max-pooled."""

    name: Literal["cnn"] = "cnn"
    channels: PositiveInt = 128
    kernel: PositiveInt = 3
    dropout: Dropout = 0.1


class TransformerHeadConfig(StrictModel):
    """Transformer layers over the fused token sequence, read out through a learned query token."""

    name: Literal["transformer"] = "transformer"
    layers: PositiveInt = 1
    heads: PositiveInt = 4
    ff: PositiveInt = 256
    dropout: Dropout = 0.1


AnyHead = Annotated[
    MlpHeadConfig | RnnHeadConfig | CnnHeadConfig | TransformerHeadConfig, Field(discriminator="name")
]
