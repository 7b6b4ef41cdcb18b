"""Small building blocks shared by encoders, fusions and heads."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """Mean of ``x`` (B, T, D) over ``dim`` counting only positions where ``mask`` (B, T) is True."""
    if mask is None:
        return x.mean(dim=dim)
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(dim=dim) / weights.sum(dim=dim).clamp_min(1.0)


def masked_max(x: torch.Tensor, mask: torch.Tensor | None, dim: int = 1) -> torch.Tensor:
    """Max of ``x`` (B, T, D) over ``dim`` ignoring masked-out positions (0 when none is valid)."""
    if mask is None:
        return x.amax(dim=dim)
    filled = x.masked_fill(~mask.unsqueeze(-1), torch.finfo(x.dtype).min)
    return torch.where(mask.any(dim=dim, keepdim=True), filled.amax(dim=dim), torch.zeros_like(filled[:, 0]))


def downsample_mask(mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """Shrink a (B, T) mask to (B, length) after strided layers (a step is valid when any of the
    input steps it covers is)."""
    if mask is None or mask.shape[1] == length:
        return mask
    pooled = nn.functional.adaptive_max_pool1d(mask.float().unsqueeze(1), length)
    return pooled.squeeze(1) > 0


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None, dropout: float = 0.0,
        activation: type[nn.Module] = nn.GELU) -> nn.Sequential:
    """Linear -> activation -> dropout per hidden width, then an optional output Linear."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), activation(), nn.Dropout(dropout)]
        width = h
    if out_dim is not None:
        layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, dim) fixed sinusoidal position encodings."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


def transformer_encoder(dim: int, layers: int, heads: int, ff: int, dropout: float) -> nn.TransformerEncoder:
    """Pre-norm Transformer encoder, batch first."""
    if dim % heads:
        raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
    layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def padding_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """A 'valid' mask (True = keep) -> PyTorch's key padding mask (True = ignore)."""
    return None if mask is None else ~mask
