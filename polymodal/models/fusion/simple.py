"""Vector fusions: concatenation, stacking as tokens, learned weighted average, gated unit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from polymodal.config.model import ConcatFusionConfig, GatedFusionConfig, StackFusionConfig, WeightedFusionConfig
from polymodal.models.encoders.base import EncoderOutput
from polymodal.models.fusion.base import FusedOutput, Fusion
from polymodal.models.layers import masked_mean
from polymodal.models.registry import FUSIONS


@FUSIONS.register(ConcatFusionConfig)
class ConcatFusion(Fusion):
    """Early fusion: ``[z_1, ..., z_M, presence flags]``, optionally projected to ``dim``."""

    def __init__(self, dims: Mapping[str, int], dim: int | None = None, missing: str = "learned", dropout: float = 0.0):
        super().__init__(dims, missing)
        width = sum(self.dims.values()) + len(self.names)
        self.proj = nn.Sequential(nn.Linear(width, dim), nn.GELU()) if dim is not None else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.output_dim = dim or width

    @classmethod
    def from_config(cls, cfg: ConcatFusionConfig, *, dims: Mapping[str, int], **_: Any) -> ConcatFusion:
        return cls(dims, cfg.dim, cfg.missing, cfg.dropout)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusedOutput:
        pooled, _ = self.fill(features, present)
        flags = torch.stack([present[n] for n in self.names], dim=1).to(pooled[self.names[0]].dtype)
        fused = torch.cat([pooled[n] for n in self.names] + [flags], dim=-1)  # (B, sum D + M)
        return FusedOutput(self.dropout(self.proj(fused)))


class _Projected(Fusion):
    """Base for fusions that first project every modality to a common width ``dim``."""

    def __init__(self, dims: Mapping[str, int], dim: int, missing: str, dropout: float):
        super().__init__(dims, missing)
        self.proj = nn.ModuleDict({n: nn.Sequential(nn.Linear(d, dim), nn.LayerNorm(dim)) for n, d in self.dims.items()})
        self.dropout = nn.Dropout(dropout)
        self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: Any, *, dims: Mapping[str, int], **_: Any) -> _Projected:
        return cls(dims, cfg.dim, cfg.missing, cfg.dropout)

    def projected(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, dim) projected modalities and the (B, M) mask of those to use."""
        pooled, mask = self.fill(features, present)
        stacked = torch.stack([self.proj[n](pooled[n]) for n in self.names], dim=1)
        return stacked * mask.unsqueeze(-1).to(stacked.dtype), mask


@FUSIONS.register(StackFusionConfig)
class StackFusion(_Projected):
    """Project every modality to ``dim`` (+ a learned modality-type embedding) and stack them as
    tokens (B, M, dim): the channels a sequence head models jointly."""

    def __init__(self, dims: Mapping[str, int], dim: int = 128, missing: str = "learned", dropout: float = 0.0):
        super().__init__(dims, dim, missing, dropout)
        self.type_embedding = nn.Parameter(torch.randn(len(self.names), dim) * 0.02)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusedOutput:
        tokens, mask = self.projected(features, present)
        tokens = self.dropout(tokens + self.type_embedding)  # (B, M, dim)
        return FusedOutput(masked_mean(tokens, mask), tokens, mask)


@FUSIONS.register(WeightedFusionConfig)
class WeightedFusion(_Projected):
    """Weighted average of projected modalities; one learned weight per modality, softmax over
    the modalities present in each sample (with learned missing-embeddings, over all of them: the
    embedding stands in for an absent modality)."""

    def __init__(self, dims: Mapping[str, int], dim: int = 128, missing: str = "learned", dropout: float = 0.0):
        super().__init__(dims, dim, missing, dropout)
        self.logits = nn.Parameter(torch.zeros(len(self.names)))

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusedOutput:
        stacked, mask = self.projected(features, present)
        weights = self.masked_softmax(self.logits.expand(mask.shape), mask)  # (B, M)
        return FusedOutput(self.dropout((weights.unsqueeze(-1) * stacked).sum(dim=1)))


@FUSIONS.register(GatedFusionConfig)
class GatedFusion(Fusion):
    """Gated multimodal unit (Arevalo et al., 2017) for M modalities: h_m = tanh(W_m z_m), gates
    g = softmax(W_g [z_1..z_M]) over present modalities (all of them with learned missing-embeddings,
    which stand in for an absent one), output sum_m g_m h_m."""

    def __init__(self, dims: Mapping[str, int], dim: int = 128, missing: str = "learned", dropout: float = 0.0):
        super().__init__(dims, missing)
        self.hidden = nn.ModuleDict({n: nn.Linear(d, dim) for n, d in self.dims.items()})
        self.gate = nn.Linear(sum(self.dims.values()), len(self.names))
        self.dropout = nn.Dropout(dropout)
        self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: GatedFusionConfig, *, dims: Mapping[str, int], **_: Any) -> GatedFusion:
        return cls(dims, cfg.dim, cfg.missing, cfg.dropout)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusedOutput:
        pooled, mask = self.fill(features, present)
        hidden = torch.stack([torch.tanh(self.hidden[n](pooled[n])) for n in self.names], dim=1)  # (B, M, dim)
        gates = self.masked_softmax(self.gate(torch.cat([pooled[n] for n in self.names], dim=-1)), mask)  # (B, M)
        return FusedOutput(self.dropout((gates.unsqueeze(-1) * hidden).sum(dim=1)))
