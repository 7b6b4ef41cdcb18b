"""Late fusion: one head per modality, their outputs averaged with learned weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from polymodal.config.model import LateFusionConfig, MlpHeadConfig
from polymodal.models.encoders.base import EncoderOutput
from polymodal.models.fusion.base import FusedOutput, Fusion
from polymodal.models.layers import mlp
from polymodal.models.registry import FUSIONS


@FUSIONS.register(LateFusionConfig)
class LateFusion(Fusion):
    """Each modality gets its own MLP head (built from the ``head`` config); the task outputs are
    averaged with learned weights, renormalised over the modalities present in each sample. A
    sample with none present gets the heads' outputs on the learned missing-embeddings
    (``missing: learned``); with ``missing: zero`` its outputs are all zero (uniform probabilities).

    ``FusedOutput.tokens`` carries the per-modality outputs (B, M, n_outputs) and ``mask`` which
    of them were used, so objectives can also train each head on its own.
    """

    produces_outputs = True

    def __init__(self, dims: Mapping[str, int], n_outputs: int, hidden: tuple[int, ...] = (128,), head_dropout: float = 0.1,
                 missing: str = "learned", dropout: float = 0.0):
        super().__init__(dims, missing)
        self.heads = nn.ModuleDict({n: nn.Sequential(nn.Dropout(dropout), mlp(d, hidden, n_outputs, head_dropout))
                                    for n, d in self.dims.items()})
        self.logits = nn.Parameter(torch.zeros(len(self.names)))
        self.output_dim = n_outputs

    @classmethod
    def from_config(cls, cfg: LateFusionConfig, *, dims: Mapping[str, int], n_outputs: int, head: MlpHeadConfig,
                    **_: Any) -> LateFusion:
        return cls(dims, n_outputs, tuple(head.hidden), head.dropout, cfg.missing, cfg.dropout)

    def forward(self, features: Mapping[str, EncoderOutput], present: Mapping[str, torch.Tensor]) -> FusedOutput:
        pooled, filled = self.fill(features, present)
        outputs = torch.stack([self.heads[n](pooled[n]) for n in self.names], dim=1)  # (B, M, K)
        real = torch.stack([present[n] for n in self.names], dim=1)  # (B, M)
        # the present heads; else the filled ones (logical ops, not where(): onnxruntime has no Where on bools)
        mask = real | (filled & ~real.any(dim=1, keepdim=True))  # (B, M)
        weights = self.masked_softmax(self.logits.expand(mask.shape), mask)  # (B, M)
        return FusedOutput((weights.unsqueeze(-1) * outputs).sum(dim=1), outputs, mask)
