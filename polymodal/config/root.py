"""The top-level config and YAML I/O."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationInfo, model_validator

from polymodal.config.align import AnyAlign, check_align
from polymodal.config.anomaly import AnomalyConfig, check_anomaly
from polymodal.config.base import DefaultsJsonSchema, StrictModel, validate
from polymodal.config.decision import DecisionConfig, check_decision
from polymodal.config.finetune import check_feature_cache
from polymodal.config.modalities import AnyModality, modality_columns
from polymodal.config.model import (
    AnyFusion,
    AnyHead,
    AttentionFusionConfig,
    ConcatFusionConfig,
    MlpHeadConfig,
    TensorFusionConfig,
    TransformerHeadConfig,
    fusion_names,
)
from polymodal.config.overrides import apply_overrides, naming_overrides
from polymodal.config.parsing import DuplicateKeyError, load_json, load_yaml
from polymodal.config.report import ReportConfig
from polymodal.config.task_metrics import describe_choices, mixes_units, monitor_choices, per_target_name
from polymodal.config.tasks import TaskSpec, check_tasks, repeated_columns
from polymodal.config.train import DataConfig, LossConfig, TrainConfig
from polymodal.config.transfer import AnyTransfer, check_transfer
from polymodal.config.tune import TuneConfig
from polymodal.errors import ConfigError
from polymodal.utils.warn import warn_user

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Task = Literal["classification", "multilabel", "regression", "retrieval", "anomaly"]


class Config(StrictModel):
    """A complete polymodal experiment.

    Attributes:
        task: ``classification`` (one label per row), ``multilabel`` (several 0/1 target columns)
            or ``regression`` (one or more numeric target columns); ``retrieval`` trains only the
            ``align`` objective (a shared embedding space, no task head).
        target: the manifest column(s) holding the target (optional for ``retrieval``, where it
            names the class column used by ``align.positives: label`` and label-level evaluation).
        modalities: named modalities; names are identifiers (letters, digits, underscores).
    """

    task: Task = "classification"
    target: str | list[str] | None = None
    modalities: dict[str, AnyModality] = Field(min_length=1)
    fusion: AnyFusion = Field(default_factory=AttentionFusionConfig, description=(  # see _one_modality_fuses_nothing
        "default: attention; concat for a config of one modality whose head is mlp (attention over one token "
        "would only add a Transformer)"))
    head: AnyHead = Field(default_factory=MlpHeadConfig)
    align: AnyAlign | None = None
    tasks: dict[str, TaskSpec] | None = None
    transfer: AnyTransfer | Annotated[list[AnyTransfer], Field(min_length=1)] | None = None
    loss: LossConfig = Field(default_factory=LossConfig)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)  # a two-class classifier's operating point
    train: TrainConfig = Field(default_factory=TrainConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    tune: TuneConfig | None = None
    anomaly: AnomalyConfig | None = None  # task 'anomaly' (see polymodal.config.anomaly)

    @property
    def transfers(self) -> list[Any]:
        """The transfer methods in the order written (``transfer`` holds one method or a list)."""
        if self.transfer is None:
            return []
        return list(self.transfer) if isinstance(self.transfer, list) else [self.transfer]

    @property
    def protonet(self) -> Any:
        """The ``protonet`` transfer method when configured (it is always alone), else None."""
        return next((m for m in self.transfers if m.method == "protonet"), None)

    def transfer_key(self, index: int) -> str:
        """The config key of ``transfers[index]`` for error messages: ``transfer`` or ``transfer.<index>``."""
        return f"transfer.{index}" if isinstance(self.transfer, list) else "transfer"

    @property
    def targets(self) -> list[str]:
        if self.target is None:
            return []
        return [self.target] if isinstance(self.target, str) else list(self.target)

    @property
    def modality_names(self) -> list[str]:
        """Modality names in the canonical (sorted) order used everywhere."""
        return sorted(self.modalities)

    @model_validator(mode="after")
    def _check_names(self) -> Config:
        bad = [name for name in self.modalities if not _NAME.match(name)]
        if bad:
            raise ValueError(
                f"modalities: names must be identifiers (letters, digits, underscore, not starting "
                f"with a digit); got {bad}"
            )
        return self

    @model_validator(mode="after")
    def _check_target(self) -> Config:
        if self.target is None:
            if self.task not in ("retrieval", "anomaly"):
                raise ValueError(f"target: required for task '{self.task}' (the target column(s)); only tasks "
                                 "'retrieval' and 'anomaly' can do without")
            return self
        repeated = repeated_columns(self.targets)
        if repeated:  # each column is one output: a repeat would be encoded twice and mismatch the model
            raise ValueError(f"target: lists column(s) {repeated} more than once; each target column is one output "
                             f"and may appear once; got {self.target}")
        if self.task == "classification" and not isinstance(self.target, str):
            if len(self.target) != 1:
                raise ValueError(f"target: task 'classification' takes one target column; got {self.target}")
        used = {col for m in self.modalities.values() for col in modality_columns(m)}
        clash = sorted(set(self.targets) & used)
        if clash:
            raise ValueError(f"target: column(s) {clash} are also read as modality inputs")
        return self

    @model_validator(mode="after")
    def _check_loss(self, info: ValidationInfo) -> Config:
        check_class_weights(self)
        try:
            check_label_smoothing(self)
        except ValueError as err:
            if not (info.context or {}).get("saved_run"):
                raise
            warn_user(f"this run's loss.label_smoothing would be refused for a new run: {err}")  # it did nothing
        return self

    @model_validator(mode="after")
    def _check_dropout_keys(self, info: ValidationInfo) -> Config:
        dropout = self.train.modality_dropout
        if isinstance(dropout, dict):
            unknown = sorted(set(dropout) - set(self.modalities))
            if unknown:
                raise ValueError(
                    f"train.modality_dropout names unknown modalities {unknown}; "
                    f"modalities are {self.modality_names}"
                )
        try:
            check_dropout_rates(self)
        except ValueError as err:
            if not (info.context or {}).get("saved_run"):
                raise
            warn_user(f"this run's train.modality_dropout would be refused for a new run: {err}")  # it still loads
        return self

    @model_validator(mode="after")
    def _one_modality_fuses_nothing(self) -> Config:
        """A config of one modality that names no fusion gets ``concat`` (its encoder's features
        as they are), not the default ``attention``, which would add a Transformer over a single
        token; a fusion named is kept, and a head that needs tokens keeps the default."""
        if ("fusion" not in self.model_fields_set and len(self.modalities) == 1
                and isinstance(self.head, MlpHeadConfig)):
            self.fusion = ConcatFusionConfig()
        return self

    @model_validator(mode="after")
    def _check_fusion_size(self) -> Config:
        if isinstance(self.fusion, TensorFusionConfig):
            self.fusion.check_width(len(self.modalities))
        dim = getattr(self.fusion, "dim", None)
        if isinstance(self.head, TransformerHeadConfig) and dim is not None and dim % self.head.heads:
            raise ValueError(f"head.heads: must divide the fusion dim ({dim}); got {self.head.heads}")
        return self

    @model_validator(mode="after")
    def _check_monitor(self, info: ValidationInfo) -> Config:
        stop = self.train.early_stopping
        if stop is None or stop.monitor == "auto":
            return self
        if stop.monitor not in monitor_choices(self.task, self.targets):
            raise ValueError(f"train.early_stopping.monitor must be 'auto' or one of "
                             f"{describe_choices(self.task, self.targets)} for task '{self.task}'; got '{stop.monitor}'")
        if mixes_units(self.task, self.targets, stop.monitor) and not (info.context or {}).get("saved_run"):
            warn_user(f"train.early_stopping.monitor: '{stop.monitor}' averages the {stop.monitor} of targets "
                      f"{self.targets}, which mixes their units (the target with the largest values decides "
                      f"nearly alone); monitor one target ('{per_target_name(stop.monitor, self.targets[0])}'), 'r2' "
                      "(unit-free) or 'loss' (standardised targets, the default)")
        return self

    @model_validator(mode="after")
    def _check_head_fits_fusion(self) -> Config:
        if not isinstance(self.head, MlpHeadConfig) and not self.fusion.makes_tokens:
            raise ValueError(
                f"head.name: head '{self.head.name}' models a token sequence and needs fusion "
                f"{' or '.join(repr(n) for n in fusion_names(tokens_only=True))} (or head 'mlp'); "
                f"fusion is '{self.fusion.name}'"
            )
        if self.fusion.produces_outputs and not isinstance(self.head, MlpHeadConfig):
            raise ValueError(f"head.name: fusion '{self.fusion.name}' builds one mlp head per modality; head is "
                             f"'{self.head.name}'")
        return self

    @model_validator(mode="after")
    def _check_align(self) -> Config:
        check_align(self)  # see polymodal.config.align
        return self

    @model_validator(mode="after")
    def _check_tasks(self, info: ValidationInfo) -> Config:
        check_tasks(self, saved_run=bool((info.context or {}).get("saved_run")))  # see polymodal.config.tasks
        return self

    @model_validator(mode="after")
    def _check_transfer(self) -> Config:
        check_transfer(self)  # see polymodal.config.transfer
        return self

    @model_validator(mode="after")
    def _check_anomaly(self) -> Config:
        check_anomaly(self)  # see polymodal.config.anomaly
        return self

    @model_validator(mode="after")
    def _check_decision(self) -> Config:
        check_decision(self)  # see polymodal.config.decision
        return self

    @model_validator(mode="after")
    def _check_feature_cache(self) -> Config:
        check_feature_cache(self)  # see polymodal.config.finetune
        return self

    @model_validator(mode="after")
    def _name_sections(self) -> Config:
        """Every section knows its key, for the errors of assignments to it (``train.epochs``)."""
        self.name_sections()
        return self


def check_class_weights(config: Config) -> None:
    """``loss.class_weights`` weighs class labels: one weight per class (``classification``) or a
    positive weight per label column (``multilabel``, the weight of its 1s in the binary
    cross-entropy; ``balanced``: its training negatives / positives). A multilabel list needs one
    value per target column; a classifier's list is checked against its classes when it trains.

    Raises:
        ValueError: class weights for another task, or a multilabel list of the wrong length.
    """
    weights = config.loss.class_weights
    if weights is None:
        return
    if config.task not in ("classification", "multilabel"):
        raise ValueError(f"loss.class_weights applies to tasks 'classification' (a weight per class) and 'multilabel' "
                         f"(a positive weight per label); task is '{config.task}'")
    if config.task == "multilabel" and isinstance(weights, list) and len(weights) != len(config.targets):
        raise ValueError(f"loss.class_weights: task 'multilabel' takes one positive weight per target column "
                         f"({len(config.targets)}: {config.targets}), or 'balanced'; got {len(weights)} values {weights}")


def check_label_smoothing(config: Config) -> None:
    """``loss.label_smoothing`` softens class labels (classification and multilabel tasks, main or
    further); a config with no such task would ignore it.

    Raises:
        ValueError: a label smoothing above 0 and no classification or multilabel task.
    """
    smoothing = config.loss.label_smoothing
    kinds = {config.task, *(spec.task for spec in (config.tasks or {}).values())}
    if smoothing > 0 and not kinds & {"classification", "multilabel"}:
        raise ValueError(f"loss.label_smoothing softens class labels: it applies to tasks 'classification' and "
                         f"'multilabel'; task is '{config.task}'{', as are its further tasks' if config.tasks else ''}, "
                         f"which it would leave unchanged; must be 0 (the default); got {smoothing}")


def check_dropout_rates(config: Config) -> None:
    """Refuse a ``train.modality_dropout`` of 1 (for one modality or all): a modality hidden from
    every training sample that holds another one is never trained on (only where it is a row's
    last modality, which is always kept), and at 1 for every modality no sample keeps more than
    one, so the whole-row path never trains. A model of one modality drops nothing (its only
    modality is always kept), so any rate is harmless there.

    Raises:
        ValueError: the key (``train.modality_dropout`` or ``train.modality_dropout.NAME``), the
            allowed range [0, 1) and the value.
    """
    if len(config.modalities) < 2:
        return
    dropout = config.train.modality_dropout
    rates = dropout if isinstance(dropout, dict) else {None: dropout}
    full = [name for name, rate in rates.items() if rate >= 1.0]
    if not full:
        return
    key = "train.modality_dropout" + ("" if full[0] is None else f".{full[0]}")
    hidden = "every modality" if full[0] is None else f"modality '{full[0]}'"
    raise ValueError(f"{key}: 1.0 hides {hidden} from every training sample that holds another one, so the model "
                     "never trains on it (with every modality at 1.0 no sample keeps more than one and whole rows "
                     f"never train); must be in [0, 1) (0.3, or {{modality: rate}} for some); got {rates[full[0]]}")


def _resolve_paths(model: BaseModel, base: Path) -> None:
    """Make every relative ``Path`` field absolute against ``base`` (the config file's folder)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            object.__setattr__(model, name, (base / value).resolve())
        elif isinstance(value, BaseModel):
            _resolve_paths(value, base)
        elif isinstance(value, dict | list):
            for item in value.values() if isinstance(value, dict) else value:
                if isinstance(item, BaseModel):
                    _resolve_paths(item, base)


def missing_paths(model: BaseModel) -> list[str]:
    """``key.path: not found: /abs/path`` for every file or folder the config names (weights,
    word vectors, model folders, a teacher run, unlabelled data) that does not exist; folders a
    run creates (``data.cache_dir``) are not looked for. A path named by several keys of one
    modality (of one section outside ``modalities``) is reported once, under the last: a value a
    modality takes from another of its keys
    (the ``hf`` encoder's folder as its text's ``tokenizer_path``) comes before the key the user
    wrote."""
    found: dict[tuple[str, Path], str] = {}
    for key, value in _paths(model, ""):
        if key.rsplit(".", 1)[-1] != "cache_dir" and not value.exists():
            parts = key.split(".")
            section = ".".join(parts[:2] if parts[0] == "modalities" else parts[:-1])
            found.pop((section, value), None)
            found[(section, value)] = key
    return [f"{key}: not found: {value}" for (_, value), key in found.items()]


def _paths(model: BaseModel, prefix: str) -> Iterator[tuple[str, Path]]:
    """Every ``(key, path)`` of the config section ``model``, in field order."""
    for name in type(model).model_fields:
        value, key = getattr(model, name), f"{prefix}{name}"
        if isinstance(value, Path):
            yield key, value
        elif isinstance(value, BaseModel):
            yield from _paths(value, f"{key}.")
        elif isinstance(value, dict | list):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for k, item in items:
                if isinstance(item, BaseModel):
                    yield from _paths(item, f"{key}.{k}.")


def _read_text(path: Path) -> str:
    """The file's text; a file that is not UTF-8 is a :class:`ConfigError` naming the first bad byte."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError([f"{path.name} is not UTF-8 text: byte {err.start} (line {line}) is "
                           f"{raw[err.start:err.start + 1]!r} ({err.reason}); save the file as UTF-8"],
                          source=str(path)) from None


_MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".arrow", ".feather")  # see data.manifest


def load_config(source: str | Path | dict[str, Any] | Config, *, saved_run: bool = False,
                overrides: Mapping[str, Any] | None = None, check_files: bool = False) -> Config:
    """Read a config from a YAML/JSON file, a dict or a Config.

    Relative paths inside a file (weights, vectors, tokenizers) resolve against the file's folder;
    inside a dict, against the working folder, when the config is built (so a run records them
    absolute and loads from anywhere).
    ``saved_run``: the ``config.yaml`` of a trained run, which loads even where a check added since
    would refuse it for a new run (with a warning). ``overrides``: dotted keys set before the
    config is validated (``{"train.epochs": 1}``, the command line's ``--set``; see
    :mod:`polymodal.config.overrides`). ``check_files``: also refuse a config naming files or
    folders that do not exist (weights, word vectors, a teacher run...), by their keys.

    Raises:
        ConfigError: the file is missing, not UTF-8 text or unparsable, a YAML mapping repeats a
            key, or the content does not fit the schema (or, with ``check_files``, names a missing
            file); every problem is listed with its key path.
        TypeError: ``source`` is none of those.
    """
    if not isinstance(source, str | os.PathLike | dict | Config):
        raise TypeError(f"a config is a YAML or JSON file's path, a dict or a Config; got {type(source).__name__} "
                        f"{source!r:.60}")
    if isinstance(source, Config) and not overrides:
        return source
    if not isinstance(source, str | os.PathLike):  # a dict, or a Config to edit (as a copy)
        data = config_to_dict(source) if isinstance(source, Config) else copy.deepcopy(source)
        with naming_overrides(overrides) as edits:
            apply_overrides(data, overrides or {}, edits)
            config = validate(Config, data, context={"saved_run": saved_run})
        _resolve_paths(config, Path.cwd())  # no file to be relative to: recorded absolute, as a run saves them
        missing = missing_paths(config) if check_files else []
        if missing:
            raise ConfigError(missing)
        return config
    path = Path(source)
    if not path.is_file():
        what = "is a folder, not a config file" if path.is_dir() else "config file not found"
        raise ConfigError([f"{what}: {path}"], source=str(path))
    if path.suffix.lower() in _MANIFEST_SUFFIXES:  # arguments swapped, most likely
        raise ConfigError([f"{path.name} is a manifest ({path.suffix}), not a config (YAML or JSON); the config "
                           "comes first: polymodal train CONFIG --train MANIFEST"], source=str(path))
    text = _read_text(path)
    try:
        data = load_json(text) if path.suffix == ".json" else load_yaml(text)  # YAML 1.2 booleans: `on:` is a key
    except DuplicateKeyError as err:  # listed with the document's other problems (read with the last values)
        others: list[str] = []
        if isinstance(err.data, dict):
            try:
                with naming_overrides(overrides, str(path)) as edits:
                    apply_overrides(err.data, overrides or {}, edits)
                    validate(Config, err.data, source=str(path), context={"base": path.resolve().parent,
                                                                          "saved_run": saved_run})
            except ConfigError as invalid:
                others = invalid.problems
        raise ConfigError(err.problems + others, source=str(path)) from None
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        reason = str(err).replace('in "<unicode string>"', f'in "{path.name}"')  # PyYAML names no file of its own
        raise ConfigError([f"cannot parse {path.name}: {reason}"], source=str(path)) from None
    if data is None:
        raise ConfigError([f"{path.name} is empty; a config needs at least 'modalities' (see polymodal config schema)"],
                          source=str(path))
    if not isinstance(data, dict):
        raise ConfigError([f"<root>: expected a mapping of keys; got {type(data).__name__}"], source=str(path))
    base = path.resolve().parent
    with naming_overrides(overrides, str(path)) as edits:  # local files resolve first
        if overrides:
            apply_overrides(data, overrides, edits)
        config = validate(Config, data, source=str(path), context={"base": base, "saved_run": saved_run})
    _resolve_paths(config, base)  # and every other path after
    missing = missing_paths(config) if check_files else []
    if missing:
        raise ConfigError(missing, source=str(path))
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """A plain dict (JSON types only) that :func:`load_config` turns back into the same config."""
    return config.model_dump(mode="json")


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (every default spelled out)."""
    from polymodal.utils.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(config), sort_keys=False))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file: every key with its type, range and default (a section's
    default spelt out), and a description where the default depends on the rest of the config."""
    return Config.model_json_schema(schema_generator=DefaultsJsonSchema)
