"""Domain-adaptation losses between source features (labelled) and target features (unlabelled).

Pure functions (``gradient_reverse``, ``dann_schedule``, ``domain_adversarial_loss``,
``multilinear_map``, ``entropy_weights``, ``mmd_loss``, ``coral_loss``) plus thin modules that hold
what the losses learn (a domain discriminator, a random multilinear map). Every module has the
same face: ``forward(source (Bs, D), target (Bt, D), *, source_logits, target_logits, progress)
-> LossOutput``, and is registered in ``DOMAIN_LOSSES`` against its config class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from polymodal.config.transfer import CdanConfig, CoralConfig, DannConfig, MmdConfig
from polymodal.models.objectives.base import LossOutput
from polymodal.models.registry import DOMAIN_LOSSES


class _GradientReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # noqa: ANN001 - autograd signature
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        return -ctx.coeff * grad, None


def gradient_reverse(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """Identity forward; the backward pass multiplies the gradient by ``-coeff``."""
    return _GradientReverse.apply(x, coeff)


def dann_schedule(progress: float, gamma: float = 10.0) -> float:
    """DANN's gradient-reversal coefficient ``2 / (1 + exp(-gamma * p)) - 1``: 0 at the start,
    close to 1 from about a third of training on (Ganin et al., 2016)."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def domain_adversarial_loss(source_logits: torch.Tensor, target_logits: torch.Tensor,
                            source_weights: torch.Tensor | None = None,
                            target_weights: torch.Tensor | None = None) -> LossOutput:
    """Binary cross-entropy of a domain discriminator (source = 1, target = 0).

    Args:
        source_logits / target_logits: (Bs,) / (Bt,) discriminator logits.
        source_weights / target_weights: optional per-sample weights, each averaging 1.
    """
    logits = torch.cat([source_logits, target_logits])
    labels = torch.cat([torch.ones_like(source_logits), torch.zeros_like(target_logits)])
    weights = None
    if source_weights is not None and target_weights is not None:
        weights = torch.cat([source_weights, target_weights])
    loss = F.binary_cross_entropy_with_logits(logits, labels, weight=weights)
    accuracy = ((logits > 0).float() == labels).float().mean()
    return LossOutput(loss, {"accuracy": accuracy.detach()})


