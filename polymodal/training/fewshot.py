"""Few-shot learning: prototypical networks trained on episodes.

An :class:`EpisodeSampler` makes every training batch an episode: ``ways`` classes, for each
``shots`` support rows followed by ``queries`` query rows. The :class:`PrototypicalTerm` embeds
them with the network's :class:`~polymodal.models.heads.PrototypeHead`, classifies the
queries by their nearest support prototype, and keeps the head's running prototypes (used for
validation) up to date. After training, :func:`set_class_prototypes` sets the prototypes to
the mean embedding of each training class; prediction with a support set replaces them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from polymodal.config.transfer import ProtoNetConfig
from polymodal.data.encode import freeze_inherited_objects
from polymodal.errors import ConfigError
from polymodal.models.objectives import LossOutput
from polymodal.models.objectives.fewshot import class_prototypes, prototypical_loss
from polymodal.training.terms import TRANSFER_TERMS, StepContext, Term
from polymodal.utils.device import run_batches


class EpisodeSampler(Sampler[list[int]]):
    """Batches of row indices, each an episode: per chosen class, ``shots`` support rows then up to
    ``queries`` query rows (fewer when the class has fewer rows).

    Under DDP each rank draws its own episodes (a stream seeded by ``seed`` and its rank), and the
    ``episodes`` of an epoch are shared out between the ranks (``shards_by_rank``: Lightning must
    not put a distributed sampler in front of it).

    Args:
        labels: (N,) class index of every training row.
        ways: classes per episode (at most the number of classes).
        shots / queries: rows per class.
        episodes: episodes per epoch (over all ranks).
        seed: the episodes of successive epochs continue one seeded random stream.
    """

    shards_by_rank = True

    def __init__(self, labels: np.ndarray, ways: int, shots: int, queries: int, episodes: int, seed: int = 0):
        self.by_class = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
        usable = [c for c, rows in self.by_class.items() if len(rows) > shots]
        if len(usable) < 2:
            raise ConfigError([f"transfer.shots: episodes need at least 2 classes with more than shots={shots} "
                               f"training rows; rows per class: { {c: len(r) for c, r in self.by_class.items()} }"])
        self.classes = np.asarray(usable)
        self.ways = min(ways, len(usable))
        self.shots, self.queries, self.episodes = shots, queries, episodes
        self.seed = seed
        self.rng: np.random.Generator | None = None  # made on the first epoch, once the rank is known

    @staticmethod
    def _rank_and_world() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        return math.ceil(self.episodes / self._rank_and_world()[1])

    def __iter__(self) -> Iterator[list[int]]:
        if self.rng is None:
            rank = self._rank_and_world()[0]
            self.rng = np.random.default_rng(self.seed if rank == 0 else [self.seed, rank])
        for _ in range(len(self)):
            episode = []
            for c in self.rng.choice(self.classes, size=self.ways, replace=False):
                rows = self.by_class[int(c)]
                episode += self.rng.choice(rows, size=min(len(rows), self.shots + self.queries), replace=False).tolist()
            yield episode


@TRANSFER_TERMS.register(ProtoNetConfig)
class PrototypicalTerm(Term):
    """The prototypical-network loss of an episode (see :func:`prototypical_loss`); it replaces the
    task term (the head scores prototypes, which the episodes train)."""

    name = "proto"
    replaces_task = True

    def __init__(self, shots: int, weight: float = 1.0):
        super().__init__(weight)
        self.shots = shots

    @classmethod
    def from_config(cls, cfg: ProtoNetConfig, **_: Any) -> PrototypicalTerm:
        return cls(cfg.shots, cfg.weight)

    def forward(self, ctx: StepContext) -> LossOutput:
        head = ctx.module.net.head
        labels = ctx.batch["target"]
        embeddings = head.embed(ctx.out.fused)  # (N, D)
        head.update(embeddings, labels)
        return prototypical_loss(embeddings, labels, self.shots)


def episode_loader(dataset: torch.utils.data.Dataset, labels: np.ndarray, *, ways: int, shots: int, queries: int,
                   episodes: int | None, seed: int, collate: object, num_workers: int = 0) -> DataLoader:
    """A DataLoader whose batches are episodes (``episodes`` None: as many as the rows fill)."""
    per_episode = min(ways, len(np.unique(labels))) * (shots + queries)
    count = episodes if episodes is not None else max(1, len(labels) // per_episode)
    sampler = EpisodeSampler(labels, ways, shots, queries, count, seed)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                      persistent_workers=num_workers > 0, worker_init_fn=freeze_inherited_objects)


def prototype_embeddings(net: torch.nn.Module, loader: DataLoader, device: torch.device) -> torch.Tensor:
    """(N, D) prototype-head embeddings of every row of ``loader`` (in order), in eval mode."""
    return run_batches(net, loader, lambda batch: net.head.embed(net.fuse(batch["inputs"], batch["present"])),
                       device)[0]


def set_class_prototypes(net: torch.nn.Module, loader: DataLoader, labels: np.ndarray, device: torch.device) -> None:
    """Set the head's prototypes to every class's mean embedding over ``loader``'s rows."""
    embeddings = prototype_embeddings(net, loader, device)
    classes, prototypes = class_prototypes(embeddings, torch.as_tensor(labels, dtype=torch.long))
    full = net.head.prototypes.detach().cpu().clone()
    full[classes] = prototypes.to(full.dtype)
    net.head.set_prototypes(full)
