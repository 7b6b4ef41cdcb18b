"""The fusion contract and the missing-modality handling every fusion shares.

``forward(features: Mapping[str, EncoderOutput], present: Mapping[str, BoolTensor (B,)])
-> FusedOutput(pooled (B, D), tokens (B, T, D) | None, mask (B, T) | None)``.

Modalities are always iterated in sorted name order. Before fusing, :meth:`Fusion.fill`
replaces the features of absent samples with a learned missing-embedding (``missing: learned``)
or zeros (``missing: zero``, and the modality is then masked out wherever the fusion can mask).
Either way, whatever an encoder produced for an absent sample never reaches the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import nn

from polymodal.models.encoders.base import EncoderOutput


class FusedOutput(NamedTuple):
    """Fused representation.

    Attributes:
        pooled: (B, D).
        tokens: (B, T, D) for fusions that keep a token sequence, else None.
        mask: (B, T) True where a token is valid, or None.
    """

    pooled: torch.Tensor
    tokens: torch.Tensor | None = None
    mask: torch.Tensor | None = None


class Fusion(nn.Module):
    """Base class.

    Args:
        dims: pooled feature width of each modality.
        missing: ``learned`` or ``zero``.

    Attributes:
        names: modality names, sorted.
        output_dim: width of ``FusedOutput.pooled`` (and tokens).
        produces_outputs: True when the fusion returns task outputs itself (late fusion).
    """

    output_dim: int
    produces_outputs = False

    def __init__(self, dims: Mapping[str, int], missing: str = "learned"):
        super().__init__()
        self.names = sorted(dims)
        self.dims = {name: int(dims[name]) for name in self.names}
        self.learned_missing = missing == "learned"
        if self.learned_missing:
            self.missing = nn.ParameterDict({n: nn.Parameter(torch.randn(d) * 0.02) for n, d in self.dims.items()})

    def fill(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]
             ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Pooled features with absent samples replaced, and the (B, M) mask of modalities the
        fusion should treat as present (all True with learned missing-embeddings)."""
        pooled = {}
        for name in self.names:
            keep = present[name].unsqueeze(-1)  # (B, 1)
            value = features[name].pooled
            fallback = self.missing[name].to(value.dtype).expand_as(value) if self.learned_missing else torch.zeros_like(value)
            pooled[name] = torch.where(keep, value, fallback)
        mask = torch.stack([present[n] for n in self.names], dim=1)  # (B, M)
        return pooled, torch.ones_like(mask) if self.learned_missing else mask

    @staticmethod
    def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Softmax over modalities (last axis) restricted to ``mask``; rows with no valid entry get 0."""
        weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        return torch.nan_to_num(weights, nan=0.0)
