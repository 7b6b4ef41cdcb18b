"""Alignment configs: projection heads into a shared space and the objective that aligns them.

```yaml
align:
  objective: contrastive        # contrastive | triplet | cca | vae
  dim: 64                       # width of the shared space
  projection: {name: mlp}       # linear | mlp, one head per aligned modality
  positives: pair               # pair (rows are pairs) | label (rows of the same class)
  weight: 0.5                   # beside a task loss; task 'retrieval' trains alignment alone
  anchor: null                  # null: every pair of modalities; a name: each modality to it (not with vae)
```
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from polymodal.config.base import StrictModel
from polymodal.config.encoders import Dropout

if TYPE_CHECKING:
    from polymodal.config.root import Config


# --- projection heads --------------------------------------------------------------------------
class LinearProjectionConfig(StrictModel):
    """One linear layer from the encoder's pooled features to the shared space."""

    name: Literal["linear"] = "linear"


class MlpProjectionConfig(StrictModel):
    """A non-linear head: ``hidden`` layers (Linear-GELU-Dropout), then a linear layer to the shared space."""

    name: Literal["mlp"] = "mlp"
    hidden: list[PositiveInt] = Field(default=[512], min_length=1)
    dropout: Dropout = 0.1


AnyProjection = Annotated[LinearProjectionConfig | MlpProjectionConfig, Field(discriminator="name")]


# --- objectives --------------------------------------------------------------------------------
class AlignConfig(StrictModel):
    """Fields every alignment objective shares.

    Attributes:
        dim: width of the shared embedding space.
        projection: the head that maps each aligned modality's encoder output into the space.
        positives: ``pair``: a row's modalities belong together (every other row is a negative);
            ``label``: rows with the same class (the ``target`` column) are positives too
            (supervised contrastive).
        weight: weight of the alignment loss beside the task loss (ignored by task ``retrieval``,
            where the alignment loss is the only loss).
        modalities: the modalities to align (default: all); each gets a projection head.
        anchor: ``null`` aligns every pair of modalities; a modality name aligns each other
            modality to that one only (not with objective ``vae``, which aligns them all at once).
    """

    dim: PositiveInt = 128
    projection: AnyProjection = Field(default_factory=LinearProjectionConfig)
    positives: Literal["pair", "label"] = "pair"
    weight: PositiveFloat = 1.0
    modalities: list[str] | None = Field(None, min_length=2)
    anchor: str | None = None


class ContrastiveAlignConfig(AlignConfig):
    """Symmetric InfoNCE (CLIP): each row must pick its partner among the batch.

    Attributes:
        temperature: initial softmax temperature, at least 0.01 (CLIP's cap on its inverse, the
            logit scale, at 100).
        learn_temperature: train the temperature (as CLIP's logit scale, held at most at 100).
    """

    objective: Literal["contrastive"] = "contrastive"
    temperature: float = Field(0.07, ge=0.01)
    learn_temperature: bool = True


class TripletAlignConfig(AlignConfig):
    """Hinge loss against an in-batch negative; with label positives, against the hardest positive.

    Attributes:
        negatives: ``semihard`` (default): the most similar negative that is still less similar
            than the positive (FaceNet), the easiest negative when there is none; ``hardest``:
            the most similar negative (VSE++). Measured on our benchmarks, semi-hard beats
            hardest on frozen pretrained features. When pairs are related only through a class
            (any image of the spoken digit), use ``positives: label``: with ``pair`` the other
            rows of the class are negatives as similar as the positive, the hinge cannot fall
            below the margin, and the space can collapse onto one point (fit warns).
    """

    objective: Literal["triplet"] = "triplet"
    margin: PositiveFloat = 0.2
    negatives: Literal["semihard", "hardest"] = "semihard"


class CcaAlignConfig(AlignConfig):
    """Soft CCA on the projections: paired projections are pulled together while each modality's
    batch covariance is held near the identity (a soft form of CCA's whitening constraint), so the
    shared coordinates are canonical variates and cosine similarity compares them directly.

    Attributes:
        decorrelation: weight of the whitening penalty.
    """

    objective: Literal["cca"] = "cca"
    decorrelation: PositiveFloat = 1.0


