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
    """A 'valid' mask (True = keep) -> PyTorch's key padding mask (True = ignore). A row with no
    valid position (an absent input, run anyway in an exported graph) keeps its first one:
    attention over no key at all is NaN, which would reach the row's output."""
    if mask is None:
        return None
    first = ~(mask[:, :1] | ~mask.any(dim=1, keepdim=True))
    return torch.cat([first, ~mask[:, 1:]], dim=1)


def compact(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Move the valid tokens of ``x`` (B, T, D) to the front, in order, and zero the rest.

    Fused token sequences can have holes (an absent modality in the middle); sequence models that
    expect trailing padding (RNN, CNN heads) then see the same input whatever the batch held.
    Returns the compacted tokens and the matching prefix mask.
    """
    if mask is None:
        return x, None
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # valid positions first
    packed = x.gather(1, order.unsqueeze(-1).expand_as(x))
    prefix = mask.gather(1, order)
    return packed.masked_fill(~prefix.unsqueeze(-1), 0.0), prefix


def reverse_valid(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence of ``x`` (B, T, D) within its valid length; padding stays at the end.

    Applying it twice restores ``x``. With ``mask`` None the whole sequence is reversed.
    """
    if mask is None:
        return x.flip(1)
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, T)
    lengths = mask.long().sum(dim=1, keepdim=True)  # (B, 1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (B, T)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class MaskedRnn(nn.Module):
    """A (bi)directional LSTM/GRU whose outputs at valid steps never depend on padding.

    The backward direction runs over each sequence reversed within its own length, so trailing
    padding is seen only after every valid step, as in the forward direction. Unlike packed
    sequences this needs no sorting or host synchronisation and exports to ONNX.

    Input (B, T, in_dim) and an optional (B, T) validity mask; output (B, T, hidden * directions).
    """

    def __init__(self, in_dim: int, hidden: int, layers: int = 1, cell: str = "gru", bidirectional: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        directions = 2 if bidirectional else 1
        self.forward_layers = nn.ModuleList(
            rnn_cls(in_dim if i == 0 else hidden * directions, hidden, batch_first=True) for i in range(layers))
        self.backward_layers = nn.ModuleList(
            rnn_cls(in_dim if i == 0 else hidden * directions, hidden, batch_first=True) for i in range(layers)
        ) if bidirectional else None
        self.dropout = nn.Dropout(dropout)
        self.output_dim = hidden * directions

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.forward_layers):
            if i > 0:
                h = self.dropout(h)
            out, _ = layer(h)
            if self.backward_layers is not None:
                back, _ = self.backward_layers[i](reverse_valid(h, mask))
                out = torch.cat([out, reverse_valid(back, mask)], dim=-1)
            h = out
        return h
