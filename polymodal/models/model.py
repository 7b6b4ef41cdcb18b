"""``MultimodalNet``: encoders -> fusion -> head, and ``build_model`` from a config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from polymodal.models import encoders as _encoders  # noqa: F401 - registration
from polymodal.models import fusion as _fusion  # noqa: F401 - registration
from polymodal.models import heads as _heads  # noqa: F401 - registration
from polymodal.models.encoders.base import Encoder, EncoderOutput
from polymodal.models.fusion.base import FusedOutput, Fusion
from polymodal.models.registry import ENCODERS, FUSIONS, HEADS

Inputs = Mapping[str, Mapping[str, torch.Tensor]]
Present = Mapping[str, torch.Tensor]


class NetOutput(NamedTuple):
    """Training-time outputs: the task outputs and, with unimodal heads, each modality's own."""

    outputs: torch.Tensor
    unimodal: dict[str, torch.Tensor]


class MultimodalNet(nn.Module):
    """Encoders (one per modality) -> fusion -> head.

    Args:
        encoders: by modality name.
        fusion: combines the encoder outputs.
        head: maps the fused representation to task outputs; None when the fusion produces them.
        unimodal_outputs: also predict from each modality alone (auxiliary heads used by the
            unimodal loss); late fusion's own per-modality heads serve when present.

    Attributes:
        encode_present_only: run each encoder only on the samples where its modality is present
            (saves work and keeps padding rows out of batch-norm statistics). Export switches it
            off to get a graph without data-dependent shapes.
    """

    def __init__(self, encoders: Mapping[str, Encoder], fusion: Fusion, head: nn.Module | None,
                 unimodal_outputs: int | None = None):
        super().__init__()
        self.names = sorted(encoders)
        self.encoders = nn.ModuleDict({n: encoders[n] for n in self.names})
        self.fusion = fusion
        self.head = head
        self.unimodal = None
        if unimodal_outputs is not None and not fusion.produces_outputs:
            self.unimodal = nn.ModuleDict({n: nn.Linear(encoders[n].output_dim, unimodal_outputs) for n in self.names})
        self.has_unimodal = unimodal_outputs is not None
        self.encode_present_only = True

    def _encode_one(self, name: str, kwargs: Mapping[str, torch.Tensor], present: torch.Tensor) -> EncoderOutput:
        encoder = self.encoders[name]
        if not self.encode_present_only or bool(present.all()):
            return encoder(**kwargs)
        batch = present.shape[0]
        if not bool(present.any()):
            any_input = next(iter(kwargs.values()))
            return EncoderOutput(torch.zeros(batch, encoder.output_dim, device=any_input.device))
        rows = present.nonzero().squeeze(1)
        out = encoder(**{k: v.index_select(0, rows) for k, v in kwargs.items()})
        pooled = out.pooled.new_zeros(batch, out.pooled.shape[1]).index_copy(0, rows, out.pooled)
        if out.tokens is None:
            return EncoderOutput(pooled)
        tokens = out.tokens.new_zeros(batch, *out.tokens.shape[1:]).index_copy(0, rows, out.tokens)
        sub_mask = out.token_mask if out.token_mask is not None else torch.ones(
            out.tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        mask = torch.zeros(batch, tokens.shape[1], dtype=torch.bool, device=tokens.device).index_copy(0, rows, sub_mask)
        return EncoderOutput(pooled, tokens, mask)

    def encode(self, inputs: Inputs, present: Present) -> dict[str, EncoderOutput]:
        """Every modality's encoder output (zeros for samples where it is absent)."""
        return {name: self._encode_one(name, inputs[name], present[name]) for name in self.names}

    def fuse(self, inputs: Inputs, present: Present) -> FusedOutput:
        return self.fusion(self.encode(inputs, present), present)

    def forward(self, inputs: Inputs, present: Present) -> torch.Tensor:
        """Task outputs (B, n_outputs): logits or regression values."""
        fused = self.fuse(inputs, present)
        return fused.pooled if self.head is None else self.head(fused)

    def forward_train(self, inputs: Inputs, present: Present) -> NetOutput:
        """Task outputs plus, when the net has unimodal outputs, each modality's own (B, n_outputs)."""
        features = self.encode(inputs, present)
        fused = self.fusion(features, present)
        outputs = fused.pooled if self.head is None else self.head(fused)
        if not self.has_unimodal:
            return NetOutput(outputs, {})
        if self.unimodal is None:  # late fusion: its per-modality heads are the unimodal predictors
            return NetOutput(outputs, {n: fused.tokens[:, i] for i, n in enumerate(self.names)})
        return NetOutput(outputs, {n: self.unimodal[n](features[n].pooled) for n in self.names})


def build_model(config: Any, contexts: Mapping[str, Mapping[str, Any]], n_outputs: int) -> MultimodalNet:
    """Build the network for a :class:`~polymodal.config.Config`.

    Args:
        contexts: per modality, what its fitted preprocessor says about the input
            (``Preprocessor.encoder_context()``).
        n_outputs: classes, labels or regression targets.
    """
    encoders = {}
    for name, modality in config.modalities.items():
        encoder = ENCODERS.build(modality.encoder, kind=modality.kind, **contexts[name])
        encoder.freeze(modality.encoder.freeze)
        encoders[name] = encoder
    dims = {name: enc.output_dim for name, enc in encoders.items()}
    fusion = FUSIONS.build(config.fusion, dims=dims, n_outputs=n_outputs, head=config.head)
    head = None if fusion.produces_outputs else HEADS.build(config.head, in_dim=fusion.output_dim, n_outputs=n_outputs)
    unimodal = n_outputs if config.loss.unimodal_weight > 0 and len(encoders) > 1 else None
    return MultimodalNet(encoders, fusion, head, unimodal_outputs=unimodal)
