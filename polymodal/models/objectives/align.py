"""Alignment objectives over projected embeddings: contrastive (symmetric InfoNCE), triplet with
in-batch hard negatives, and soft CCA. Each is a pure function of two embedding matrices plus a
thin ``nn.Module`` registered in ``ALIGNMENTS`` against its config class.

Positives are given as a (B, B) boolean matrix: the diagonal (``positives: pair``) or every
pair of rows with the same label (``positives: label``, supervised contrastive). Under DDP the
modules gather the embeddings of every rank first (differentiably), so the negatives are the
global batch, as in CLIP.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from polymodal.config.align import CcaAlignConfig, ContrastiveAlignConfig, TripletAlignConfig
from polymodal.models.objectives.base import LossOutput
from polymodal.models.registry import ALIGNMENTS

MAX_LOGIT_SCALE = 100.0  # CLIP's cap on 1 / temperature
MIN_TEMPERATURE = 1.0 / MAX_LOGIT_SCALE


def capped_scale(log_scale: torch.Tensor) -> torch.Tensor:
    """``exp(log_scale)`` capped at :data:`MAX_LOGIT_SCALE`, with the gradient passed through at
    the cap: a learned scale that reached it can come back down (``clamp`` would stop its
    gradient for good). :func:`hold_log_scale` keeps the parameter itself at the cap."""
    over = (log_scale - math.log(MAX_LOGIT_SCALE)).clamp(min=0).detach()
    return (log_scale - over).exp()


def hold_log_scale(log_scale: torch.Tensor) -> None:
    """Clamp a learned log logit scale to the cap in place, after an optimiser step (as CLIP
    does), so that momentum cannot carry it past the cap, where it would have far to come back."""
    if isinstance(log_scale, nn.Parameter):
        with torch.no_grad():
            log_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))


@dataclass
class AlignInputs:
    """What an alignment objective sees at one step.

    Attributes:
        embeddings: raw projections (B, dim) by aligned modality.
        features: encoder pooled features (B, D_m) by aligned modality.
        present: (B,) bool by modality: where the network saw it.
        labels: (B,) class indices when positives are same-label rows, else None.
    """

    embeddings: dict[str, torch.Tensor]
    features: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    labels: torch.Tensor | None = None


# --- pure functions ------------------------------------------------------------------------------
def positive_mask(labels: torch.Tensor | None, size: int, device: torch.device | None = None) -> torch.Tensor:
    """(B, B) True where row i and row j are positives: the diagonal, or equal ``labels`` (B,)."""
    if labels is None:
        return torch.eye(size, dtype=torch.bool, device=device)
    return labels.unsqueeze(0) == labels.unsqueeze(1)


def info_nce(za: torch.Tensor, zb: torch.Tensor, logit_scale: torch.Tensor | float,
             positives: torch.Tensor | None = None) -> LossOutput:
    """Symmetric InfoNCE (CLIP); with several positives per row, supervised contrastive (SupCon).

    For logits ``s_ij = scale * cos(a_i, b_j)``, row i's loss is
    ``-1/|P_i| * sum_{j in P_i} log softmax_j(s_i)``; the loss is the mean of the a->b and
    b->a directions.

    Args:
        za, zb: (B, D) paired embeddings (normalised here).
        logit_scale: 1 / temperature.
        positives: (B, B) bool, True where a_i and b_j belong together (default: the diagonal).
    """
    logits = logit_scale * F.normalize(za, dim=-1) @ F.normalize(zb, dim=-1).T  # (B, B)
    if positives is None:
        positives = positive_mask(None, logits.shape[0], logits.device)
    weights = positives.to(logits.dtype)

    def direction(scores: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        log_prob = torch.log_softmax(scores, dim=-1)
        return -((log_prob * pos).sum(-1) / pos.sum(-1).clamp_min(1.0)).mean()

    loss = 0.5 * (direction(logits, weights) + direction(logits.T, weights.T))
    hit = positives.gather(1, logits.argmax(dim=1, keepdim=True)).float().mean()
    return LossOutput(loss, {"accuracy": hit.detach()})


def triplet_loss(za: torch.Tensor, zb: torch.Tensor, margin: float, positives: torch.Tensor | None = None, *,
                 negatives: str) -> LossOutput:
    """Hinge triplet loss on cosine similarity against one in-batch negative per anchor.

    For anchor a_i with positive similarity ``p_i = min_{j in P_i} cos(a_i, b_j)`` (with one
    positive per row, the partner itself; with label positives the hardest positive, as in
    batch-hard mining): ``max(0, margin + n_i - p_i)``, where ``n_i`` is the most similar
    negative (``hardest``, VSE++) or the most similar negative below ``p_i`` (``semihard``,
    FaceNet; the least similar negative when none is below). Averaged over anchors of both
    directions; anchors without any negative are left out.

    Args:
        za, zb: (B, D) paired embeddings (normalised here).
        margin: the required gap between the positive and the negative.
        positives: (B, B) bool (default: the diagonal).
        negatives: ``hardest`` or ``semihard``.
    """
    sims = F.normalize(za, dim=-1) @ F.normalize(zb, dim=-1).T  # (B, B)
    if positives is None:
        positives = positive_mask(None, sims.shape[0], sims.device)

    def direction(s: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hardest_pos = s.masked_fill(~pos, math.inf).amin(dim=1)
        negative = s.masked_fill(pos, -math.inf).amax(dim=1)
        if negatives == "semihard":
            below = ~pos & (s < hardest_pos[:, None])
            semihard = s.masked_fill(~below, -math.inf).amax(dim=1)
            easiest = s.masked_fill(pos, math.inf).amin(dim=1)
            negative = torch.where(below.any(dim=1), semihard, easiest)
        valid = (~pos).any(dim=1)
        return F.relu(margin + negative - hardest_pos)[valid], (hardest_pos - negative)[valid]

    loss_ab, gap_ab = direction(sims, positives)
    loss_ba, gap_ba = direction(sims.T, positives.T)
    hinge = torch.cat([loss_ab, loss_ba])
    if hinge.numel() == 0:
        return LossOutput(sims.sum() * 0.0, {})
    return LossOutput(hinge.mean(), {"gap": torch.cat([gap_ab, gap_ba]).mean().detach()})


def soft_cca_loss(za: torch.Tensor, zb: torch.Tensor, decorrelation: float = 1.0) -> LossOutput:
    """Soft CCA: CCA as ``min E||a - b||^2`` subject to zero mean and identity covariance for
    each view, with the constraints turned into penalties.

    ``loss = ||a - b||^2 / D + decorrelation * sum_v (||C_v - I||_F^2 + ||mean_v||^2) / D``,
    averaged over rows; ``C_v`` is the batch covariance of view v. At the optimum each
    coordinate of the shared space is a canonical variate, paired across views.

    Args:
        za, zb: (B, D) paired projections (B >= 2).
        decorrelation: weight of the whitening penalties.
    """
    batch, dim = za.shape
    eye = torch.eye(dim, dtype=za.dtype, device=za.device)
    match = (za - zb).pow(2).sum(-1).mean() / dim
    penalty = za.new_zeros(())
    for z in (za, zb):
        mean = z.mean(dim=0)
        centred = z - mean
        cov = centred.T @ centred / max(batch - 1, 1)  # (D, D)
        penalty = penalty + ((cov - eye).pow(2).sum() + mean.pow(2).sum()) / dim
    with torch.no_grad():
        ca, cb = za - za.mean(0), zb - zb.mean(0)
        corr = (ca * cb).sum(0) / (ca.norm(dim=0) * cb.norm(dim=0)).clamp_min(1e-8)
    return LossOutput(match + decorrelation * penalty, {"correlation": corr.mean()})


def gather_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from every DDP rank along dim 0; identity with one process.

    Float tensors go through ``torch.distributed.nn.functional.all_gather``, so gradients flow
    back to the rank that produced each row; masks and labels through the plain collective.
    Every rank must pass the same shape (the training loader drops the last partial batch).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    if tensor.is_floating_point():
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(tensor), dim=0)
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


# --- modules -------------------------------------------------------------------------------------
class PairwiseObjective(nn.Module):
    """Base of the objectives that compare two modalities' embeddings at a time.

    Each (a, b) pair is scored on the rows where both are present; the loss is the mean over
    pairs and so are the logs. Subclasses implement :meth:`pair_loss`.

    Args:
        pairs: the modality pairs to align.
    """

    gathers = True  # batch-level objectives: use the global batch under DDP

    def __init__(self, pairs: Sequence[tuple[str, str]]):
        super().__init__()
        self.pairs = [tuple(p) for p in pairs]

    def pair_loss(self, za: torch.Tensor, zb: torch.Tensor, positives: torch.Tensor) -> LossOutput:
        raise NotImplementedError  # pragma: no cover - abstract

    def forward(self, inputs: AlignInputs) -> LossOutput:
        embeddings, present, labels = inputs.embeddings, inputs.present, inputs.labels
        if self.gathers:
            embeddings = {n: gather_across_ranks(z) for n, z in embeddings.items()}
            present = {n: gather_across_ranks(p) for n, p in present.items() if n in embeddings}
            labels = gather_across_ranks(labels) if labels is not None else None
        losses, logs = [], {}
        for a, b in self.pairs:
            rows = present[a] & present[b]
            if int(rows.sum()) < 2:
                continue
            pair_labels = labels[rows] if labels is not None else None
            positives = positive_mask(pair_labels, int(rows.sum()), rows.device)
            result = self.pair_loss(embeddings[a][rows], embeddings[b][rows], positives)
            losses.append(result.loss)
            for key, value in result.logs.items():
                logs.setdefault(key, []).append(value)
        if not losses:  # no pair in this batch: a zero that still reaches every projection
            return LossOutput(sum(z.sum() for z in embeddings.values()) * 0.0, {})
        return LossOutput(torch.stack(losses).mean(), {k: torch.stack(v).mean() for k, v in logs.items()})


@ALIGNMENTS.register(ContrastiveAlignConfig)
class ContrastiveObjective(PairwiseObjective):
    """:func:`info_nce` with a learnable (or fixed) temperature, stored as CLIP's log logit scale."""

    def __init__(self, pairs: Sequence[tuple[str, str]], temperature: float = 0.07, learn_temperature: bool = True):
        super().__init__(pairs)
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @classmethod
    def from_config(cls, cfg: ContrastiveAlignConfig, *, pairs: Sequence[tuple[str, str]], **_: Any
                    ) -> ContrastiveObjective:
        return cls(pairs, cfg.temperature, cfg.learn_temperature)

    def constrain(self) -> None:
        """After an optimiser step (see :func:`hold_log_scale`)."""
        hold_log_scale(self.log_scale)

    def pair_loss(self, za: torch.Tensor, zb: torch.Tensor, positives: torch.Tensor) -> LossOutput:
        scale = capped_scale(self.log_scale)
        result = info_nce(za, zb, scale, positives)
        result.logs["temperature"] = (1.0 / scale).detach()
        return result


