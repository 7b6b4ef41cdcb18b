"""The component registries of the model layer, each keyed by config class (see polymodal.registry)."""

from __future__ import annotations

from torch import nn

from polymodal.registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")
FUSIONS: Registry[nn.Module] = Registry("fusion")
HEADS: Registry[nn.Module] = Registry("head")
PROJECTIONS: Registry[nn.Module] = Registry("projection")
ALIGNMENTS: Registry[nn.Module] = Registry("alignment objective")
DOMAIN_LOSSES: Registry[nn.Module] = Registry("domain-adaptation loss")
