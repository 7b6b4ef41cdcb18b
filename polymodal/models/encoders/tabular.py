"""Tabular encoder: categories embedded, concatenated with the numbers, through an MLP."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polymodal.config.encoders import TabularMlpConfig
from polymodal.models.encoders.base import Encoder, EncoderOutput
from polymodal.models.layers import mlp
from polymodal.models.registry import ENCODERS


@ENCODERS.register(TabularMlpConfig)
class TabularMlp(Encoder):
    """Input ``x`` (B, n_numeric) standardised numbers and ``cat`` (B, n_categorical) indices."""

    def __init__(self, n_numeric: int, cardinalities: list[int], dim: int = 64, hidden: tuple[int, ...] = (64,),
                 category_dim: int = 8, dropout: float = 0.1):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(card, category_dim) for card in cardinalities)
        width = n_numeric + category_dim * len(cardinalities)
        self.body = nn.Sequential(mlp(width, hidden, dim, dropout), nn.GELU())
        self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: TabularMlpConfig, *, n_numeric: int, cardinalities: list[int], **_: Any) -> TabularMlp:
        return cls(n_numeric, list(cardinalities), cfg.dim, tuple(cfg.hidden), cfg.category_dim, cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cat: torch.Tensor | None = None) -> EncoderOutput:
        parts = [x]
        if cat is not None:
            parts += [emb(cat[:, j]) for j, emb in enumerate(self.embeddings)]
        return EncoderOutput(self.body(torch.cat(parts, dim=-1)))
