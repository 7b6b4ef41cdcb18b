"""Multiplicative fusions: tensor fusion (Zadeh et al., 2017) and its low-rank form (Liu et al., 2018).

Each modality vector is extended with a constant 1, ``[1, z_m]``, so the product keeps every
unimodal and cross-modal interaction term. An absent modality (``missing: zero``) has z_m = 0,
so only its constant 1 enters the product: it contributes nothing that depends on its input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from polymodal.config.model import LowRankFusionConfig, TensorFusionConfig
from polymodal.models.encoders.base import EncoderOutput
from polymodal.models.fusion.base import FusedOutput, Fusion
from polymodal.models.registry import FUSIONS


def _with_one(z: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.ones_like(z[:, :1]), z], dim=-1)


@FUSIONS.register(TensorFusionConfig)
class TensorFusion(Fusion):
    """Outer product of ``[1, z_m]`` over modalities (z_m projected to ``factor_dim``), flattened and
    projected to ``dim``. Width grows as (factor_dim + 1) ** M; use ``lowrank`` for many modalities."""

    def __init__(self, dims: Mapping[str, int], factor_dim: int = 16, dim: int = 128, missing: str = "learned",
                 dropout: float = 0.0):
        super().__init__(dims, missing)
        width = TensorFusionConfig(factor_dim=factor_dim).check_width(len(self.names))
        self.factors = nn.ModuleDict({n: nn.Sequential(nn.Linear(d, factor_dim), nn.ReLU()) for n, d in self.dims.items()})
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, dim), nn.GELU())
        self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: TensorFusionConfig, *, dims: Mapping[str, int], **_: Any) -> TensorFusion:
        return cls(dims, cfg.factor_dim, cfg.dim, cfg.missing, cfg.dropout)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusedOutput:
        pooled, mask = self.fill(features, present)
        product = None
        for i, name in enumerate(self.names):
            z = _with_one(self.factors[name](pooled[name]) * mask[:, i:i + 1].to(pooled[name].dtype))  # (B, f + 1)
            product = z if product is None else (product.unsqueeze(-1) * z.unsqueeze(1)).flatten(1)
        return FusedOutput(self.out(product))


@FUSIONS.register(LowRankFusionConfig)
class LowRankFusion(Fusion):
    """prod_m (W_m^(r) [1, z_m]) summed over ``rank`` factors: tensor fusion without building the tensor."""

    def __init__(self, dims: Mapping[str, int], dim: int = 128, rank: int = 4, missing: str = "learned",
                 dropout: float = 0.0):
        super().__init__(dims, missing)
        self.norms = nn.ModuleDict({n: nn.LayerNorm(d) for n, d in self.dims.items()})
        self.factors = nn.ParameterDict({
            n: nn.Parameter(nn.init.xavier_normal_(torch.empty(rank, d + 1, dim))) for n, d in self.dims.items()
        })
        self.rank_weights = nn.Parameter(torch.full((rank,), 1.0 / math.sqrt(rank)))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.dropout = nn.Dropout(dropout)
        self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: LowRankFusionConfig, *, dims: Mapping[str, int], **_: Any) -> LowRankFusion:
        return cls(dims, cfg.dim, cfg.rank, cfg.missing, cfg.dropout)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusedOutput:
        pooled, mask = self.fill(features, present)
        fused = None
        for i, name in enumerate(self.names):
            z = _with_one(self.norms[name](pooled[name]) * mask[:, i:i + 1].to(pooled[name].dtype))  # (B, d + 1)
            factor = torch.einsum("bi,rio->bro", z, self.factors[name])  # (B, rank, dim)
            fused = factor if fused is None else fused * factor
        out = torch.einsum("bro,r->bo", fused, self.rank_weights) + self.bias
        return FusedOutput(self.dropout(out))
