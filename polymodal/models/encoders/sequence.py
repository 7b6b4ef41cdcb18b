"""Sequence encoders shared by audio frames (B, T, F) and signals (B, C, L): an RNN and a
Transformer, each with an optional strided convolution stem that shortens long inputs.

The RNN cores are also used by the text encoders, over word embeddings.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polymodal.config.encoders import SequenceRnnConfig, SequenceTransformerConfig
from polymodal.models.encoders.base import Encoder, EncoderOutput
from polymodal.models.layers import (
    MaskedRnn,
    downsample_mask,
    masked_max,
    masked_mean,
    padding_mask,
    sinusoidal_positions,
    transformer_encoder,
)
from polymodal.models.registry import ENCODERS


class RnnCore(nn.Module):
    """LSTM/GRU over (B, T, F) with masked pooling; padding never reaches a valid output
    (:class:`~polymodal.models.layers.MaskedRnn`). ``last`` pooling reads the forward direction at
    the last valid step and the backward direction at step 0.
    """

    def __init__(self, in_dim: int, hidden: int, layers: int, cell: str, bidirectional: bool, dropout: float,
                 pooling: str):
        super().__init__()
        self.rnn = MaskedRnn(in_dim, hidden, layers, cell, bidirectional, dropout)
        self.pooling = pooling
        self.hidden = hidden
        self.bidirectional = bidirectional
        self.output_dim = hidden * (2 if bidirectional else 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> EncoderOutput:
        out = self.rnn(x, mask)  # (B, T, H * directions)
        if self.pooling == "mean":
            pooled = masked_mean(out, mask)
        elif self.pooling == "max":
            pooled = masked_max(out, mask)
        else:
            last = (mask.long().sum(dim=1) - 1).clamp_min(0) if mask is not None else torch.full(
                (out.shape[0],), out.shape[1] - 1, device=out.device, dtype=torch.long)
            forward_last = out[torch.arange(out.shape[0], device=out.device), last, : self.hidden]
            pooled = torch.cat([forward_last, out[:, 0, self.hidden:]], dim=-1) if self.bidirectional else forward_last
        return EncoderOutput(pooled, out, mask)


class ConvStem(nn.Module):
    """(B, T, F) -> (B, T / stride, out) with a strided 1-D convolution (identity-like Linear at stride 1)."""

    def __init__(self, in_dim: int, out_dim: int, stride: int):
        super().__init__()
        self.stride = stride
        if stride == 1:
            self.layer: nn.Module = nn.Linear(in_dim, out_dim)
        else:
            self.layer = nn.Conv1d(in_dim, out_dim, kernel_size=2 * stride, stride=stride, padding=stride // 2)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.stride == 1:
            return self.act(self.layer(x)), mask
        h = self.act(self.layer(x.transpose(1, 2))).transpose(1, 2)  # (B, T', out)
        return h, downsample_mask(mask, h.shape[1])


def _time_major(x: torch.Tensor, channels_first: bool) -> torch.Tensor:
    return x.transpose(1, 2) if channels_first else x


def _sequence_context(kind: str, context: dict[str, Any]) -> tuple[int, bool]:
    """(features per step, whether the input is channels-first) for audio or signal input."""
    if kind == "signal":
        return context["in_channels"], True
    return context["n_features"], False


@ENCODERS.register(SequenceRnnConfig)
class SequenceRnn(Encoder):
    """RNN over audio frames or signal samples; ``stem_stride`` > 1 first shortens the sequence."""

    def __init__(self, in_dim: int, hidden: int = 128, layers: int = 1, cell: str = "gru", bidirectional: bool = True,
                 dropout: float = 0.0, pooling: str = "mean", stem_stride: int = 1, channels_first: bool = False):
        super().__init__()
        self.channels_first = channels_first
        self.stem = ConvStem(in_dim, hidden, stem_stride) if stem_stride > 1 else None
        self.core = RnnCore(hidden if self.stem is not None else in_dim, hidden, layers, cell, bidirectional, dropout, pooling)
        self.output_dim = self.core.output_dim

    @classmethod
    def from_config(cls, cfg: SequenceRnnConfig, *, kind: str, **context: Any) -> SequenceRnn:
        in_dim, channels_first = _sequence_context(kind, context)
        return cls(in_dim, cfg.hidden, cfg.layers, cfg.cell, cfg.bidirectional, cfg.dropout, cfg.pooling,
                   cfg.stem_stride, channels_first)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> EncoderOutput:
        h = _time_major(x, self.channels_first)  # (B, T, F)
        if self.stem is not None:
            h, mask = self.stem(h, mask)
        return self.core(h, mask)


class TransformerCore(nn.Module):
    """Sinusoidal positions + pre-norm Transformer encoder + CLS or masked-mean pooling."""

    def __init__(self, dim: int, layers: int, heads: int, ff: int, dropout: float, pooling: str):
        super().__init__()
        self.encoder = transformer_encoder(dim, layers, heads, ff, dropout)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pooling == "cls" else None
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    def no_weight_decay(self) -> set[str]:
        """The class token is an input, not a weight: left out of weight decay (as timm's ViT does)."""
        return {"cls"} if self.cls is not None else set()

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None) -> EncoderOutput:
        h = h + sinusoidal_positions(h.shape[1], self.dim, h.device).to(h.dtype)
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
            if mask is not None:
                mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        out = self.norm(self.encoder(h, src_key_padding_mask=padding_mask(mask)))  # (B, T, D)
        if self.cls is not None:
            return EncoderOutput(out[:, 0], out[:, 1:], None if mask is None else mask[:, 1:])
        return EncoderOutput(masked_mean(out, mask), out, mask)


@ENCODERS.register(SequenceTransformerConfig)
class SequenceTransformer(Encoder):
    """Transformer over audio frames or signal samples, trained from scratch."""

    def __init__(self, in_dim: int, dim: int = 128, layers: int = 2, heads: int = 4, ff: int = 256,
                 dropout: float = 0.1, pooling: str = "mean", stem_stride: int = 1, channels_first: bool = False):
        super().__init__()
        self.channels_first = channels_first
        self.stem = ConvStem(in_dim, dim, stem_stride)
        self.core = TransformerCore(dim, layers, heads, ff, dropout, pooling)
        self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: SequenceTransformerConfig, *, kind: str, **context: Any) -> SequenceTransformer:
        in_dim, channels_first = _sequence_context(kind, context)
        return cls(in_dim, cfg.dim, cfg.layers, cfg.heads, cfg.ff, cfg.dropout, cfg.pooling, cfg.stem_stride,
                   channels_first)

    def blocks(self) -> list[nn.Module]:
        return [self.stem, *self.core.encoder.layers, self.core.norm]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> EncoderOutput:
        h, mask = self.stem(_time_major(x, self.channels_first), mask)
        return self.core(h, mask)
