"""``MultimodalNet``: encoders -> fusion -> head, and ``build_model`` from a config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from polymodal.errors import ConfigError, EncoderSettingError
from polymodal.models import encoders as _encoders  # noqa: F401 - registration
from polymodal.models import fusion as _fusion  # noqa: F401 - registration
from polymodal.models.encoders.base import Encoder, EncoderOutput, batch_norms_frozen_for_one_row
from polymodal.models.fusion.base import FusedOutput, Fusion
from polymodal.models.heads import build_heads
from polymodal.models.projection import Projections, build_projections
from polymodal.models.registry import ENCODERS, FUSIONS
from polymodal.utils.warn import warn_user

Inputs = Mapping[str, Mapping[str, torch.Tensor]]
Present = Mapping[str, torch.Tensor]


class NetOutput(NamedTuple):
    """Training-time outputs: the task outputs and, with unimodal heads, each modality's own;
    ``features`` are the encoder outputs they came from (alignment projects them); ``fused`` is
    the fusion's output (domain adaptation aligns it, distillation matches it)."""

    outputs: torch.Tensor
    unimodal: dict[str, torch.Tensor]
    features: dict[str, EncoderOutput] | None = None
    fused: FusedOutput | None = None


class MultimodalNet(nn.Module):
    """Encoders (one per modality) -> fusion -> head.

    Args:
        encoders: by modality name.
        fusion: combines the encoder outputs.
        head: maps the fused representation to task outputs; None when the fusion produces them.
        unimodal_outputs: also predict from each modality alone (auxiliary heads used by the
            unimodal loss); late fusion's own per-modality heads serve when present.
        projections: heads into the shared alignment space (``align``), or None. With no
            fusion (task ``retrieval``) the net's outputs are the aligned modalities' embeddings
            side by side, (B, M * dim).

    Attributes:
        encode_present_only: run each encoder only on the samples where its modality is present
            (saves work and keeps padding rows out of batch-norm statistics). Export switches it
            off to get a graph without data-dependent shapes.
    """

    def __init__(self, encoders: Mapping[str, Encoder], fusion: Fusion | None, head: nn.Module | None,
                 unimodal_outputs: int | None = None, projections: Projections | None = None):
        super().__init__()
        self.names = sorted(encoders)
        self.encoders = nn.ModuleDict({n: encoders[n] for n in self.names})
        self.fusion = fusion
        self.head = head
        self.unimodal = None
        if unimodal_outputs is not None and not fusion.produces_outputs:
            self.unimodal = nn.ModuleDict({n: nn.Linear(encoders[n].output_dim, unimodal_outputs) for n in self.names})
        self.has_unimodal = unimodal_outputs is not None
        self.projections = projections
        self.encode_present_only = True

    def _encode_one(self, name: str, kwargs: Mapping[str, torch.Tensor], present: torch.Tensor) -> EncoderOutput:
        if "pooled" in kwargs:  # outputs stored by the frozen-feature cache: the encoder does not run
            return precomputed_output(kwargs, present)
        # raw inputs, or a cached front stage's arrays (frame_vectors + mask), which the encoder takes alike
        encoder = self.encoders[name]
        if not self.encode_present_only or bool(present.all()):
            with batch_norms_frozen_for_one_row(encoder, present.shape[0]):
                return encoder(**kwargs)
        batch = present.shape[0]
        if not bool(present.any()):
            any_input = next(iter(kwargs.values()))
            return EncoderOutput(torch.zeros(batch, encoder.output_dim, device=any_input.device))
        rows = present.nonzero().squeeze(1)
        with batch_norms_frozen_for_one_row(encoder, rows.shape[0]):
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
        return self.outputs_from_features(self.encode(inputs, present), present)

    def outputs_from_features(self, features: Mapping[str, EncoderOutput], present: Present) -> torch.Tensor:
        """Task outputs (B, n_outputs) from encoder outputs: fusion then head. ``present`` may hide
        more modalities than the features were encoded with (the fusion masks them), which lets
        modality attribution encode once and re-fuse under many presence masks."""
        if self.fusion is None:  # alignment only (task 'retrieval'): the embeddings are the outputs
            return self.projections.stack({n: features[n].pooled for n in self.projections.names}, present)
        fused = self.fusion(features, present)
        return fused.pooled if self.head is None else self.head(fused)

    def forward_train(self, inputs: Inputs, present: Present) -> NetOutput:
        """Task outputs plus, when the net has unimodal outputs, each modality's own (B, n_outputs)."""
        features = self.encode(inputs, present)
        if self.fusion is None:  # alignment only (task 'retrieval')
            return NetOutput(self.outputs_from_features(features, present), {}, features)
        fused = self.fusion(features, present)
        outputs = fused.pooled if self.head is None else self.head(fused)
        if not self.has_unimodal:
            return NetOutput(outputs, {}, features, fused)
        if self.unimodal is None:  # late fusion: its per-modality heads are the unimodal predictors
            return NetOutput(outputs, {n: fused.tokens[:, i] for i, n in enumerate(self.names)}, features, fused)
        return NetOutput(outputs, {n: self.unimodal[n](features[n].pooled) for n in self.names}, features, fused)

    def embed(self, inputs: Inputs, present: Present) -> dict[str, torch.Tensor]:
        """L2-normalised shared-space embeddings (B, dim) of the aligned modalities (needs ``align``);
        rows where a modality is absent get the embedding of zero encoder features."""
        features = self.encode(inputs, present)
        return self.projections.embed({n: features[n].pooled for n in self.projections.names})


