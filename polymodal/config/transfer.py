"""The ``transfer:`` section: domain adaptation, semi-supervised learning, few-shot learning and
cross-modal distillation. A run uses one method, chosen by ``method``, or a list of methods
whose loss terms add up (all learn from the same unlabelled manifest):

    transfer: {method: dann, on: fused}                  # labelled source + unlabelled target (--unlabeled)
    transfer: {method: mmd, on: [audio]}                 # adapt only the audio encoder (a new microphone)
    transfer: {method: fixmatch, threshold: 0.95}        # labelled + unlabelled rows of one domain
    transfer: {method: protonet, shots: 5, queries: 10}  # episodic training; predict(df, support=...)
    transfer: {method: distill, teacher: runs/teacher}   # a trained run teaches this one
    transfer: [{method: cdan}, {method: fixmatch}]       # align the domains and self-train on the target

Methods that learn from unlabelled rows take them from ``fit(..., unlabeled=...)`` (CLI
``--unlabeled``) or, when that is not given, from ``unlabeled`` in this section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from polymodal.config.base import StrictModel

Weight = Annotated[float, Field(ge=0.0)]
Confidence = Annotated[float, Field(ge=0.0, lt=1.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class TransferConfig(StrictModel):
    """Fields every method has.

    Attributes:
        weight: weight of the method's loss in the training objective (the task loss has 1).
    """

    uses_unlabeled: ClassVar[Literal["required", "optional", "no"]] = "no"
    uses_predictions: ClassVar[bool] = False  # needs class predictions: classification only
    weight: Weight = 1.0


class UnlabeledConfig(TransferConfig):
    """A method that learns from an unlabelled manifest.

    Attributes:
        unlabeled: the unlabelled manifest (relative to the config file); ``fit(unlabeled=...)`` and
            ``--unlabeled`` take precedence.
        unlabeled_batch_size: rows per unlabelled batch (default ``train.batch_size``). An epoch
            runs through the longer of the two manifests, cycling the shorter.
    """

    uses_unlabeled: ClassVar[Literal["required", "optional", "no"]] = "required"
    unlabeled: Path | None = None
    unlabeled_batch_size: PositiveInt | None = None


# --- domain adaptation ------------------------------------------------------------------------
class DomainConfig(UnlabeledConfig):
    """Align the labelled (source) and unlabelled (target) domains.

    Attributes:
        on: ``fused`` aligns the fused representation; a list of modality names aligns only those
            encoders' outputs (each on its own), leaving the other modalities as they are.
    """

    on: Literal["fused"] | list[str] = "fused"


class DannConfig(DomainConfig):
    """DANN (Ganin et al., 2016): a domain discriminator trained through a gradient-reversal layer
    whose coefficient rises as ``2 / (1 + exp(-gamma * p)) - 1`` with training progress ``p``.

    Attributes:
        hidden: widths of the discriminator's hidden layers (Linear-BatchNorm-ReLU).
    """

    method: Literal["dann"] = "dann"
    hidden: list[PositiveInt] = Field(default=[256, 256], min_length=1)
    gamma: PositiveFloat = 10.0


class CdanConfig(DannConfig):
    """CDAN (Long et al., 2018): the discriminator sees the features conditioned on the class
    predictions (their outer product, or a randomised multilinear map of width ``random_dim`` when
    the product is wider than ``max_outer``).

    Attributes:
        entropy: CDAN+E, weigh each sample by ``1 + exp(-entropy)`` of its prediction, so confident
            predictions count more.
    """

    uses_predictions: ClassVar[bool] = True
    method: Literal["cdan"] = "cdan"  # type: ignore[assignment]
    entropy: bool = True
    random_dim: PositiveInt = 1024
    max_outer: PositiveInt = 4096


class MmdConfig(DomainConfig):
    """Multi-kernel MMD (Long et al., 2015, DAN) between source and target features.

    Attributes:
        bandwidths: Gaussian kernel widths as multiples of the batch's mean squared distance.
    """

    method: Literal["mmd"] = "mmd"
    bandwidths: list[PositiveFloat] = Field(default=[0.125, 0.25, 0.5, 1.0, 2.0], min_length=1)


class CoralConfig(DomainConfig):
    """Deep CORAL (Sun and Saenko, 2016): match the means and covariances of the two domains."""

    method: Literal["coral"] = "coral"


# --- semi-supervised ---------------------------------------------------------------------------
class PseudoLabelConfig(UnlabeledConfig):
    """Pseudo-labelling (Lee, 2013): unlabelled rows whose predicted class probability reaches
    ``threshold`` are trained on as if that class were their label.

    Attributes:
        rampup: fraction of training over which the weight rises linearly from 0 to ``weight``
            (early predictions are poor).
    """

    uses_predictions: ClassVar[bool] = True
    method: Literal["pseudo_label"] = "pseudo_label"
    threshold: Confidence = 0.95
    rampup: Fraction = 0.2


class StrongAugment(StrictModel):
    """The strong view of FixMatch, applied on top of the modality's own (weak) training augmentation.

    Attributes:
        magnitude: scales every perturbation (image affine and colour, audio/signal masks and noise).
        erase: fraction of the sample masked out (image cutout, audio time/frequency masks,
            signal time masks, tabular/text dropout of entries).
    """

    magnitude: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    erase: Annotated[float, Field(ge=0.0, le=0.9)] = 0.25


class FixMatchConfig(UnlabeledConfig):
    """FixMatch (Sohn et al., 2020): the prediction on the weakly augmented view of an unlabelled
    row, where its confidence reaches ``threshold``, is the label for its strongly augmented view.
    The weak view is the modality's own training augmentation; ``strong`` adds the strong one."""

    uses_predictions: ClassVar[bool] = True
    method: Literal["fixmatch"] = "fixmatch"
    threshold: Confidence = 0.95
    strong: StrongAugment = Field(default_factory=StrongAugment)