class VaeAlignConfig(AlignConfig):
    """A multimodal VAE: each modality's projection is the mean of a Gaussian posterior, the joint
    posterior is their product of experts, and every posterior (joint and each single one)
    reconstructs every modality's encoder features. Either modality alone can be embedded.

    Attributes:
        beta: weight of the KL divergence to the standard normal prior.
        hidden: widths of the feature decoders' hidden layers.
    """

    objective: Literal["vae"] = "vae"
    beta: PositiveFloat = 1.0
    hidden: list[PositiveInt] = Field(default=[256])


AnyAlign = Annotated[
    ContrastiveAlignConfig | TripletAlignConfig | CcaAlignConfig | VaeAlignConfig, Field(discriminator="objective")
]
LABEL_POSITIVES = (ContrastiveAlignConfig, TripletAlignConfig)


def aligned_modalities(config: Config) -> list[str]:
    """The aligned modalities of a config, sorted (empty without ``align``)."""
    if config.align is None:
        return []
    return sorted(config.align.modalities) if config.align.modalities is not None else config.modality_names


def modality_pairs(config: Config) -> list[tuple[str, str]]:
    """The (a, b) modality pairs the objective aligns: every pair, or each modality with the anchor."""
    names = aligned_modalities(config)
    anchor = config.align.anchor if config.align is not None else None
    if anchor is None:
        return list(combinations(names, 2))
    return [(anchor, name) for name in names if name != anchor]


def check_align(config: Config) -> None:
    """Cross-field rules of ``align`` (called by the root config's validator).

    Raises:
        ValueError: naming the key, what is allowed and what was given.
    """
    align = config.align
    if align is None:
        if config.task == "retrieval":
            raise ValueError("align: task 'retrieval' trains an alignment and needs an 'align' section "
                             "(e.g. align: {objective: contrastive, dim: 64})")
        return
    known = config.modality_names
    if align.modalities is not None:
        unknown = sorted(set(align.modalities) - set(known))
        if unknown:
            raise ValueError(f"align.modalities names unknown modalities {unknown}; modalities are {known}")
        if len(set(align.modalities)) != len(align.modalities):
            raise ValueError(f"align.modalities lists a modality twice: {align.modalities}")
    names = aligned_modalities(config)
    if len(names) < 2:
        raise ValueError(f"align: needs at least two modalities to align; the config has {names}")
    if config.task == "retrieval" and names != known:
        raise ValueError(f"align.modalities: task 'retrieval' uses only the aligned modalities; align.modalities is "
                         f"{names} but the config has {known} (drop the others or list them all)")
    if align.anchor is not None and isinstance(align, VaeAlignConfig):
        raise ValueError(f"align.anchor must be null with objective 'vae', whose joint posterior aligns every aligned "
                         f"modality {names} at once (drop anchor, or use objective 'contrastive', 'triplet' or "
                         f"'cca'); got '{align.anchor}'")
    if align.anchor is not None and align.anchor not in names:
        raise ValueError(f"align.anchor must be one of the aligned modalities {names}; got '{align.anchor}'")
    if align.positives == "label":
        if not isinstance(align, LABEL_POSITIVES):
            raise ValueError(f"align.positives 'label' works with objectives 'contrastive' and 'triplet'; "
                             f"objective is '{align.objective}'")
        if config.task not in ("classification", "retrieval") or not config.targets:
            raise ValueError("align.positives 'label' needs class labels: task 'classification', or task "
                             "'retrieval' with a 'target' column")
        if getattr(config, "tasks", None):
            raise ValueError(f"align.positives 'label' cannot be combined with further tasks ({sorted(config.tasks)}): "
                             "use positives 'pair', or train the alignment without 'tasks'")


__all__ = [
    "AlignConfig", "AnyAlign", "AnyProjection", "CcaAlignConfig", "ContrastiveAlignConfig", "LinearProjectionConfig",
    "MlpProjectionConfig", "TripletAlignConfig", "VaeAlignConfig", "aligned_modalities", "check_align",
    "modality_pairs",
]
