"""Training, loss and data-handling configs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from polymodal.config.base import StrictModel

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class EarlyStoppingConfig(StrictModel):
    """Stop when the validation metric has not improved for ``patience`` epochs.

    Attributes:
        monitor: a validation metric (``loss``, ``accuracy``, ``macro_f1``, ``auroc``, ``rmse``...);
            ``auto`` picks the task's validation ``loss`` (``map`` for retrieval). The same metric
            chooses the weights restored at the end (with ``early_stopping: null`` too). With several
            regression targets, one target's own figure: ``rmse_per_target.<target>`` (also
            ``mae_per_target.<target>``, ``r2_per_target.<target>``); ``mae`` and ``rmse`` there are
            the means of the targets', which mix their units (warned), while ``loss`` (on
            standardised targets, so every target weighs alike) and ``r2`` do not.
    """

    patience: PositiveInt = 5
    monitor: str = "auto"
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


class TrainConfig(StrictModel):
    """Optimisation and run settings.

    Attributes:
        encoder_lr_scale: the weights pretrained encoders load from a file train at
            ``lr * encoder_lr_scale``; 0.1 is a common choice for fine-tuning. What such an encoder adds
            from scratch (its ``dim`` projection, LoRA adapters, a video encoder's temporal model)
            trains at ``lr``.
        modality_dropout: probability that a present modality is hidden from a training sample, through
            the same path as a missing cell (a number for all modalities, or ``{modality: p}`` where
            unnamed modalities get 0). A sample never loses all its modalities: when every one it
            holds would be hidden, one of them, chosen at random, stays. Trains the model (and its
            learned missing-embeddings) to predict from any subset of modalities.
        val_fraction: share of the training manifest held out for validation when no validation
            manifest is given (stratified for classification).
        val_group: a manifest column whose rows stay together when the validation share is held
            out (a recording's windows, a patient's images, a speaker's clips): ``val_fraction`` of
            its distinct values go to validation with every row holding them, so validation never
            scores near-copies of training rows. None: rows are held out one by one.
        deterministic: deterministic kernels (``torch.use_deterministic_algorithms``, warning
            where an operation has none), so a seed gives the same model on the same machine;
            uninitialised memory is not NaN-filled (``torch.utils.deterministic``), which would
            cost several percent of a step.
        num_workers: DataLoader workers; ``None`` chooses from the machine's cores.
        threads: torch's CPU threads during the fit (preprocessing, training, the report's
            evaluations); ``None`` keeps torch's default, one per core of the machine. On a machine
            shared with other jobs, or a container allowed fewer cores than the host has, fewer
            threads avoid oversubscription (epochs measured 10-100x slower with two jobs each
            using every core). The process's own setting is restored after the fit.
        precision: Lightning precision, e.g. ``32``, ``bf16-mixed``, ``16-mixed``.
        accelerator: where the model runs: training, the frozen-feature cache pass, inference and
            the report's diagnostics (``auto``: a GPU when there is one; ``cpu`` keeps all of it
            off a GPU).
        max_minutes: a time limit on training: between epochs, the run stops before one it would
            not finish in time (judged by its mean epoch so far; an epoch is never cut short, so
            one epoch longer than the limit overruns it), keeps its best epoch and says so;
            preprocessing and the report come on top. None: no limit. A resumed run gets the
            limit afresh (``--resume --set train.max_minutes=...`` gives it more).
        devices / strategy / num_nodes: distributed training on PyTorch's own engine through
            Lightning: ``{devices: 4, strategy: ddp}`` runs 4 processes (GPUs, or CPU processes
            with gloo); ``num_nodes`` > 1 under ``torchrun`` or SLURM (see docs/performance.md).
    """

    epochs: PositiveInt = 20
    max_minutes: PositiveFloat | None = None
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    encoder_lr_scale: PositiveFloat = 1.0
    weight_decay: Annotated[float, Field(ge=0.0)] = 1e-2
    scheduler: Literal["cosine", "onecycle", "none"] = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0.0)] = 0.0
    grad_clip: PositiveFloat | None = 1.0
    early_stopping: EarlyStoppingConfig | None = Field(default_factory=EarlyStoppingConfig)
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0  # numpy's seeds
    deterministic: bool = True
    modality_dropout: Probability | dict[str, Probability] = 0.0
    val_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    val_group: str | None = None
    num_workers: NonNegativeInt | None = None
    threads: PositiveInt | None = None
    precision: Literal["32", "16-mixed", "bf16-mixed"] = "32"

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return "32" if value == 32 and not isinstance(value, bool) else value  # YAML reads a bare 32 as a number
    accelerator: Literal["auto", "cpu", "gpu", "mps"] = "auto"
    devices: PositiveInt | Literal["auto"] = 1
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    num_nodes: PositiveInt = 1
    progress: bool = True

    @field_validator("strategy")
    @classmethod
    def _no_spawn(cls, value: str) -> str:
        """Refused by name (not left out of the choices), so that the message says why."""
        if value == "ddp_spawn":
            raise ValueError("'ddp_spawn' trains in child processes whose epochs never reach the run folder "
                             "(history, best epoch, learning curves); use 'ddp', which starts the other processes "
                             "itself")
        return value


class LossConfig(StrictModel):
    """Task-loss options.

    Attributes:
        class_weights: classification: ``balanced`` weighs classes inversely to their training
            frequency; a list gives one weight per class (in the sorted order of the class
            labels). Multilabel: the weight of each label's positives (1s) in the binary
            cross-entropy (``pos_weight``): ``balanced`` is the label's training negatives /
            positives (1 for a label constant in training); a list gives one per target column,
            in the order of ``target``. Refused for other tasks.
        label_smoothing: softens class labels: classification mixes the one-hot target with the
            uniform distribution; multilabel trains each 0/1 label towards ``y * (1 - e) + e / 2``
            (a 1 towards 1 - e/2, a 0 towards e/2). Refused (above 0) for a config with no
            classification or multilabel task.
        regression: ``mse`` or ``huber`` (with ``huber_delta``). Regression targets are
            standardised with the training rows' mean and standard deviation before the loss, so
            the training loss and ``val_loss`` are in units of each target's standard deviation
            (squared, for ``mse``), averaged over targets; the metrics (``mae``, ``rmse``, ``r2``)
            are on the target's original scale.
        huber_delta: where the Huber loss turns from quadratic to linear, in standard deviations
            of the target (1.0: errors beyond one standard deviation count linearly), not in the
            target's own units.
        unimodal_weight: weight of auxiliary per-modality losses: each modality also predicts the
            target on its own (a linear head on its encoder output, or late fusion's own heads),
            which keeps every encoder discriminative and stops one modality from leaning on
            another (the failure of naive joint training that makes fusion lose to its best
            modality; cf. Wang et al., "What makes training multi-modal classification networks
            hard?", CVPR 2020). Used only with two or more modalities.
        subset_weight: weight of the task loss of each modality alone, through the fused network's
            missing path (fusion and head run again with the other modalities hidden, on the same
            encoder features). Trains the predictions made when only one modality arrives without
            taking whole rows away from training, as ``train.modality_dropout`` does; 0 turns it
            off. Used only with two or more modalities. The kept epoch then follows the same
            objective: ``val_loss`` is ``(whole-row loss + weight * subset loss) / (1 + weight)``,
            with ``val_full_loss`` and ``val_subset_loss`` logged beside it.
        task_weighting: with further ``tasks``: ``fixed`` uses each task's ``weight``;
            ``uncertainty`` learns them (homoscedastic uncertainty, Kendall et al., CVPR 2018).
    """

    class_weights: Literal["balanced"] | list[PositiveFloat] | None = None
    unimodal_weight: Annotated[float, Field(ge=0.0)] = 0.5
    subset_weight: Annotated[float, Field(ge=0.0)] = 0.0
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    regression: Literal["mse", "huber"] = "mse"
    huber_delta: PositiveFloat = 1.0
    task_weighting: Literal["fixed", "uncertainty"] = "fixed"


OnError = Literal["raise", "skip", "missing"]  # what a corrupt or unreadable file does (data.on_error)


class DataConfig(StrictModel):
    """How manifests are read.

    Attributes:
        on_error: what a corrupt or unreadable file does: ``raise`` (stop, naming the file and
            row), ``skip`` (drop the row) or ``missing`` (mark that modality missing for the row).
            Skipped files are always listed: the fit's in the run folder's ``skipped.csv`` (column
            ``split``), ``evaluate``'s in ``evaluation/skipped.csv``, ``predict``'s in
            ``<out stem>.skipped.csv``, and a warning names the first few.
        cache_dir: where preprocessed tensors are stored and reused across epochs and runs
            (memory-mapped); ``None`` keeps them in memory.
        memory_limit_gb: encoded data larger than this is never held in memory: without a
            ``cache_dir`` it spills to a temporary folder (removed at exit) and is read lazily.
    """

    on_error: OnError = "raise"
    cache_dir: Path | None = None
    memory_limit_gb: PositiveFloat = 4.0

