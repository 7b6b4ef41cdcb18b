"""Projection heads: each aligned modality's encoder output mapped into one shared space.

``Projections`` holds one head per aligned modality (``linear`` or ``mlp``, registered in
``PROJECTIONS`` against their config class). Raw projections feed the alignment objectives;
``embed`` gives the L2-normalised vectors used for retrieval, so cosine similarity is a dot
product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from polymodal.config.align import LinearProjectionConfig, MlpProjectionConfig, aligned_modalities
from polymodal.models.layers import mlp
from polymodal.models.registry import PROJECTIONS


@PROJECTIONS.register(LinearProjectionConfig)
class LinearProjection(nn.Sequential):
    """(B, in_dim) -> (B, dim) with one linear layer."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__(nn.Linear(in_dim, dim))

    @classmethod
    def from_config(cls, cfg: LinearProjectionConfig, *, in_dim: int, dim: int) -> LinearProjection:
        return cls(in_dim, dim)


@PROJECTIONS.register(MlpProjectionConfig)
class MlpProjection(nn.Sequential):
    """(B, in_dim) -> hidden layers (Linear-GELU-Dropout) -> (B, dim)."""

    def __init__(self, in_dim: int, dim: int, hidden: Sequence[int] = (512,), dropout: float = 0.1):
        super().__init__(*mlp(in_dim, hidden, dim, dropout))

    @classmethod
    def from_config(cls, cfg: MlpProjectionConfig, *, in_dim: int, dim: int) -> MlpProjection:
        return cls(in_dim, dim, cfg.hidden, cfg.dropout)


class Projections(nn.Module):
    """One projection head per aligned modality.

    Args:
        heads: by modality name; each maps (B, D_m) to (B, dim).
        dim: width of the shared space.

    Attributes:
        names: the aligned modalities, sorted.
    """

    def __init__(self, heads: Mapping[str, nn.Module], dim: int):
        super().__init__()
        self.names = sorted(heads)
        self.heads = nn.ModuleDict({name: heads[name] for name in self.names})
        self.dim = dim

    def forward(self, pooled: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Raw projections (B, dim) of the aligned modalities found in ``pooled`` ((B, D_m) each)."""
        return {name: self.heads[name](pooled[name]) for name in self.names if name in pooled}

    def embed(self, pooled: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """L2-normalised projections (B, dim): the retrieval embeddings."""
        return {name: F.normalize(z, dim=-1) for name, z in self(pooled).items()}

    def stack(self, pooled: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Every aligned modality's embedding side by side, (B, M * dim) in sorted name order;
        zeros where the modality is absent."""
        embedded = self.embed(pooled)
        parts = [embedded[n] * present[n].unsqueeze(-1).to(embedded[n].dtype) for n in self.names]
        return torch.cat(parts, dim=-1)


def build_projections(config: Any, dims: Mapping[str, int]) -> Projections | None:
    """The projection heads of a config's ``align`` section (None without one).

    Args:
        config: a :class:`~polymodal.config.Config`.
        dims: pooled encoder width per modality.
    """
    if config.align is None:
        return None
    align = config.align
    heads = {name: PROJECTIONS.build(align.projection, in_dim=dims[name], dim=align.dim)
             for name in aligned_modalities(config)}
    return Projections(heads, align.dim)
