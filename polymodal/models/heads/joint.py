"""The joint heads over the fused representation, registered in ``HEADS``.

``forward(fused: FusedOutput) -> (B, n_outputs)``. ``mlp`` reads the pooled vector; ``rnn``,
``cnn`` and ``transformer`` model the fused token sequence (fusions ``stack`` and ``attention``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polymodal.config.model import CnnHeadConfig, MlpHeadConfig, RnnHeadConfig, TransformerHeadConfig
from polymodal.models.fusion.base import FusedOutput
from polymodal.models.layers import MaskedRnn, compact, masked_max, masked_mean, mlp, padding_mask, transformer_encoder
from polymodal.models.registry import HEADS


def _tokens(fused: FusedOutput, head: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    if fused.tokens is None:
        raise ValueError(f"head '{head}' needs a token sequence; this fusion returns only a pooled vector")
    return fused.tokens, fused.mask


@HEADS.register(MlpHeadConfig)
class MlpHead(nn.Module):
    def __init__(self, in_dim: int, n_outputs: int, hidden: tuple[int, ...] = (128,), dropout: float = 0.1):
        super().__init__()
        self.net = mlp(in_dim, hidden, n_outputs, dropout)

    @classmethod
    def from_config(cls, cfg: MlpHeadConfig, *, in_dim: int, n_outputs: int) -> MlpHead:
        return cls(in_dim, n_outputs, tuple(cfg.hidden), cfg.dropout)

    def forward(self, fused: FusedOutput) -> torch.Tensor:
        return self.net(fused.pooled)


@HEADS.register(RnnHeadConfig)
class RnnHead(nn.Module):
    """LSTM/GRU over fused tokens, masked mean of its outputs, then a linear layer."""

    def __init__(self, in_dim: int, n_outputs: int, hidden: int = 128, cell: str = "gru", bidirectional: bool = True,
                 dropout: float = 0.1):
        super().__init__()
        self.rnn = MaskedRnn(in_dim, hidden, 1, cell, bidirectional)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * (2 if bidirectional else 1), n_outputs))

    @classmethod
    def from_config(cls, cfg: RnnHeadConfig, *, in_dim: int, n_outputs: int) -> RnnHead:
        return cls(in_dim, n_outputs, cfg.hidden, cfg.cell, cfg.bidirectional, cfg.dropout)

    def forward(self, fused: FusedOutput) -> torch.Tensor:
        tokens, mask = compact(*_tokens(fused, "rnn"))  # valid tokens first, padding zeroed
        out = self.rnn(tokens, mask)  # (B, T, H)
        return self.out(masked_mean(out, mask))


@HEADS.register(CnnHeadConfig)
class CnnHead(nn.Module):
    """1-D convolution over fused tokens, masked max over positions, then a linear layer."""

    def __init__(self, in_dim: int, n_outputs: int, channels: int = 128, kernel: int = 3, dropout: float = 0.1):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, channels, kernel, padding=kernel // 2)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, n_outputs))

    @classmethod
    def from_config(cls, cfg: CnnHeadConfig, *, in_dim: int, n_outputs: int) -> CnnHead:
        return cls(in_dim, n_outputs, cfg.channels, cfg.kernel, cfg.dropout)

    def forward(self, fused: FusedOutput) -> torch.Tensor:
        tokens, mask = compact(*_tokens(fused, "cnn"))  # valid tokens first, padding zeroed
        maps = torch.relu(self.conv(tokens.transpose(1, 2)))[..., : tokens.shape[1]].transpose(1, 2)  # (B, T, C)
        return self.out(masked_max(maps, mask))


@HEADS.register(TransformerHeadConfig)
class TransformerHead(nn.Module):
    """A learned query token plus the fused tokens through Transformer layers; read the query."""

    def __init__(self, in_dim: int, n_outputs: int, layers: int = 1, heads: int = 4, ff: int = 256, dropout: float = 0.1):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, in_dim) * 0.02)
        self.encoder = transformer_encoder(in_dim, layers, heads, ff, dropout)
        self.out = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, n_outputs))

    @classmethod
    def from_config(cls, cfg: TransformerHeadConfig, *, in_dim: int, n_outputs: int) -> TransformerHead:
        return cls(in_dim, n_outputs, cfg.layers, cfg.heads, cfg.ff, cfg.dropout)

    def forward(self, fused: FusedOutput) -> torch.Tensor:
        tokens, mask = _tokens(fused, "transformer")
        x = torch.cat([self.query.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        if mask is not None:
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        return self.out(self.encoder(x, src_key_padding_mask=padding_mask(mask))[:, 0])


def build_head(cfg: Any, in_dim: int, n_outputs: int) -> nn.Module:
    return HEADS.build(cfg, in_dim=in_dim, n_outputs=n_outputs)


__all__ = ["CnnHead", "MlpHead", "RnnHead", "TransformerHead", "build_head"]