@ALIGNMENTS.register(TripletAlignConfig)
class TripletObjective(PairwiseObjective):
    """:func:`triplet_loss` with a fixed margin and a negative-mining rule."""

    def __init__(self, pairs: Sequence[tuple[str, str]], margin: float, negatives: str):
        super().__init__(pairs)
        self.margin = margin
        self.negatives = negatives

    @classmethod
    def from_config(cls, cfg: TripletAlignConfig, *, pairs: Sequence[tuple[str, str]], **_: Any) -> TripletObjective:
        return cls(pairs, cfg.margin, cfg.negatives)

    def pair_loss(self, za: torch.Tensor, zb: torch.Tensor, positives: torch.Tensor) -> LossOutput:
        return triplet_loss(za, zb, self.margin, positives, negatives=self.negatives)


@ALIGNMENTS.register(CcaAlignConfig)
class CcaObjective(PairwiseObjective):
    """:func:`soft_cca_loss` (positives are always the paired rows)."""

    def __init__(self, pairs: Sequence[tuple[str, str]], decorrelation: float = 1.0):
        super().__init__(pairs)
        self.decorrelation = decorrelation

    @classmethod
    def from_config(cls, cfg: CcaAlignConfig, *, pairs: Sequence[tuple[str, str]], **_: Any) -> CcaObjective:
        return cls(pairs, cfg.decorrelation)

    def pair_loss(self, za: torch.Tensor, zb: torch.Tensor, positives: torch.Tensor) -> LossOutput:
        return soft_cca_loss(za, zb, self.decorrelation)