# --- few-shot ----------------------------------------------------------------------------------
class ProtoNetConfig(TransferConfig):
    """Prototypical networks (Snell et al., 2017): episodic training, classification by the nearest
    class mean (prototype) of a support set's embeddings. ``predict(df, support=support_df)``
    classifies with the support set's classes, which need not have been seen in training.

    Attributes:
        dim: embedding width (the configured head maps the fused vector to it).
        ways: classes per episode (default: every training class).
        shots / queries: support and query rows per class and episode.
        episodes: episodes per epoch (default: as many as the training rows fill).
    """

    uses_predictions: ClassVar[bool] = True
    method: Literal["protonet"] = "protonet"
    dim: PositiveInt = 64
    ways: Annotated[int, Field(ge=2)] | None = None
    shots: PositiveInt = 5
    queries: PositiveInt = 10
    episodes: PositiveInt | None = None


# --- distillation ------------------------------------------------------------------------------
class DistillConfig(UnlabeledConfig):
    """Cross-modal distillation: a trained run (``teacher``, e.g. on image + audio) teaches this one
    (e.g. audio only) on the paired training rows: KL divergence between the softened class
    distributions (Hinton et al., 2015) plus matching of the fused representations through a
    learned linear map (FitNets). The teacher's modality columns must be in the training manifest.
    Given an unlabelled manifest of paired rows (``--unlabeled``), the teacher teaches on those too:
    the student learns from pairs nobody labelled (the teacher's outputs are their only targets).

    Attributes:
        teacher: the teacher's run folder (relative to the config file).
        temperature: softening of both distributions; the KL term is scaled by its square.
        feature_weight: weight of the feature-matching term (0 turns it off).
        teach_unlabeled: teach on the unlabelled rows too, when the run has them; false when they
            are for another method only (a domain-adaptation target the teacher cannot see).
    """

    uses_predictions: ClassVar[bool] = True
    method: Literal["distill"] = "distill"
    teacher: Path
    temperature: PositiveFloat = 4.0
    feature_weight: Weight = 1.0
    teach_unlabeled: bool = True

    @property
    def uses_unlabeled(self) -> Literal["required", "optional", "no"]:  # type: ignore[override]
        """Unlabelled pairs are optional, and unused with ``teach_unlabeled: false``."""
        return "optional" if self.teach_unlabeled else "no"


AnyTransfer = Annotated[
    DannConfig | CdanConfig | MmdConfig | CoralConfig | PseudoLabelConfig | FixMatchConfig | ProtoNetConfig
    | DistillConfig,
    Field(discriminator="method"),
]


