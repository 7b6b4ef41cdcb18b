"""The generative alignment objective: a multimodal VAE with a product-of-experts posterior
(MVAE, Wu & Goodman 2018).

Each aligned modality m gives a Gaussian expert ``N(mu_m, var_m)``: ``mu_m`` is its projection
(the retrieval embedding is this expert's mean), ``log var_m`` comes from a linear head on its
encoder features. The posterior of the modalities present in a row, one or several, is the
product of their experts and the prior ``N(0, I)`` (so a single modality's posterior mean is
``mu_m`` shrunk towards 0 by ``1 / (1 + var_m)`` per dimension, not ``mu_m`` itself). Every posterior (the joint one and each
single-modality one) must reconstruct every present modality's encoder features, which ties the
single-modality posteriors together: either modality alone embeds a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from polymodal.config.align import VaeAlignConfig
from polymodal.models.layers import mlp
from polymodal.models.objectives.align import AlignInputs
from polymodal.models.objectives.base import LossOutput
from polymodal.models.registry import ALIGNMENTS


def product_of_experts(mus: Sequence[torch.Tensor], logvars: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The product of Gaussian experts and a standard normal prior expert.

    Args:
        mus, logvars: per expert, (B, D).
        masks: per expert, (B,) bool: whether the expert takes part for that row.

    Returns:
        The joint mean and log-variance, (B, D) each.
    """
    precision = torch.ones_like(mus[0])  # the prior
    weighted = torch.zeros_like(mus[0])
    for mu, logvar, mask in zip(mus, logvars, masks):
        expert = torch.exp(-logvar) * mask.unsqueeze(-1).to(mu.dtype)  # (B, D)
        precision = precision + expert
        weighted = weighted + mu * expert
    return weighted / precision, -torch.log(precision)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, summed over dimensions: (B,)."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(-1)


def standardise(features: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Detached reconstruction targets (B, D), standardised with the statistics of the present rows."""
    features = features.detach()
    rows = features[present]
    if rows.shape[0] < 2:
        return features
    return (features - rows.mean(0)) / rows.std(0).clamp_min(1e-6)


def vae_loss(mus: Mapping[str, torch.Tensor], logvars: Mapping[str, torch.Tensor],
             targets: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor],
             decoders: Mapping[str, nn.Module], beta: float = 1.0, sample: bool = True) -> LossOutput:
    """The negative ELBO of the joint posterior plus that of each single-modality posterior.

    Per posterior: the squared error of every present modality's decoded features (a unit-variance
    Gaussian likelihood, halved) plus ``beta`` times the KL to the prior, averaged over the rows it
    covers. The total is divided by the summed feature widths so its scale does not grow with them.

    Args:
        mus, logvars: per modality, the posterior parameters (B, D).
        targets: per modality, the features to reconstruct (B, F_m).
        present: per modality, (B,) bool.
        decoders: per modality, (B, D) -> (B, F_m).
        sample: draw z with the reparameterisation trick (False: use the mean).
    """
    names = sorted(mus)
    width = sum(targets[n].shape[-1] for n in names)
    subsets = [names] + [[n] for n in names] if len(names) > 1 else [names]
    total, logs = None, {}
    for subset in subsets:
        mu, logvar = product_of_experts([mus[n] for n in subset], [logvars[n] for n in subset],
                                        [present[n] for n in subset])
        covered = torch.stack([present[n] for n in subset]).any(dim=0)  # (B,)
        if not bool(covered.any()):
            continue
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        recon = torch.zeros_like(mu[:, 0])
        for name in names:
            error = 0.5 * (decoders[name](z) - targets[name]).pow(2).sum(-1)  # (B,)
            recon = recon + error * present[name].to(error.dtype)
        kl = gaussian_kl(mu, logvar)
        part = ((recon + beta * kl)[covered]).mean() / width
        total = part if total is None else total + part
        logs[f"kl_{'joint' if len(subset) > 1 else subset[0]}"] = kl[covered].mean().detach()
    if total is None:
        return LossOutput(sum(m.sum() for m in mus.values()) * 0.0, logs)
    return LossOutput(total, logs)


@ALIGNMENTS.register(VaeAlignConfig)
class VaeObjective(nn.Module):
    """:func:`vae_loss` with its log-variance heads and feature decoders.

    Args:
        dims: encoder feature width per aligned modality.
        dim: width of the shared (latent) space.
        hidden: decoder hidden widths.
        beta: KL weight.
    """

    gathers = False  # a per-row objective: nothing to gain from other ranks' rows

    def __init__(self, dims: Mapping[str, int], dim: int, hidden: Sequence[int] = (256,), beta: float = 1.0):
        super().__init__()
        self.names = sorted(dims)
        self.logvar = nn.ModuleDict({n: nn.Linear(dims[n], dim) for n in self.names})
        self.decoders = nn.ModuleDict({n: mlp(dim, hidden, dims[n]) for n in self.names})
        self.beta = beta

    @classmethod
    def from_config(cls, cfg: VaeAlignConfig, *, dims: Mapping[str, int], **_: Any) -> VaeObjective:
        return cls(dims, cfg.dim, cfg.hidden, cfg.beta)

    def forward(self, inputs: AlignInputs) -> LossOutput:
        mus = {n: inputs.embeddings[n] for n in self.names}
        logvars = {n: self.logvar[n](inputs.features[n]).clamp(-8.0, 8.0) for n in self.names}
        present = {n: inputs.present[n] for n in self.names}
        targets = {n: standardise(inputs.features[n], present[n]) for n in self.names}
        return vae_loss(mus, logvars, targets, present, self.decoders, self.beta, sample=self.training)