class StackedEmbeddingLoss(nn.Module):
    """Validation loss of an alignment-only model (task ``retrieval``): the pair InfoNCE at a fixed
    temperature, averaged over the modality pairs, on the network's stacked outputs.

    Args:
        names: the aligned modalities, in the order they are stacked.
        pairs: the modality pairs to score.
        temperature: fixed softmax temperature.
    """

    def __init__(self, names: Sequence[str], pairs: Sequence[tuple[str, str]], temperature: float = 0.05):
        super().__init__()
        self.names = list(names)
        self.pairs = [tuple(p) for p in pairs]
        self.temperature = temperature

    def forward(self, outputs: torch.Tensor, target: torch.Tensor | None = None) -> LossOutput:
        """Args: outputs: (B, M * dim) normalised embeddings side by side, zero rows where absent."""
        views = dict(zip(self.names, outputs.chunk(len(self.names), dim=-1)))
        losses = []
        for a, b in self.pairs:
            rows = (views[a].abs().sum(-1) > 0) & (views[b].abs().sum(-1) > 0)
            if int(rows.sum()) >= 2:
                losses.append(info_nce(views[a][rows], views[b][rows], 1.0 / self.temperature).loss)
        return LossOutput(torch.stack(losses).mean() if losses else outputs.sum() * 0.0)


def build_objective(align: Any, pairs: Sequence[tuple[str, str]], dims: Mapping[str, int]) -> nn.Module:
    """The objective module of an ``align`` config section.

    Args:
        pairs: the modality pairs to align.
        dims: pooled encoder width per aligned modality (the VAE reconstructs these features).
    """
    return ALIGNMENTS.build(align, pairs=pairs, dims=dims)
