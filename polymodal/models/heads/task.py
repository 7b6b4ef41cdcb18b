"""Heads that wrap the configured head: one per task (multi-task) and nearest-prototype (few-shot).

``build_heads(config, in_dim, n_outputs, task_outputs)`` is what ``build_model`` calls: a plain
config gets the registered head; a config with further ``tasks`` gets a :class:`MultiTaskHead`;
``transfer: {method: protonet}`` gets a :class:`PrototypeHead`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from polymodal.models.fusion.base import FusedOutput
from polymodal.models.objectives.fewshot import class_prototypes, prototype_logits
from polymodal.models.registry import HEADS


class MultiTaskHead(nn.Module):
    """One head per task on the same fused representation; outputs side by side (B, sum K_t),
    in the order of ``heads`` (the main task first)."""

    def __init__(self, heads: Mapping[str, nn.Module]):
        super().__init__()
        self.heads = nn.ModuleDict(dict(heads))

    def forward(self, fused: FusedOutput) -> torch.Tensor:
        return torch.cat([head(fused) for head in self.heads.values()], dim=1)


class PrototypeHead(nn.Module):
    """Embeds the fused representation and scores it against class prototypes.

    ``forward`` returns ``-|embed(x) - c_k|^2`` (B, C) for the prototypes held in the buffer
    ``prototypes`` (C, D). Training keeps them as a running mean of episode prototypes
    (:meth:`update`); after training they are set to the training classes' mean embeddings, and
    prediction with a support set swaps in the support classes' prototypes (:meth:`set_prototypes`).

    Args:
        embed: maps a :class:`FusedOutput` to (B, dim) embeddings.
        n_classes: number of training classes.
        dim: embedding width.
        momentum: weight of the old value in the running mean.
    """

    def __init__(self, embed: nn.Module, n_classes: int, dim: int, momentum: float = 0.9):
        super().__init__()
        self.embed = embed
        self.momentum = momentum
        self.register_buffer("prototypes", torch.zeros(n_classes, dim))
        self.register_buffer("seen", torch.zeros(n_classes, dtype=torch.bool), persistent=False)

    def forward(self, fused: FusedOutput) -> torch.Tensor:
        return prototype_logits(self.embed(fused), self.prototypes)

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Move the prototypes of the classes in ``labels`` towards this episode's class means."""
        classes, means = class_prototypes(embeddings.detach().float(), labels)
        old = self.prototypes[classes]
        # a class is fresh until its first episode; prototypes restored from a checkpoint (a
        # resume) are not zero, and are blended into as the uninterrupted fit would
        fresh = ~self.seen[classes] & (old == 0).all(dim=1)
        mixed = self.momentum * old + (1.0 - self.momentum) * means
        self.prototypes[classes] = torch.where(fresh.unsqueeze(1), means, mixed).to(self.prototypes.dtype)
        self.seen[classes] = True

    @torch.no_grad()
    def set_prototypes(self, prototypes: torch.Tensor) -> None:
        """Replace the prototypes (C', D); C' may differ from the training classes."""
        self.prototypes = prototypes.detach().to(self.prototypes.device, self.prototypes.dtype).clone()


def build_heads(config: Any, in_dim: int, n_outputs: int, task_outputs: Mapping[str, int] | None = None) -> nn.Module:
    """The head(s) of a config.

    Args:
        in_dim: width of the fused representation.
        n_outputs: outputs of the main task (all tasks together with ``task_outputs``).
        task_outputs: outputs per task, the main task first (multi-task configs).
    """
    protonet = getattr(config, "protonet", None)
    if protonet is not None:
        embed = HEADS.build(config.head, in_dim=in_dim, n_outputs=protonet.dim)
        return PrototypeHead(embed, n_outputs, protonet.dim)
    if not getattr(config, "tasks", None):
        return HEADS.build(config.head, in_dim=in_dim, n_outputs=n_outputs)
    if task_outputs is None:
        raise ValueError("a config with `tasks` needs the outputs of every task (task_outputs)")
    heads = {}
    for name, size in task_outputs.items():
        spec = config.tasks.get(name)
        head_cfg = config.head if spec is None or spec.head is None else spec.head
        heads[name] = HEADS.build(head_cfg, in_dim=in_dim, n_outputs=size)
    return MultiTaskHead(heads)
