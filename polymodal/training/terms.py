"""Loss terms: what a training step adds up.

Every objective a run trains with is a :class:`Term` (an ``nn.Module``, so a term can own
parameters, such as a domain discriminator or a learnable temperature). The Lightning module
sums ``weight * term(ctx)`` over its terms; a new training recipe (alignment, domain
adaptation, pseudo-labelling, distillation...) is a new term, not a new training loop. The term of
each ``transfer`` method registers in ``TRANSFER_TERMS`` against the method's config class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from polymodal.data.dataset import Batch
from polymodal.models.model import NetOutput
from polymodal.models.objectives import LossOutput, TaskLoss, unimodal_loss
from polymodal.registry import Registry


@dataclass
class StepContext:
    """Everything a term may need at one training step.

    Attributes:
        module: the LightningModule (``module.net`` is the network).
        batch: the labelled batch (``inputs``, ``present``, ``target``...).
        present: presence masks after modality dropout (what the network saw).
        out: the network's training outputs on ``batch``.
        unlabeled: a batch from the unlabelled manifest, when the run has one (with the views
            terms added through :meth:`Term.prepare_unlabeled`).
        progress: fraction of training done, in [0, 1] (for schedules such as DANN's).
        unlabeled_out: the network's training outputs on ``unlabeled`` (computed in the same
            forward pass as ``out``; see :mod:`polymodal.training.unlabeled`).
    """

    module: Any
    batch: Batch
    present: dict[str, torch.Tensor]
    out: NetOutput
    unlabeled: Batch | None
    progress: float
    unlabeled_out: NetOutput | None = None


class Term(nn.Module):
    """Base class: ``forward(ctx) -> LossOutput``; ``weight`` scales it in the total.

    Attributes:
        replaces_task: the term takes the place of the :class:`TaskTerm` instead of adding to it.
    """

    name = "term"
    replaces_task: ClassVar[bool] = False

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def forward(self, ctx: StepContext) -> LossOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare_unlabeled(self, batch: Batch) -> Batch:
        """The unlabelled batch this term needs forwarded with the labelled one (default: as it
        is); FixMatch appends a strongly augmented copy of every row."""
        return batch


# transfer method config class -> its term, built by ``from_config(cfg, *, net, classes, config,
# pipeline, teacher)`` (see polymodal.training.transfer)
TRANSFER_TERMS: Registry[Term] = Registry("transfer term")


class TaskTerm(Term):
    """The task loss on the fused outputs."""

    name = "task"

    def __init__(self, loss: TaskLoss, weight: float = 1.0):
        super().__init__(weight)
        self.loss = loss

    def forward(self, ctx: StepContext) -> LossOutput:
        return self.loss(ctx.out.outputs, ctx.batch["target"])


class UnimodalTerm(Term):
    """Each modality's own task loss, on the samples where the network saw it."""

    name = "unimodal"

    def __init__(self, loss: TaskLoss, weight: float):
        super().__init__(weight)
        self.loss = loss

    def forward(self, ctx: StepContext) -> LossOutput:
        return unimodal_loss(ctx.out.unimodal, ctx.present, ctx.batch["target"], self.loss)


class SubsetTerm(UnimodalTerm):
    """The task loss of each modality alone through the fused network's missing path.

    From the encoder features of the step (computed once), the fusion and the head run again
    once per modality with every other modality hidden, as when only that modality arrives at
    prediction time; the term is the mean over modalities of the task loss on the samples where
    that modality was seen. Unlike modality dropout, every sample trains the whole-row path and
    every single-modality path at each step (multi-task training over modality subsets, cf. Ma
    et al., "Are Multimodal Transformers Robust to Missing Modality?", CVPR 2022).
    """

    name = "subset"

    @staticmethod
    def alone_outputs(net: Any, features: dict[str, Any], present: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per modality, the network's outputs (B, n_outputs) with only that modality shown
        (rows that lack it get outputs too, which callers leave out)."""
        alone = {}
        for name, rows in sorted(present.items()):
            if bool(rows.any()):
                shown = {n: rows if n == name else torch.zeros_like(p) for n, p in present.items()}
                alone[name] = net.outputs_from_features(features, shown)
        return alone

    def forward(self, ctx: StepContext) -> LossOutput:
        alone = self.alone_outputs(ctx.module.net, ctx.out.features, ctx.present)
        return unimodal_loss(alone, ctx.present, ctx.batch["target"], self.loss)
