"""LoRA adapters for pretrained encoders, through ``peft`` (optional dependency).

``add_lora(module, targets, r, alpha, dropout)`` replaces each target layer (``nn.Linear``,
``nn.Conv2d``...) of ``module`` in place by a peft LoRA layer computing
``W x + (alpha / r) * B A x``; ``B`` starts at zero, so the adapted module first computes
exactly what it did before. State-dict keys of the adapted layers gain ``base_layer.`` (the
pretrained weights) and ``lora_A.default.`` / ``lora_B.default.`` (the adapters): build, adapt,
then load a saved state, in that order.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from torch import nn

from polymodal.errors import EncoderSettingError, MissingDependencyError


def add_lora(module: nn.Module, targets: Sequence[str], r: int, alpha: float, dropout: float) -> nn.Module:
    """Inject LoRA layers into ``module`` (in place) and return it.

    Args:
        targets: module names (full dotted names or name suffixes, peft's matching rule).

    Raises:
        MissingDependencyError: peft is not installed.
        ValueError: no target matches a layer peft can adapt.
    """
    try:
        import peft
    except ImportError:
        raise MissingDependencyError("peft", "LoRA (encoder.lora)") from None
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    requires = {id(p): p.requires_grad for p in module.parameters()}
    try:
        peft.inject_adapter_in_model(config, module)
    except ValueError as err:
        raise EncoderSettingError("lora.targets", f"cannot adapt {list(targets)[:8]} ({err})") from None
    for param in module.parameters():  # peft freezes everything else; trainability is freeze's job
        param.requires_grad_(requires.get(id(param), True))
    return module


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The adapter parameters of every LoRA layer inside ``module`` (none without peft)."""
    if "peft" not in sys.modules:  # nothing can have been adapted
        return []
    from peft.tuners.lora import LoraLayer

    params: list[nn.Parameter] = []
    for layer in module.modules():
        if isinstance(layer, LoraLayer):
            for name in layer.adapter_layer_names:
                params.extend(getattr(layer, name).parameters())
    return params


def linear_and_pointwise(module: nn.Module) -> list[str]:
    """Names of every ``nn.Linear`` and every 1x1, ungrouped ``nn.Conv2d`` inside ``module``: the
    layers LoRA adapts in a CNN (the pointwise convolutions hold most of an EfficientNet's
    weights) or a ViT (all its projections)."""
    names = []
    for name, layer in module.named_modules():
        pointwise = isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1
        if name and (isinstance(layer, nn.Linear) or pointwise):
            names.append(name)
    return names
