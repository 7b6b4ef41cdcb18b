"""Domain adaptation as a loss term: DANN, CDAN(+E), multi-kernel MMD and CORAL.

The labelled batch is the source domain, the unlabelled batch the target domain; both went
through the network in one forward pass (:mod:`polymodal.training.unlabeled`). The term aligns
the fused representation (``on: fused``) or chosen modalities' encoder outputs (``on: [audio]``),
each with its own loss module (and discriminator), leaving the other modalities as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from polymodal.config.transfer import CdanConfig, CoralConfig, DannConfig, DomainConfig, MmdConfig
from polymodal.models.objectives import LossOutput
from polymodal.models.registry import DOMAIN_LOSSES
from polymodal.training.terms import TRANSFER_TERMS, StepContext, Term
from polymodal.training.unlabeled import take_rows, view_rows

FUSED = "fused"


def aligned_dims(cfg: DomainConfig, net: Any) -> dict[str, int]:
    """Width of every representation the method aligns, by key (``fused`` or a modality name)."""
    if cfg.on == FUSED:
        return {FUSED: net.fusion.output_dim}
    return {name: net.encoders[name].output_dim for name in sorted(cfg.on)}


def domain_features(ctx: StepContext, key: str, classes: slice
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source and target features of one representation, and the class logits of those rows.

    The target rows are the unlabelled rows as loaded (not views other terms appended). For the
    fused representation, the source rows modality dropout left whole: a row with a modality
    hidden reads its learned missing-embedding, which no target row does (their modalities are
    never hidden), a gap between the domains the term would learn to tell them apart by, and
    close by pulling the dropped rows towards whole ones, against the dropout. For an encoder's
    output, the rows where the modality is present.

    Returns:
        source features (Bs', D), target features (Bt', D), source logits (Bs', C), target logits (Bt', C).
    """
    out, target_out = ctx.out, ctx.unlabeled_out
    if out is None or target_out is None or ctx.unlabeled is None:
        raise ValueError("domain adaptation needs the unlabelled (target) batch; the training step has none")
    target_out = take_rows(target_out, view_rows(ctx.unlabeled))
    if key == FUSED:
        whole = _left_whole(ctx)
        return (out.fused.pooled[whole], target_out.fused.pooled, out.outputs[whole, classes],
                target_out.outputs[:, classes])
    rows_s, rows_t = ctx.present[key], ctx.unlabeled["present"][key][view_rows(ctx.unlabeled)]
    return (out.features[key].pooled[rows_s], target_out.features[key].pooled[rows_t],
            out.outputs[rows_s, classes], target_out.outputs[rows_t, classes])


def _left_whole(ctx: StepContext) -> torch.Tensor | slice:
    """The labelled rows whose modalities modality dropout hid none of (every row without dropout)."""
    given = ctx.batch.get("present", ctx.present)
    if given is ctx.present:
        return slice(None)
    whole = None
    for name, seen in ctx.present.items():
        same = seen == given[name]
        whole = same if whole is None else whole & same
    return slice(None) if whole is None else whole


@TRANSFER_TERMS.register(DannConfig)
@TRANSFER_TERMS.register(CdanConfig)
@TRANSFER_TERMS.register(MmdConfig)
@TRANSFER_TERMS.register(CoralConfig)
class DomainTerm(Term):
    """The domain loss averaged over the aligned representations.

    Args:
        losses: a loss module per representation (``fused`` or modality names).
        weight: weight in the training objective.
        classes: the main task's columns of the outputs (CDAN conditions on their softmax).
    """

    name = "domain"

    def __init__(self, losses: Mapping[str, nn.Module], weight: float, classes: slice):
        super().__init__(weight)
        self.losses = nn.ModuleDict(dict(losses))
        self.classes = classes

    @classmethod
    def from_config(cls, cfg: DomainConfig, *, net: Any, classes: slice, config: Any, **_: Any) -> DomainTerm:
        return build_domain_term(cfg, net, classes.stop - classes.start, config.train.seed)

    def forward(self, ctx: StepContext) -> LossOutput:
        values, logs = [], {}
        for key, loss in self.losses.items():
            source, target, source_logits, target_logits = domain_features(ctx, key, self.classes)
            if source.shape[0] < 2 or target.shape[0] < 2:
                continue  # too few rows with this modality in the step to compare distributions
            result = loss(source, target, source_logits=source_logits, target_logits=target_logits,
                          progress=ctx.progress)
            values.append(result.loss)
            prefix = "" if len(self.losses) == 1 else f"{key}_"
            logs.update({f"{prefix}{k}": v for k, v in result.logs.items()})
        if not values:
            return LossOutput(ctx.out.outputs.sum() * 0.0, logs)
        return LossOutput(torch.stack(values).mean(), logs)


def build_domain_term(cfg: DomainConfig, net: Any, n_classes: int, seed: int = 0) -> DomainTerm:
    """The :class:`DomainTerm` of a ``transfer`` section for a built network."""
    losses = {key: DOMAIN_LOSSES.build(cfg, in_dim=dim, n_classes=n_classes, seed=seed)
              for key, dim in aligned_dims(cfg, net).items()}
    return DomainTerm(losses, cfg.weight, slice(0, n_classes))
