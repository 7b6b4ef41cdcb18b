"""Attention fusion: a Transformer over modality tokens, with optional cross-modal attention."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from polymodal.config.model import AttentionFusionConfig
from polymodal.models.encoders.base import EncoderOutput
from polymodal.models.fusion.base import FusedOutput, Fusion
from polymodal.models.layers import padding_mask, transformer_encoder
from polymodal.models.registry import FUSIONS


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention: queries from one modality, keys/values from the others."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        normed = self.norm(query)
        attended, _ = self.attention(normed, self.norm(context), self.norm(context), key_padding_mask=padding_mask(context_mask),
                                     need_weights=False)
        return query + attended


@FUSIONS.register(AttentionFusionConfig)
class AttentionFusion(Fusion):
    """Each modality becomes tokens (its encoder's token sequence with ``tokens: true``, else one
    token), projected to ``dim`` plus a modality-type embedding; a CLS token is prepended and a
    Transformer attends across all of them (``cross: true`` first lets every modality attend to
    the others). Output: the CLS vector, and all tokens with their mask for sequence heads.

    Absent modalities are masked out (``missing: zero``) or represented by one learned token.
    """

    def __init__(self, dims: Mapping[str, int], dim: int = 128, layers: int = 1, heads: int = 4, ff: int = 256,
                 dropout: float = 0.0, use_tokens: bool = False, cross: bool = False, missing: str = "learned"):
        super().__init__(dims, missing)
        self.use_tokens = use_tokens
        self.proj = nn.ModuleDict({n: nn.Linear(d, dim) for n, d in self.dims.items()})
        self.type_embedding = nn.Parameter(torch.randn(len(self.names), dim) * 0.02)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.cross = nn.ModuleDict({n: CrossAttentionBlock(dim, heads, dropout) for n in self.names}) if cross else None
        self.encoder = transformer_encoder(dim, layers, heads, ff, dropout)
        self.norm = nn.LayerNorm(dim)
        self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: AttentionFusionConfig, *, dims: Mapping[str, int], **_: Any) -> AttentionFusion:
        return cls(dims, cfg.dim, cfg.layers, cfg.heads, cfg.ff, cfg.dropout, cfg.tokens, cfg.cross, cfg.missing)

    def _modality_tokens(self, name: str, feature: EncoderOutput, present: torch.Tensor, pooled: torch.Tensor,
                         use: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D_m) tokens and (B, T) mask for one modality, absent samples handled."""
        if not self.use_tokens or feature.tokens is None:
            return pooled.unsqueeze(1), use.unsqueeze(1)
        tokens, mask = feature.tokens, feature.token_mask
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device) if mask is None else mask
        absent = ~present
        tokens = tokens.masked_fill(absent[:, None, None], 0.0)
        mask = mask & present[:, None]
        if self.learned_missing:  # absent samples: one learned token in the first slot
            first = torch.zeros_like(mask)
            first[:, 0] = True
            tokens = torch.where((absent[:, None] & first).unsqueeze(-1), self.missing[name].to(tokens.dtype), tokens)
            mask = mask | (absent[:, None] & first)
        return tokens, mask

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusedOutput:
        pooled, use = self.fill(features, present)
        seqs, masks = [], []
        for i, name in enumerate(self.names):
            tokens, mask = self._modality_tokens(name, features[name], present[name], pooled[name], use[:, i])
            seqs.append(self.proj[name](tokens) + self.type_embedding[i])  # (B, T_m, dim)
            masks.append(mask)
        batch = seqs[0].shape[0]
        cls = self.cls.expand(batch, -1, -1)
        cls_mask = torch.ones(batch, 1, dtype=torch.bool, device=cls.device)
        if self.cross is not None:
            crossed = []
            for i, name in enumerate(self.names):
                context = torch.cat([cls, *(s for j, s in enumerate(seqs) if j != i)], dim=1)
                context_mask = torch.cat([cls_mask, *(m for j, m in enumerate(masks) if j != i)], dim=1)
                crossed.append(self.cross[name](seqs[i], context, context_mask))
            seqs = crossed
        x = torch.cat([cls, *seqs], dim=1)  # (B, 1 + T, dim)
        mask = torch.cat([cls_mask, *masks], dim=1)
        out = self.norm(self.encoder(x, src_key_padding_mask=padding_mask(mask)))
        return FusedOutput(out[:, 0], out[:, 1:], mask[:, 1:])
