"""Signal encoders over (B, C, L) windows: a 1-D CNN (``cnn1d``); ``rnn`` and ``transformer``
live in :mod:`polymodal.models.encoders.sequence`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polymodal.config.encoders import Cnn1dConfig
from polymodal.models.encoders.base import Encoder, EncoderOutput
from polymodal.models.layers import downsample_mask, masked_max, masked_mean
from polymodal.models.registry import ENCODERS


@ENCODERS.register(Cnn1dConfig)
class Cnn1d(Encoder):
    """Optional strided stem, then conv-BN-ReLU-maxpool(2) stages; pooled = masked mean and max
    over time, tokens = one per remaining time step."""

    def __init__(self, in_channels: int, dim: int = 128, channels: tuple[int, ...] = (32, 64, 128), kernel: int = 7,
                 stem_stride: int = 1, batch_norm: bool = True, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_channels
        for i, out in enumerate(channels):
            stride = stem_stride if i == 0 else 1
            layers.append(nn.Sequential(
                nn.Conv1d(width, out, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm),
                nn.BatchNorm1d(out) if batch_norm else nn.Identity(),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(2, ceil_mode=True),
            ))
            width = out
        self.stages = nn.Sequential(*layers)
        self.token_proj = nn.Linear(width, dim)
        self.proj = nn.Sequential(nn.Linear(2 * width, dim), nn.GELU(), nn.Dropout(dropout))
        self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: Cnn1dConfig, *, in_channels: int, **_: Any) -> Cnn1d:
        return cls(in_channels, cfg.dim, tuple(cfg.channels), cfg.kernel, cfg.stem_stride, cfg.batch_norm, cfg.dropout)

    def blocks(self) -> list[nn.Module]:
        return [*self.stages, nn.ModuleList([self.proj, self.token_proj])]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> EncoderOutput:
        steps = self.stages(x).transpose(1, 2)  # (B, L', C)
        mask = downsample_mask(mask, steps.shape[1])
        pooled = self.proj(torch.cat([masked_mean(steps, mask), masked_max(steps, mask)], dim=-1))
        return EncoderOutput(pooled, self.token_proj(steps), mask)
