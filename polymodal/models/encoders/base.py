"""The face every encoder shows.

``forward(x, mask=None, **extra) -> EncoderOutput(pooled (B, D), tokens (B, T, D) | None,
token_mask (B, T) | None)`` and an ``output_dim`` attribute (D). ``blocks()`` lists the
encoder's layers from input to output, so that freezing "all but the last N blocks" means the
same thing for every encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from polymodal.errors import EncoderSettingError
from polymodal.models.weights import state_digest


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


class CachedStage(NamedTuple):
    """A frozen front stage of an encoder, whose outputs the feature cache stores in place of the
    encoder's inputs while the rest of the encoder trains on them (``frame_cnn``'s frame encoder
    with ``frame.cache``; see :mod:`polymodal.data.embeddings`).

    Attributes:
        module: the stage (frozen); its ``weights_fingerprint()`` keys the stored arrays, and
            ``run`` uses no other weights.
        run: the encoder's raw inputs (its ``forward`` keywords) -> the arrays to store, each
            (B, ...), which the encoder's ``forward`` takes as keywords in place of those inputs.
    """

    module: Encoder
    run: Callable[..., dict[str, torch.Tensor]]


class Encoder(nn.Module):
    """Base class: subclasses set ``output_dim`` and implement ``forward`` and ``from_config``.

    Attributes:
        output_dim: width D of ``pooled`` and ``tokens``.
        pretrained: True when weights were loaded from a file (gets the encoder learning rate).
        unfreeze_schedule: set when blocks frozen now will be trained later (gradual unfreezing;
            see ``polymodal.training.finetune``), so that they join the optimiser from the start.
        onnx_needs_tracing: why ``torch.export`` cannot capture this encoder, so that an ONNX export
            of a network holding it traces it instead (torch's legacy TorchScript-based exporter);
            None (the default) when it can.
    """

    output_dim: int
    pretrained: bool = False
    unfreeze_schedule: Any = None
    onnx_needs_tracing: str | None = None

    @classmethod
    def from_config(cls, cfg: Any, **context: Any) -> Encoder:
        raise NotImplementedError

    def blocks(self) -> list[nn.Module]:
        """Layers from input to output (default: the direct children in order)."""
        return list(self.children())

    def freeze(self, spec: str | int) -> None:
        """``all`` freezes every parameter; ``none`` none; N trains only the last N blocks.

        Parameters no block holds (a ViT's class token and position table, held by the backbone
        itself; a Transformer's class token) belong to the first block, on the input side: they
        train with it, so that every parameter trains once every block does.
        Adapters (LoRA) always stay trainable; batch-norm layers whose parameters are all frozen
        are kept in eval mode (see :meth:`train`).
        """
        if spec == "none":
            return
        blocks = self.blocks()
        if spec != "all" and spec > len(blocks):
            raise EncoderSettingError("freeze", f"{spec} trailing blocks requested, but encoder {type(self).__name__} has "
                              f"{len(blocks)}; use a number from 0 to {len(blocks)}, 'all' or 'none'")
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        if spec != "all" and spec > 0:
            held = [list(block.parameters()) for block in blocks]
            in_blocks = {id(p) for params in held for p in params}
            held[0] += [p for p in self.parameters() if id(p) not in in_blocks]
            for params in held[len(blocks) - spec:]:
                for parameter in params:
                    parameter.requires_grad_(True)
        for parameter in self.adapter_parameters():
            parameter.requires_grad_(True)
        self.train(self.training)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """Parameters of adapters added to a pretrained encoder (LoRA), which train even when the
        encoder is frozen."""
        from polymodal.models.lora import lora_parameters

        return lora_parameters(self)

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters a pretrained encoder adds to the weights it loads (LoRA adapters here; a
        projection, a temporal model in subclasses): they start from scratch, so they train at the
        full learning rate, not at ``train.encoder_lr_scale``'s."""
        return self.adapter_parameters()

    def pending_parameters(self) -> list[nn.Parameter]:
        """Frozen parameters a gradual-unfreezing schedule will train later."""
        if self.unfreeze_schedule is None:
            return []
        return [p for p in self.parameters() if not p.requires_grad]

    def train(self, mode: bool = True) -> Encoder:
        """Like ``nn.Module.train``, but frozen parts stay in eval mode: a part whose parameters
        are all frozen runs as at inference (no dropout, no drop-path: a frozen encoder gives the
        features the frozen-feature cache stores), and batch-norm layers with frozen weights keep
        their pretrained running statistics while the trained blocks or a head learn."""
        super().train(mode)
        if mode:
            _freeze_modes(self)
        return self

    def assets(self) -> dict[str, tuple[Path, list[str]]]:
        """Files outside the state dict that rebuilding this encoder needs (a model's config and
        tokenizer, ONNX graphs), by config field: ``{field: (folder, file names in it)}``. A saved run
        copies them, so that it loads without the original folder (see ``polymodal.assets``)."""
        return {}

    def cached_stage(self) -> CachedStage | None:
        """The frozen front stage whose outputs the feature cache may store (where the config's
        ``cached_stage()`` asks for it), or None when this encoder has none to separate."""
        return None

    def weights_fingerprint(self) -> str:
        """A hash of everything that determines the encoder's outputs: its class and every tensor
        of its state (parameters and buffers). Keys the frozen-feature cache."""
        return state_digest(self, f"{type(self).__module__}.{type(self).__qualname__}")


def _freeze_modes(module: nn.Module) -> None:
    """Put the frozen parts of ``module`` (in train mode) into eval mode, top down."""
    own = list(module.parameters())
    if own and not any(p.requires_grad for p in own):
        module.eval()  # wholly frozen: dropout and batch norm as at inference
        return
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        weights = list(module.parameters(recurse=False))
        if weights and not any(p.requires_grad for p in weights):
            module.eval()
    for child in module.children():
        _freeze_modes(child)


@contextmanager
def batch_norms_frozen_for_one_row(module: nn.Module, rows: int) -> Iterator[None]:
    """Training a batch of one row (a modality present in a single row of the batch, or a last
    batch of one): batch norm has no batch statistics over a 1x1 feature map, so its layers use
    their running statistics for this call (and do not update them)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training] \
        if rows == 1 and module.training else []
    for norm in norms:
        norm.eval()
    try:
        yield
    finally:
        for norm in norms:
            norm.train()
