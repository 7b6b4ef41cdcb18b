"""The training side of alignment: a loss term that projects the encoder outputs of a step into
the shared space and applies the configured objective.

With task ``retrieval`` it is the only term; otherwise it is added beside the task loss with
weight ``align.weight``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from polymodal.config.align import aligned_modalities, modality_pairs
from polymodal.models.model import MultimodalNet
from polymodal.models.objectives import LossOutput
from polymodal.models.objectives.align import AlignInputs, StackedEmbeddingLoss, build_objective
from polymodal.training.terms import StepContext, Term


class AlignTerm(Term):
    """The alignment objective on a step's projected encoder outputs.

    Args:
        objective: an alignment objective (``forward(AlignInputs) -> LossOutput``).
        modalities: the aligned modalities.
        use_labels: pass the batch's class labels (``positives: label``).
        weight: weight in the step's total loss.
    """

    name = "align"

    def __init__(self, objective: nn.Module, modalities: Sequence[str], use_labels: bool = False, weight: float = 1.0):
        super().__init__(weight)
        self.objective = objective
        self.modalities = sorted(modalities)
        self.use_labels = use_labels

    def forward(self, ctx: StepContext) -> LossOutput:
        features = ctx.out.features
        if features is None:
            features = ctx.module.net.encode(ctx.batch["inputs"], ctx.present)
        pooled = {n: features[n].pooled for n in self.modalities}
        inputs = AlignInputs(
            embeddings=ctx.module.net.projections(pooled),
            features=pooled,
            present={n: ctx.present[n] for n in self.modalities},
            labels=ctx.batch["target"] if self.use_labels else None,
        )
        return self.objective(inputs)


def build_align_term(config: Any, net: MultimodalNet) -> AlignTerm:
    """The alignment term of a config (its ``align`` section must be set).

    Args:
        config: a :class:`~polymodal.config.Config`.
        net: the network, whose encoders give the feature widths.
    """
    align = config.align
    names = aligned_modalities(config)
    dims = {n: net.encoders[n].output_dim for n in names}
    objective = build_objective(align, modality_pairs(config), dims)
    weight = 1.0 if config.task == "retrieval" else align.weight
    return AlignTerm(objective, names, use_labels=align.positives == "label", weight=weight)


def retrieval_validation_loss(config: Any) -> StackedEmbeddingLoss:
    """The validation loss of an alignment-only (task ``retrieval``) model."""
    return StackedEmbeddingLoss(aligned_modalities(config), modality_pairs(config))
