"""Video encoder ``frame_cnn``: any registered image encoder applied to every frame, then a temporal
model (masked mean, bidirectional GRU or Transformer) over the frame vectors.

Input ``x``: (B, T, C, H, W) float, ``mask``: (B, T) True on real frames. Tokens are the frames.
With the frame encoder's vectors cached (``frame.cache``), ``frame_vectors`` (B, T, D_frame) and
``mask`` come in place of ``x``, and only the temporal model runs (:meth:`FrameEncoder.cached_stage`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from polymodal.config.video import FrameCnnConfig
from polymodal.errors import EncoderSettingError
from polymodal.models.encoders.base import CachedStage, Encoder, EncoderOutput, batch_norms_frozen_for_one_row
from polymodal.models.registry import ENCODERS
from polymodal.utils.device import exporting


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, D) mean over the True steps (zeros when a row has none)."""
    weight = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)


@ENCODERS.register(FrameCnnConfig)
class FrameEncoder(Encoder):
    """Per-frame image encoder + temporal model.

    Args:
        frame: the image encoder (any ``Encoder`` taking (N, C, H, W)).
        temporal: ``mean``, ``gru`` or ``transformer``.
        frames: the most frames a clip has (Transformer position table).
        dim: output width (None with ``mean``: the frame encoder's width).
        layers / heads / dropout: of the GRU or Transformer.
    """

    def __init__(self, frame: Encoder, temporal: str, frames: int, dim: int | None, layers: int = 1, heads: int = 4,
                 dropout: float = 0.1):
        super().__init__()
        self.frame = frame
        self.temporal_kind = temporal
        self.pretrained = frame.pretrained
        width = frame.output_dim
        if temporal == "mean":
            self.temporal = nn.Identity() if dim is None else nn.Linear(width, dim)
            self.output_dim = width if dim is None else dim
        elif temporal == "gru":
            self.temporal = nn.GRU(width, dim, num_layers=layers, batch_first=True, bidirectional=True,
                                   dropout=dropout if layers > 1 else 0.0)
            self.output_dim = 2 * dim
            # packing clips of different lengths (see forward) has shapes that depend on the lengths
            self.onnx_needs_tracing = "a GRU over packed frame sequences (temporal: gru)"
        else:
            self.input_proj = nn.Linear(width, dim)
            self.position = nn.Parameter(torch.zeros(1, frames, dim))
            nn.init.normal_(self.position, std=0.02)
            layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
            self.temporal = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.output_dim = dim

    @classmethod
    def from_config(cls, cfg: FrameCnnConfig, *, frames: int, restore: bool = False, **context: Any) -> FrameEncoder:
        context = {k: v for k, v in context.items() if k != "kind"}
        frame = ENCODERS.build(cfg.frame, kind="image", restore=restore, **context)
        try:
            frame.freeze(cfg.frame.freeze)
        except EncoderSettingError as err:
            raise EncoderSettingError(f"frame.{err.key}", err.message) from None
        return cls(frame, cfg.temporal, frames, cfg.dim, cfg.layers, cfg.heads, cfg.dropout)

    def new_parameters(self) -> list[nn.Parameter]:
        """Everything but the frame encoder's loaded weights (the temporal model is new)."""
        loaded = {id(p) for p in self.frame.parameters()} - {id(p) for p in self.frame.new_parameters()}
        return [p for p in self.parameters() if id(p) not in loaded]

    def blocks(self) -> list[nn.Module]:
        """The frame encoder's blocks, then the temporal model's (none for a parameter-free mean:
        ``freeze: N`` and gradual unfreezing count only blocks that train)."""
        if self.temporal_kind == "transformer":
            temporal = [nn.ModuleList([self.input_proj, self.temporal]), _ParameterHolder(self.position)]
        else:
            temporal = [self.temporal] if any(True for _ in self.temporal.parameters()) else []
        return [*self.frame.blocks(), *temporal]

    def frame_vectors(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, D_frame): the image encoder's pooled vector plus the mean of its
        spatial tokens when it has them (so both of its output heads are used and trained)."""
        out = self.frame(frames)
        if out.tokens is None:
            return out.pooled
        mask = out.token_mask if out.token_mask is not None else torch.ones(out.tokens.shape[:2], dtype=torch.bool,
                                                                             device=frames.device)
        return out.pooled + masked_mean(out.tokens, mask)

    def cached_stage(self) -> CachedStage:
        """The frame encoder: the feature cache stores its vector of every frame (``frame.cache``)
        and the temporal model trains on them."""
        return CachedStage(self.frame, self.encode_frames)

    def encode_frames(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The frame encoder's part of :meth:`forward`: ``frame_vectors`` (B, T, D_frame), zeros on
        padding frames, and ``mask`` (B, T), the keywords ``forward`` takes in place of ``x``."""
        batch, steps = x.shape[:2]
        if mask is None:
            mask = torch.ones(batch, steps, dtype=torch.bool, device=x.device)
        frames, real = x.flatten(0, 1), mask.flatten()
        # exported (torch.export: no data-dependent branch or row selection), every frame is encoded
        # and the padding is masked, as the traced graph of a clip of full length does
        if exporting() or bool(real.all()) or not bool(real.any()):
            vectors = self.frame_vectors(frames) * real.unsqueeze(-1)
        else:  # the padding of shorter clips stays out of the frame encoder (and its batch norm statistics)
            rows = real.nonzero().squeeze(1)
            with batch_norms_frozen_for_one_row(self.frame, rows.shape[0]):
                kept = self.frame_vectors(frames.index_select(0, rows))
            vectors = kept.new_zeros(frames.shape[0], kept.shape[1]).index_copy(0, rows, kept)
        return {"frame_vectors": vectors.view(batch, steps, -1), "mask": mask}  # (B, T, D_frame), (B, T)

    def forward(self, x: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                frame_vectors: torch.Tensor | None = None) -> EncoderOutput:
        """Clips ``x`` (B, T, C, H, W), or their cached ``frame_vectors`` (B, T, D_frame), with
        ``mask`` (B, T) -> pooled (B, D), frame tokens (B, T, D) and ``mask``."""
        if frame_vectors is None:
            stage = self.encode_frames(x, mask)
            frame_vectors, mask = stage["frame_vectors"], stage["mask"]
        batch, steps = frame_vectors.shape[:2]
        if mask is None:
            mask = torch.ones(batch, steps, dtype=torch.bool, device=frame_vectors.device)
        if self.temporal_kind == "mean":
            tokens = self.temporal(frame_vectors)  # (B, T, D)
        elif self.temporal_kind == "gru":
            lengths = mask.sum(dim=1).clamp_min(1).cpu()  # packed: padding never enters the backward pass
            packed = nn.utils.rnn.pack_padded_sequence(frame_vectors, lengths, batch_first=True, enforce_sorted=False)
            tokens, _ = nn.utils.rnn.pad_packed_sequence(self.temporal(packed)[0], batch_first=True,
                                                         total_length=steps)  # (B, T, 2 * dim)
        else:
            hidden = self.input_proj(frame_vectors) + self.position[:, :steps]
            # a row with no real frame attends to everything (its output is masked below)
            blocked = ~mask & mask.any(dim=1, keepdim=True)
            tokens = self.temporal(hidden, src_key_padding_mask=blocked)  # (B, T, dim)
        tokens = tokens * mask.unsqueeze(-1)
        return EncoderOutput(masked_mean(tokens, mask), tokens, mask)


class _ParameterHolder(nn.Module):
    """Wraps a parameter owned elsewhere so that it counts as a block when freezing."""

    def __init__(self, parameter: nn.Parameter):
        super().__init__()
        self.parameter = parameter