def multilinear_map(features: torch.Tensor, probs: torch.Tensor,
                    random: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """CDAN's conditioning of features (B, D) on class probabilities (B, K).

    Without ``random``: the flattened outer product (B, D * K). With ``random = (Rf (D, R), Rg (K, R))``:
    the randomised multilinear map ``(f Rf) * (g Rg) / sqrt(R)`` (B, R).
    """
    if random is None:
        return torch.bmm(probs.unsqueeze(2), features.unsqueeze(1)).flatten(1)
    rf, rg = random
    return (features @ rf) * (probs @ rg) / math.sqrt(rf.shape[1])


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """(B,) entropy of each row of class probabilities (B, K)."""
    return -(probs * torch.log(probs.clamp_min(1e-8))).sum(dim=1)


def entropy_weights(probs: torch.Tensor) -> torch.Tensor:
    """CDAN+E sample weights ``1 + exp(-entropy)``, normalised to average 1 over the batch."""
    weights = 1.0 + torch.exp(-entropy(probs))
    return weights / weights.mean()


def mmd_loss(source: torch.Tensor, target: torch.Tensor, bandwidths: Sequence[float] = (0.125, 0.25, 0.5, 1.0, 2.0)
             ) -> torch.Tensor:
    """Multi-kernel maximum mean discrepancy (biased estimate) with Gaussian kernels.

    Each kernel is ``exp(-|x - y|^2 / (b * m))`` with ``m`` the mean squared distance over the
    joint batch (not back-propagated) and ``b`` in ``bandwidths``; the kernels are averaged.

    Args:
        source: (Bs, D); target: (Bt, D).
    """
    joint = torch.cat([source, target])
    dist = torch.cdist(joint, joint).pow(2)  # (B, B)
    n = joint.shape[0]
    scale = dist.detach().sum() / max(n * n - n, 1)
    kernel = sum(torch.exp(-dist / (b * scale.clamp_min(1e-8))) for b in bandwidths) / len(bandwidths)
    ns = source.shape[0]
    xx, yy, xy = kernel[:ns, :ns].mean(), kernel[ns:, ns:].mean(), kernel[:ns, ns:].mean()
    return xx + yy - 2.0 * xy


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared differences of the feature means plus of the covariance matrices (both averaged
    over entries), as in Deep CORAL with the means added. The covariance term is ``||C_s - C_t||^2 / d^2``,
    4x Deep CORAL's ``1 / (4 d^2)`` normalisation: a weight ``w`` here is the paper's ``4 w``.

    Args:
        source: (Bs, D); target: (Bt, D).
    """
    mean_s, mean_t = source.mean(dim=0, keepdim=True), target.mean(dim=0, keepdim=True)
    cs, ct = source - mean_s, target - mean_t
    cov_s = cs.T @ cs / max(source.shape[0] - 1, 1)
    cov_t = ct.T @ ct / max(target.shape[0] - 1, 1)
    return (mean_s - mean_t).pow(2).mean() + (cov_s - cov_t).pow(2).mean()


class DomainDiscriminator(nn.Module):
    """An MLP (Linear-BatchNorm-ReLU per hidden width) giving one domain logit per sample."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)  # (B,)


@DOMAIN_LOSSES.register(DannConfig)
class DannLoss(nn.Module):
    """DANN: the discriminator tells source from target through a gradient-reversal layer whose
    coefficient follows :func:`dann_schedule`."""

    def __init__(self, in_dim: int, hidden: Sequence[int] = (256, 256), gamma: float = 10.0):
        super().__init__()
        self.discriminator = DomainDiscriminator(in_dim, hidden)
        self.gamma = gamma

    @classmethod
    def from_config(cls, cfg: DannConfig, *, in_dim: int, **_: Any) -> DannLoss:
        return cls(in_dim, cfg.hidden, cfg.gamma)

    def forward(self, source: torch.Tensor, target: torch.Tensor, *, source_logits: torch.Tensor | None = None,
                target_logits: torch.Tensor | None = None, progress: float = 0.0) -> LossOutput:
        coeff = dann_schedule(progress, self.gamma)
        domain = self.discriminator(gradient_reverse(torch.cat([source, target]), coeff))
        out = domain_adversarial_loss(domain[: source.shape[0]], domain[source.shape[0]:])
        out.logs["coeff"] = out.loss.new_tensor(coeff)  # on the loss's device (logged with sync_dist)
        return out


@DOMAIN_LOSSES.register(CdanConfig)
class CdanLoss(nn.Module):
    """CDAN(+E): the discriminator sees features conditioned on the (detached) class predictions.

    Args:
        in_dim / n_classes: feature width D and number of classes K.
        random_dim / max_outer: the outer product (D * K wide) is used when ``D * K <= max_outer``,
            else a fixed random multilinear map of width ``random_dim``.
        entropy: weigh samples by :func:`entropy_weights` (per domain).
    """

    def __init__(self, in_dim: int, n_classes: int, hidden: Sequence[int] = (256, 256), gamma: float = 10.0,
                 entropy: bool = True, random_dim: int = 1024, max_outer: int = 4096, seed: int = 0):
        super().__init__()
        self.gamma = gamma
        self.entropy = entropy
        self.randomized = in_dim * n_classes > max_outer
        if self.randomized:
            g = torch.Generator().manual_seed(seed)
            self.register_buffer("rf", torch.randn(in_dim, random_dim, generator=g), persistent=False)
            self.register_buffer("rg", torch.randn(n_classes, random_dim, generator=g), persistent=False)
        self.discriminator = DomainDiscriminator(random_dim if self.randomized else in_dim * n_classes, hidden)

    @classmethod
    def from_config(cls, cfg: CdanConfig, *, in_dim: int, n_classes: int, seed: int = 0, **_: Any) -> CdanLoss:
        return cls(in_dim, n_classes, cfg.hidden, cfg.gamma, cfg.entropy, cfg.random_dim, cfg.max_outer, seed)

    def forward(self, source: torch.Tensor, target: torch.Tensor, *, source_logits: torch.Tensor | None = None,
                target_logits: torch.Tensor | None = None, progress: float = 0.0) -> LossOutput:
        if source_logits is None or target_logits is None:
            raise ValueError("CDAN conditions on class predictions: source_logits and target_logits are required")
        coeff = dann_schedule(progress, self.gamma)
        probs = torch.cat([source_logits, target_logits]).detach().float().softmax(dim=1)
        joint = multilinear_map(torch.cat([source, target]), probs, (self.rf, self.rg) if self.randomized else None)
        domain = self.discriminator(gradient_reverse(joint, coeff))
        ns = source.shape[0]
        weights = (entropy_weights(probs[:ns]), entropy_weights(probs[ns:])) if self.entropy else (None, None)
        out = domain_adversarial_loss(domain[:ns], domain[ns:], *weights)
        out.logs["coeff"] = out.loss.new_tensor(coeff)  # on the loss's device (logged with sync_dist)
        return out


@DOMAIN_LOSSES.register(MmdConfig)
class MmdLoss(nn.Module):
    """Multi-kernel MMD between the domains (:func:`mmd_loss`)."""

    def __init__(self, bandwidths: Sequence[float] = (0.125, 0.25, 0.5, 1.0, 2.0)):
        super().__init__()
        self.bandwidths = tuple(bandwidths)

    @classmethod
    def from_config(cls, cfg: MmdConfig, **_: Any) -> MmdLoss:
        return cls(cfg.bandwidths)

    def forward(self, source: torch.Tensor, target: torch.Tensor, **_: object) -> LossOutput:
        return LossOutput(mmd_loss(source.float(), target.float(), self.bandwidths))


@DOMAIN_LOSSES.register(CoralConfig)
class CoralLoss(nn.Module):
    """Mean and covariance alignment between the domains (:func:`coral_loss`)."""

    @classmethod
    def from_config(cls, cfg: CoralConfig, **_: Any) -> CoralLoss:
        return cls()

    def forward(self, source: torch.Tensor, target: torch.Tensor, **_: object) -> LossOutput:
        return LossOutput(coral_loss(source.float(), target.float()))