def precomputed_output(stored: Mapping[str, torch.Tensor], present: torch.Tensor) -> EncoderOutput:
    """Encoder outputs stored by the frozen-feature cache (``polymodal.data.embeddings``): ``pooled``
    (B, D) and optionally ``tokens`` (B, T, D) with ``token_mask`` (B, T). Absent rows are zeroed and
    masked, as when the encoder runs on the present rows only."""
    keep = present.unsqueeze(-1)  # (B, 1)
    pooled = stored["pooled"] * keep
    if stored.get("tokens") is None:
        return EncoderOutput(pooled)
    mask = stored["token_mask"] & keep  # (B, T)
    return EncoderOutput(pooled, stored["tokens"] * mask.unsqueeze(-1), mask)


def build_encoders(config: Any, contexts: Mapping[str, Mapping[str, Any]]) -> dict[str, Encoder]:
    """One encoder per modality of ``config``, frozen as its ``encoder.freeze`` says. Freezing
    an encoder that starts from random weights (not ``pretrained``: no ``weights``, not a
    pretrained kind) warns when a model is built to be trained (not ``restore`` of a saved run),
    unless an ``unfreeze`` schedule trains it later: random frozen features are a baseline, or
    a forgotten ``weights``.

    Args:
        contexts: per modality, what its fitted preprocessor says about the input
            (``Preprocessor.encoder_context()``).
    """
    encoders = {}
    for name, modality in config.modalities.items():
        try:  # weights that do not fit, more blocks to freeze than it has: known once it is built
            encoder = ENCODERS.build(modality.encoder, kind=modality.kind, **contexts[name])
            encoder.freeze(modality.encoder.freeze)
        except EncoderSettingError as err:
            raise ConfigError([f"modalities.{name}.encoder.{err}"]) from None
        check_cached_stage(name, modality.encoder, encoder)
        frozen = sum(p.numel() for p in encoder.parameters() if not p.requires_grad)
        if frozen and modality.encoder.freeze != "none" and not encoder.pretrained and not contexts[name].get("restore") \
                and getattr(modality.encoder, "unfreeze", None) is None:
            source = pretrained_source(modality.encoder)
            fix = (f"set its '{source}', or freeze: none" if source is not None
                   else "freeze: none, or an encoder that loads pretrained weights (docs/transfer.md)")
            warn_user(f"modalities.{name}.encoder.freeze: {modality.encoder.freeze!r} freezes {frozen} parameters of "
                      f"encoder '{modality.encoder.name}', whose weights are random (it loads no pretrained weights): "
                      f"they will not train. Fine for a random-features baseline; otherwise {fix}")
        encoders[name] = encoder
    return encoders


def pretrained_source(cfg: Any) -> str | None:
    """The key of encoder config ``cfg`` that names pretrained weights to load (``weights``, a word
    encoder's ``vectors``, a video encoder's ``frame.weights``); None where it has none."""
    fields = type(cfg).model_fields
    named = next((key for key in ("weights", "vectors") if key in fields), None)
    if named is None and "frame" in fields and "weights" in type(cfg.frame).model_fields:
        named = "frame.weights"
    return named


def check_cached_stage(name: str, cfg: Any, encoder: Encoder) -> None:
    """An encoder whose front stage's outputs are cached (``cfg.cached_stage()``) must have that
    stage, and its own ``freeze`` must leave it wholly frozen: ``freeze: N`` trains the last N
    blocks, which may reach into the stage (known once the encoder is built).

    Raises:
        ConfigError: named ``modalities.<name>.encoder.freeze`` (or ``.<stage>.cache``).
    """
    staged = cfg.cached_stage()
    if staged is None:
        return
    key = staged[0]
    stage = encoder.cached_stage()
    if stage is None:
        raise ConfigError([f"modalities.{name}.encoder.{key}.cache: encoder '{cfg.name}' has no front stage to cache "
                           f"apart from the rest; write cache: true on the encoder itself, or drop {key}.cache"])
    trained = sum(p.numel() for p in stage.module.parameters() if p.requires_grad)
    if trained:
        raise ConfigError([f"modalities.{name}.encoder.freeze: {cfg.freeze!r} trains the last blocks of the "
                           f"encoder's {len(encoder.blocks())}, {trained} parameters of them in {key}, whose outputs "
                           f"{key}.cache stores once; train fewer blocks (freeze: none leaves {key} to its own "
                           f"freeze: all), or drop {key}.cache"])


def build_model(config: Any, contexts: Mapping[str, Mapping[str, Any]], n_outputs: int,
                task_outputs: Mapping[str, int] | None = None) -> MultimodalNet:
    """Build the network for a :class:`~polymodal.config.Config`.

    Args:
        contexts: per modality, what its fitted preprocessor says about the input
            (``Preprocessor.encoder_context()``).
        n_outputs: classes, labels or regression targets (of the main task).
        task_outputs: with further ``tasks``: outputs per task, the main one first; the net then
            returns them side by side (see :mod:`polymodal.models.heads.task`).
    """
    encoders = build_encoders(config, contexts)
    dims = {name: enc.output_dim for name, enc in encoders.items()}
    projections = build_projections(config, dims)
    if config.task == "retrieval":  # alignment only: no fusion and no head
        return MultimodalNet(encoders, None, None, projections=projections)
    head_outputs = n_outputs
    n_outputs = sum(task_outputs.values()) if task_outputs else n_outputs  # every task's outputs side by side
    fusion = FUSIONS.build(config.fusion, dims=dims, n_outputs=n_outputs, head=config.head)
    head = None if fusion.produces_outputs else build_heads(config, fusion.output_dim, head_outputs, task_outputs)
    unimodal = n_outputs if config.loss.unimodal_weight > 0 and len(encoders) > 1 else None
    return MultimodalNet(encoders, fusion, head, unimodal_outputs=unimodal, projections=projections)
