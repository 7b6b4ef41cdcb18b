"""Few-shot losses: prototypical networks (Snell et al., 2017)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from polymodal.models.objectives.base import LossOutput


def class_prototypes(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean embedding of each class present in ``labels``.

    Args:
        embeddings: (N, D); labels: (N,) class indices.

    Returns:
        ``classes`` (C,) sorted class indices and ``prototypes`` (C, D).
    """
    classes, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    sums = embeddings.new_zeros(len(classes), embeddings.shape[1]).index_add_(0, inverse, embeddings)
    counts = torch.bincount(inverse, minlength=len(classes)).clamp_min(1).to(embeddings.dtype)
    return classes, sums / counts.unsqueeze(1)


def prototype_logits(embeddings: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Negative squared Euclidean distances (B, C) of embeddings (B, D) to prototypes (C, D)."""
    return -torch.cdist(embeddings.float(), prototypes.float()).pow(2)


def support_query_split(labels: torch.Tensor, shots: int) -> torch.Tensor:
    """(N,) True for the first ``shots`` rows of each class (the support set), False for the rest."""
    support = torch.zeros_like(labels, dtype=torch.bool)
    for value in torch.unique(labels):
        rows = (labels == value).nonzero().squeeze(1)
        support[rows[:shots]] = True
    return support


def prototypical_loss(embeddings: torch.Tensor, labels: torch.Tensor, shots: int) -> LossOutput:
    """Episode loss: per class, the first ``shots`` rows form the support set whose mean is the
    class prototype; every other row (the queries) is classified by its nearest prototype.

    Args:
        embeddings: (N, D); labels: (N,) class indices; classes with no query row only add a prototype.

    Returns:
        Cross-entropy over the queries; logs ``accuracy`` on the queries.
    """
    support = support_query_split(labels, shots)
    classes, prototypes = class_prototypes(embeddings[support], labels[support])
    queries = ~support & torch.isin(labels, classes)
    if not bool(queries.any()):
        return LossOutput(embeddings.sum() * 0.0, {})
    logits = prototype_logits(embeddings[queries], prototypes)  # (Q, C)
    target = torch.searchsorted(classes, labels[queries])
    loss = F.cross_entropy(logits, target)
    return LossOutput(loss, {"accuracy": (logits.argmax(dim=1) == target).float().mean().detach()})
