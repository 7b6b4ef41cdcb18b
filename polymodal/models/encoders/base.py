"""The face every encoder shows.

``forward(x, mask=None, **extra) -> EncoderOutput(pooled (B, D), tokens (B, T, D) | None,
token_mask (B, T) | None)`` and an ``output_dim`` attribute (D). ``blocks()`` lists the
encoder's layers from input to output, so that freezing "all but the last N blocks" means the
same thing for every encoder.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn


class EncoderOutput(NamedTuple):
    """What an encoder returns.

    Attributes:
        pooled: (B, D) one vector per sample.
        tokens: (B, T, D) a sequence (image regions, words, frames), or None.
        token_mask: (B, T) True where a token is real, or None when all are.
    """

    pooled: torch.Tensor
    tokens: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None


class Encoder(nn.Module):
    """Base class: subclasses set ``output_dim`` and implement ``forward`` and ``from_config``.

    Attributes:
        output_dim: width D of ``pooled`` and ``tokens``.
        pretrained: True when weights were loaded from a file (gets the encoder learning rate).
    """

    output_dim: int
    pretrained: bool = False

    @classmethod
    def from_config(cls, cfg: Any, **context: Any) -> Encoder:
        raise NotImplementedError

    def blocks(self) -> list[nn.Module]:
        """Layers from input to output (default: the direct children in order)."""
        return list(self.children())

    def freeze(self, spec: str | int) -> None:
        """``all`` freezes every parameter; ``none`` none; N trains only the last N blocks."""
        if spec == "none":
            return
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        if spec == "all":
            return
        blocks = self.blocks()
        if spec > len(blocks):
            raise ValueError(f"freeze: {spec} trailing blocks requested but the encoder has {len(blocks)}")
        for block in blocks[len(blocks) - spec:]:
            for parameter in block.parameters():
                parameter.requires_grad_(True)
