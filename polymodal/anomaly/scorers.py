"""Anomaly scorers behind one small interface.

A scorer says how the shared :class:`~polymodal.anomaly.model.AnomalyNet` is trained
(``loss`` per training phase), what it learns from the normal training data after training
(``fit``: scales, a centre, a Gaussian) and how encoded rows are scored under a presence mask
(``score_features``: higher = more anomalous; ``score`` encodes a batch and scores it). Its
fitted statistics are buffers, so they travel in ``model.safetensors`` with the weights. Scorers register by their config name in ``SCORERS``; the names are the choices of
``anomaly.scorer`` (:data:`polymodal.config.anomaly.Scorer`), and no other name registers.

Rows carry an anomaly label in ``batch["target"]``: 0 normal, 1 a labelled anomaly, -1 unknown
(treated as normal). Labelled anomalies in the training data are never fitted as normal: the
reconstruction and Gaussian ignore them, Deep SVDD pushes them away from the centre (Deep SAD,
Ruff et al., 2020), the consistency scorer pulls their modalities apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import ClassVar, get_args

import torch
from torch import nn
from torch.nn import functional as F

from polymodal.anomaly.model import AnomalyNet, Present, ScoredFeatures
from polymodal.config.anomaly import AnomalyConfig, Scorer
from polymodal.data.dataset import Batch
from polymodal.models.objectives import LossOutput
from polymodal.models.objectives.align import gather_across_ranks, info_nce
from polymodal.utils.shapley import EXACT_MAX_MODALITIES

SCORERS: dict[str, type[AnomalyScorer]] = {}
REFERENCE_MAX_MODALITIES = EXACT_MAX_MODALITIES  # exact Shapley values' limit: beyond it, no reference per coalition
# what runs saved before attribution relative to normal rows lack, and those saved before a flag
# threshold per subset of modalities
OPTIONAL_STATE = ("scorer.normal_coalitions", "scorer.subset_thresholds")


def register_scorer(name: str) -> Callable[[type[AnomalyScorer]], type[AnomalyScorer]]:
    """Class decorator: register a scorer under its config name (``anomaly.scorer``); refuses duplicates."""

    def decorator(cls: type[AnomalyScorer]) -> type[AnomalyScorer]:
        if name not in get_args(Scorer):
            raise ValueError(f"anomaly scorer '{name}' is not a choice of anomaly.scorer {list(get_args(Scorer))}; "
                             "add it to polymodal.config.anomaly.Scorer")
        if name in SCORERS:
            raise ValueError(f"anomaly scorer '{name}' is already registered by {SCORERS[name].__qualname__}")
        cls.name = name
        SCORERS[name] = cls
        return cls

    return decorator


def _normal_rows(batch: Batch, size: int, device: torch.device) -> torch.Tensor:
    """(B,) True for rows not labelled anomalous."""
    target = batch.get("target")
    return torch.ones(size, dtype=torch.bool, device=device) if target is None else target.to(device) != 1


def _reconstruction(net: AnomalyNet, features: ScoredFeatures, present: Present
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The latent (B, L), each modality's reconstruction error (B, M) and where it counts (B, M, float)."""
    z = net.latent_of(features.encoded, present)
    errors, mask = net.reconstruction_errors(features.targets, present, z)
    return z, errors, mask.float()


