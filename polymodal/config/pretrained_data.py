"""The input a pretrained image backbone expects, as preprocessing settings.

timm declares each architecture's data config (``input_size``, ``mean``, ``std``) in its
pretrained config; torchvision's ImageNet weights use the ImageNet mean and std. These become the
defaults of the modality's ``preprocess`` (see ``polymodal.config.finetune.follow_encoder_preprocess``).
"""

from __future__ import annotations

from typing import Any

from polymodal.config.finetune import adapt_channels

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalisation(mean: tuple[float, ...], std: tuple[float, ...], preprocess: Any) -> dict[str, Any]:
    """``standard`` normalisation with the given RGB statistics, adapted to ``preprocess.color``
    (grey: their mean, as the first convolution's RGB filters are summed); none for HSV."""
    if preprocess.color == "hsv":
        return {}
    channels = 1 if preprocess.color == "gray" else 3
    return {"normalize": "standard", "mean": adapt_channels(list(mean), channels),
            "std": adapt_channels(list(std), channels)}


def imagenet_preprocess(preprocess: Any) -> dict[str, Any]:
    """ImageNet normalisation (torchvision's pretrained ResNets)."""
    return _normalisation(IMAGENET_MEAN, IMAGENET_STD, preprocess)


def timm_preprocess(arch: str, preprocess: Any) -> dict[str, Any]:
    """Input size and normalisation from timm's pretrained config of ``arch`` (empty when timm does
    not know the architecture: the encoder reports that when it is built)."""
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(arch)
    except (RuntimeError, KeyError, ValueError):
        cfg = None
    if cfg is None:
        return {}
    data = cfg.to_dict()
    out: dict[str, Any] = {}
    size = data.get("input_size")
    if size is not None:
        out["size"] = int(size[1]) if size[1] == size[2] else (int(size[1]), int(size[2]))
    if data.get("mean") is not None and data.get("std") is not None:
        out.update(_normalisation(tuple(data["mean"]), tuple(data["std"]), preprocess))
    return out