def check_transfer(config: Any) -> None:
    """Cross-field rules of the ``transfer`` section (called by the root config's validator).

    Raises:
        ValueError: a method does not fit the task, the modalities or the fusion, or the methods of
            a list do not combine.
    """
    methods = config.transfers
    if len(methods) > 1:
        _check_combination(methods)
    for i, transfer in enumerate(methods):
        _check_method(transfer, config, config.transfer_key(i))


def _check_combination(methods: list[Any]) -> None:
    """Methods of a list add their loss terms; they must not repeat or disagree on shared inputs."""
    names = [m.method for m in methods]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"transfer: lists method(s) {repeated} more than once; each method may appear once")
    if "protonet" in names:
        raise ValueError("transfer: method 'protonet' trains on episodes with its own head and loss; it cannot be "
                         f"combined with other methods (got {names})")
    domain = [m.method for m in methods if isinstance(m, DomainConfig)]
    if len(domain) > 1:
        raise ValueError(f"transfer: lists several domain-adaptation methods {domain}; use one of them "
                         "(it may be combined with pseudo_label, fixmatch or distill)")
    unlabeled = [m for m in methods if isinstance(m, UnlabeledConfig)]
    for field in ("unlabeled", "unlabeled_batch_size"):
        values = {str(getattr(m, field)) for m in unlabeled if getattr(m, field) is not None}
        if len(values) > 1:
            raise ValueError(f"transfer: the methods {names} share one unlabelled manifest, but their "
                             f"'{field}' values differ: {sorted(values)}; set it on one method only")


def _check_method(transfer: Any, config: Any, key: str) -> None:
    """The rules of one method; ``key`` is where it is written (``transfer`` or ``transfer.<i>``)."""
    if config.task == "retrieval":
        raise ValueError(f"{key}.method: transfer method '{transfer.method}' trains a task head; task 'retrieval' "
                         "has none")
    if transfer.uses_predictions and config.task != "classification":
        raise ValueError(f"{key}.method: transfer method '{transfer.method}' needs class predictions: task must be "
                         f"'classification'; got '{config.task}'")
    if isinstance(transfer, DomainConfig):  # each step compares the source rows' distribution with the target's
        for field, size in (("train.batch_size", config.train.batch_size),
                            (f"{key}.unlabeled_batch_size", transfer.unlabeled_batch_size)):
            if size is not None and size < 2:
                raise ValueError(f"{field}: domain adaptation ('{transfer.method}') compares the source and target "
                                 f"rows of each step and needs batches of at least 2 rows; got {size}")
    if config.fusion.produces_outputs:  # late fusion: the modalities meet as predictions, in no shared space
        none = f"fusion '{config.fusion.name}' has none (its modalities meet as predictions)"
        if isinstance(transfer, DomainConfig) and transfer.on == "fused":
            raise ValueError(f"{key}.on: 'fused' adapts the fused representation, and {none}; name the modalities "
                             f"whose encoder outputs to adapt (on: {config.modality_names}), or use another fusion")
        if isinstance(transfer, DistillConfig) and transfer.feature_weight > 0:
            raise ValueError(f"{key}.feature_weight: matches the student's fused representation with the "
                             f"teacher's, and {none}; set it to 0 (the predictions are still distilled), or use "
                             "another fusion")
    if isinstance(transfer, DomainConfig) and isinstance(transfer.on, list):
        unknown = sorted(set(transfer.on) - set(config.modalities))
        if unknown or not transfer.on:
            raise ValueError(f"{key}.on must be 'fused' or a non-empty list of modalities from "
                             f"{config.modality_names}; got {transfer.on}")
    if isinstance(transfer, ProtoNetConfig):
        if config.fusion.produces_outputs:
            raise ValueError(f"{key}.method: transfer method 'protonet' embeds the fused representation with the head; "
                             f"fusion '{config.fusion.name}' has no shared head (use another fusion)")
        if config.tasks:
            raise ValueError(f"{key}.method: transfer method 'protonet' trains one classification task; remove `tasks`")


__all__ = [
    "AnyTransfer", "CdanConfig", "CoralConfig", "DannConfig", "DistillConfig", "DomainConfig", "FixMatchConfig",
    "MmdConfig", "ProtoNetConfig", "PseudoLabelConfig", "StrongAugment", "TransferConfig", "UnlabeledConfig",
    "check_transfer",
]