def _batch_reconstruction(net: AnomalyNet, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_reconstruction` of a batch, its labelled anomalies left out of the mask."""
    z, errors, mask = _reconstruction(net, net.features(batch["inputs"], batch["present"]), batch["present"])
    return z, errors, mask * _normal_rows(batch, z.shape[0], z.device).unsqueeze(1)


class AnomalyScorer(nn.Module):
    """Base class.

    Attributes:
        name: the config name.
        phases: training phases in order, each with its fraction of ``train.epochs``.
        unscored_reason: why a row may get no score (NaN from :meth:`score`), in words; None for
            a scorer that scores every row.
        min_modalities: the fewest modalities a row must hold to be scored (a subset of fewer
            has no score, and so no flag threshold of its own).
        reconstructs: the score reads the reconstruction errors (its features carry the targets).
        learns_by_reconstruction: a training phase's loss reads them (the default loss; Deep
            SVDD's pre-training), so the training rows of a cached frozen encoder carry its
            targets (:mod:`polymodal.anomaly.cached`).
    """

    name: ClassVar[str]
    phases: ClassVar[tuple[tuple[str, float], ...]] = (("train", 1.0),)
    unscored_reason: ClassVar[str | None] = None
    min_modalities: ClassVar[int] = 1
    reconstructs: ClassVar[bool] = True
    learns_by_reconstruction: ClassVar[bool] = True

    def __init__(self, n_modalities: int, latent_dim: int, pretrain_fraction: float = 0.5):
        super().__init__()
        self.register_buffer("threshold", torch.tensor(float("inf")))
        self.register_buffer("scale", torch.ones(n_modalities))
        # the normal rows' mean score under each coalition of modalities (bit i: the i-th sorted
        # name present), what modality attribution measures a row against; NaN until fitted
        # (:meth:`AnomalyDetector.fit`), none beyond REFERENCE_MAX_MODALITIES modalities
        size = 1 << n_modalities if n_modalities <= REFERENCE_MAX_MODALITIES else 0
        self.register_buffer("normal_coalitions", torch.full((size,), float("nan")))
        # the flag threshold of a row holding only the modalities of each subset (same bits), at the
        # validation false-positive rate of ``threshold`` (the full set's: metrics.anomaly.subset_thresholds);
        # NaN where there is none (the row is held to ``threshold``), all NaN for a run fitted before
        self.register_buffer("subset_thresholds", torch.full((size,), float("nan")))

    @classmethod
    def from_config(cls, settings: AnomalyConfig, n_modalities: int) -> AnomalyScorer:
        """The scorer for the ``anomaly`` section's settings."""
        return cls(n_modalities, settings.latent_dim, settings.pretrain_fraction)

    def loss(self, net: AnomalyNet, batch: Batch, phase: str) -> LossOutput:
        """Training loss of one batch in ``phase``."""
        return self.reconstruction_loss(net, batch)

    def reconstruction_loss(self, net: AnomalyNet, batch: Batch) -> LossOutput:
        """Mean squared reconstruction error over the present modalities of the normal rows."""
        _, errors, mask = _batch_reconstruction(net, batch)
        loss = (errors * mask).sum() / mask.sum().clamp_min(1.0)
        return LossOutput(loss, {"reconstruction": loss.detach()})

    def start_phase(self, net: AnomalyNet, phase: str, batches: Callable[[], Iterable[Batch]]) -> None:  # noqa: B027
        """Called before each training phase (Deep SVDD fixes its centre here)."""

    @torch.no_grad()
    def fit(self, net: AnomalyNet, batches: Iterable[Batch]) -> None:
        """Learn statistics from the normal training rows after training (default: each modality's
        mean reconstruction error, so that modalities weigh equally in the score)."""
        total, count = torch.zeros_like(self.scale), torch.zeros_like(self.scale)
        for batch in batches:
            _, errors, mask = _batch_reconstruction(net, batch)
            total += (errors * mask).sum(dim=0)
            count += mask.sum(dim=0)
        self.scale.copy_(torch.where(count > 0, total / count.clamp_min(1.0), torch.ones_like(total)).clamp_min(1e-8))

    def score(self, net: AnomalyNet, batch: Batch) -> torch.Tensor:
        """(B,) anomaly scores of a batch; higher = more anomalous."""
        features = net.features(batch["inputs"], batch["present"], targets=self.reconstructs)
        return self.score_features(net, features, batch["present"])

    def score_features(self, net: AnomalyNet, features: ScoredFeatures, present: Present) -> torch.Tensor:
        """(B,) anomaly scores of encoded rows with the modalities of ``present`` (which may hide
        more than were encoded: modality attribution scores one encoding under many masks); NaN
        for a row holding no reconstructed modality (only texts), which has nothing to score."""
        _, errors, mask = _reconstruction(net, features, present)
        held = mask.sum(dim=1)
        score = (errors / self.scale * mask).sum(dim=1) / held.clamp_min(1.0)
        return torch.where(held > 0, score, torch.full_like(score, float("nan")))


@register_scorer("autoencoder")
class ReconstructionScorer(AnomalyScorer):
    """Reconstruction error of the multimodal autoencoder, each modality's error divided by its
    mean on the training data, averaged over the present modalities. Texts are not reconstructed
    (their inputs are token ids): a row holding only texts has no score (NaN, flagged)."""

    unscored_reason = ("no reconstructed modality present: the autoencoder scores the reconstruction of images, "
                       "audio, signals, videos and tables, not of texts")


@register_scorer("deep_svdd")
class DeepSvddScorer(AnomalyScorer):
    """Autoencoder pre-training, then the squared distance of the latent to a fixed centre
    (the mean latent of the normal training rows after pre-training) is minimised (one-class
    Deep SVDD); labelled anomalies are pushed away by the inverse distance (Deep SAD).

    Ruff et al. rule out the collapse of every input onto the centre with a network without
    biases; only the latent projection lacks one here (the encoders, the fusion's presence flags
    and layer norm have theirs), so that solution is reachable, and a long SVDD phase drifts
    towards it (README, Known limits)."""

    phases = (("pretrain", 0.5), ("svdd", 0.5))
    reconstructs = False  # scored by distance; the pre-training's loss reconstructs from its own batch

    def __init__(self, n_modalities: int, latent_dim: int, pretrain_fraction: float = 0.5):
        super().__init__(n_modalities, latent_dim)
        self.phases = (("pretrain", pretrain_fraction), ("svdd", 1.0 - pretrain_fraction))
        self.register_buffer("center", torch.zeros(latent_dim))

    def loss(self, net: AnomalyNet, batch: Batch, phase: str) -> LossOutput:
        if phase == "pretrain":
            return self.reconstruction_loss(net, batch)
        z = net(batch["inputs"], batch["present"])
        dist = (z - self.center).pow(2).sum(dim=1)  # (B,)
        normal = _normal_rows(batch, z.shape[0], z.device)
        per_row = torch.where(normal, dist, 1.0 / (dist + 1e-6))
        loss = per_row.mean()
        return LossOutput(loss, {"distance": dist[normal].mean().detach() if bool(normal.any()) else dist.new_zeros(())})

    @torch.no_grad()
    def start_phase(self, net: AnomalyNet, phase: str, batches: Callable[[], Iterable[Batch]]) -> None:
        if phase != "svdd":
            return
        total, count = torch.zeros_like(self.center), 0
        for batch in batches():
            z = net(batch["inputs"], batch["present"])
            z = z[_normal_rows(batch, z.shape[0], z.device)]
            total += z.sum(dim=0)
            count += z.shape[0]
        center = total / max(count, 1)
        # a coordinate near zero is easy to reach with zero weights: keep it away (Ruff et al., 2018)
        eps = 0.1
        center = torch.where(center.abs() < eps, torch.where(center < 0, -eps, eps), center)
        self.center.copy_(center)

    def fit(self, net: AnomalyNet, batches: Iterable[Batch]) -> None:
        """Nothing to learn after training: the centre was fixed before the SVDD phase."""

    def score_features(self, net: AnomalyNet, features: ScoredFeatures, present: Present) -> torch.Tensor:
        return (net.latent_of(features.encoded, present) - self.center).pow(2).sum(dim=1)


@register_scorer("mahalanobis")
class MahalanobisScorer(AnomalyScorer):
    """Squared Mahalanobis distance of the autoencoder's latent to a Gaussian fitted on the
    normal training rows (Ledoit-Wolf shrunk covariance)."""

    reconstructs = False

    def __init__(self, n_modalities: int, latent_dim: int, pretrain_fraction: float = 0.5):
        super().__init__(n_modalities, latent_dim)
        self.register_buffer("mean", torch.zeros(latent_dim))
        self.register_buffer("precision", torch.eye(latent_dim))

    @torch.no_grad()
    def fit(self, net: AnomalyNet, batches: Iterable[Batch]) -> None:
        from sklearn.covariance import LedoitWolf

        latents = []
        for batch in batches:
            z = net(batch["inputs"], batch["present"])
            latents.append(z[_normal_rows(batch, z.shape[0], z.device)].double().cpu())
        z = torch.cat(latents).numpy()
        estimate = LedoitWolf().fit(z)
        self.mean.copy_(torch.as_tensor(estimate.location_, dtype=self.mean.dtype))
        self.precision.copy_(torch.as_tensor(estimate.precision_, dtype=self.precision.dtype))

    def score_features(self, net: AnomalyNet, features: ScoredFeatures, present: Present) -> torch.Tensor:
        d = net.latent_of(features.encoded, present) - self.mean  # (B, L)
        return ((d @ self.precision) * d).sum(dim=1)


@register_scorer("consistency")
class ConsistencyScorer(AnomalyScorer):
    """Cross-modal agreement in a shared space: each modality is projected into one space and
    every pair of modalities is aligned on the normal rows with symmetric InfoNCE (CLIP: a row's
    own pair against the batch's other rows, every rank's under DDP); labelled anomalies have
    their pairs pushed apart.
    The score is the scaled cosine *dissimilarity* averaged over the row's present pairs: "these
    modalities do not belong together". A row with fewer than two present modalities has nothing to
    compare: its score is NaN (flagged, as a row that cannot be checked; left out of the metrics), not a
    neutral number.
    """

    reconstructs = False
    learns_by_reconstruction = False  # aligned in the shared space
    unscored_reason = "fewer than two modalities present: the consistency scorer compares modalities"
    min_modalities = 2

    def loss(self, net: AnomalyNet, batch: Batch, phase: str) -> LossOutput:
        z = net.shared_embeddings(net.encode(batch["inputs"], batch["present"]))
        scale = net.similarity_scale()
        first = next(iter(z.values()))
        normal = gather_across_ranks(_normal_rows(batch, first.shape[0], first.device))
        # under DDP every rank's rows (differentiably), so the negatives are the global batch (CLIP)
        z = {n: gather_across_ranks(e) for n, e in z.items()}
        present = {n: gather_across_ranks(batch["present"][n]) for n in z}
        losses, hits = [], []
        for a, b in itertools.combinations(net.names, 2):
            both = present[a].bool() & present[b].bool()
            rows = both & normal
            if int(rows.sum()) >= 2:
                aligned = info_nce(z[a][rows], z[b][rows], scale)
                losses.append(aligned.loss)
                hits.append(aligned.logs["accuracy"])
            apart = both & ~normal
            if bool(apart.any()):  # labelled anomalies: their own pair should disagree
                losses.append(F.softplus(scale * (z[a][apart] * z[b][apart]).sum(-1)).mean())
        if not losses:  # no row with two present modalities: nothing to align in this batch
            zero = scale * 0.0
            return LossOutput(zero, {"pair_accuracy": zero.detach()})
        loss = torch.stack(losses).mean()
        accuracy = torch.stack(hits).mean() if hits else loss.new_zeros(())
        return LossOutput(loss, {"pair_accuracy": accuracy.detach()})

    def fit(self, net: AnomalyNet, batches: Iterable[Batch]) -> None:
        """Nothing to learn after training."""

    def score_features(self, net: AnomalyNet, features: ScoredFeatures, present: Present) -> torch.Tensor:
        sims, mask = net.pair_agreement(features.encoded, present)
        mask = mask.float()
        pairs = mask.sum(dim=1)  # (B,) present pairs per row
        score = -net.similarity_scale() * (sims * mask).sum(dim=1) / pairs.clamp_min(1.0)
        return torch.where(pairs > 0, score, torch.full_like(score, float("nan")))


def build_scorer(settings: AnomalyConfig, n_modalities: int) -> AnomalyScorer:
    """The scorer ``settings.scorer`` names, built from the ``anomaly`` section by its
    ``from_config`` (a scorer with settings of its own reads them there)."""
    if settings.scorer not in SCORERS:
        raise ValueError(f"anomaly.scorer must be one of {sorted(SCORERS)}; got '{settings.scorer}'")
    return SCORERS[settings.scorer].from_config(settings, n_modalities)
