"""What a run's ``transfer`` section adds to training: data, loss terms, a loader, a last step.

``TransferPlan.prepare`` reads and encodes the unlabelled manifest (with the preprocessing fitted
on the labelled one) or runs the distillation teacher over the training rows; ``terms`` adds each
method's :class:`~polymodal.training.terms.Term` (a list of methods adds up their terms, which
share one unlabelled batch); ``train_loader`` pairs every labelled batch
with an unlabelled one (Lightning's ``CombinedLoader`` in ``max_size_cycle`` mode: an epoch runs
through the longer manifest, cycling the shorter) or makes the batches episodes (few-shot);
``finish`` sets a prototypical network's class prototypes from the whole training set.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader

from polymodal.config.transfer import DistillConfig, DomainConfig, UnlabeledConfig
from polymodal.data.content_keys import same_rows
from polymodal.data.dataset import collate, drops_short_batch
from polymodal.data.embeddings import attach_cached_features
from polymodal.data.encode import EncodedTable, freeze_inherited_objects
from polymodal.errors import ConfigError, ManifestError, OptionError, option
from polymodal.training import adaptation as _adaptation  # noqa: F401 - registers the domain terms
from polymodal.training import semi as _semi  # noqa: F401 - registers the semi-supervised terms
from polymodal.training.devices import world_size
from polymodal.training.distill import TeacherOutputs, check_teacher, teacher_outputs
from polymodal.training.fewshot import episode_loader, set_class_prototypes
from polymodal.training.terms import TRANSFER_TERMS, TaskTerm, Term
from polymodal.utils.device import default_device
from polymodal.utils.warn import warn_user

UNLABELED_METHODS = ("dann", "cdan", "mmd", "coral", "pseudo_label", "fixmatch", "distill")
SKIPPED_STEPS_WARNING = 0.2  # share of the steps skipping a domain loss (too few rows with its modality) that warns


def unlabeled_source(config: Any, unlabeled: Any | None) -> Any | None:
    """The unlabelled manifest a fit learns from: ``unlabeled`` (``fit(unlabeled=...)``,
    ``--unlabeled``) when given, else the config's ``transfer.unlabeled`` (None: neither)."""
    if unlabeled is not None:
        return unlabeled
    return next((m.unlabeled for m in config.transfers if isinstance(m, UnlabeledConfig) and m.unlabeled is not None),
                None)


def recorded_config(config: Any, source: Any | None) -> Any:
    """``config`` with ``transfer.unlabeled`` naming the manifest the fit learns from (``source``:
    its absolute path; None for a DataFrame, which has no path to record), so that the run's
    ``config.yaml`` records what it trained on and ``--resume`` can check it
    (:func:`polymodal.resume.check_resumed_data`). A copy when anything changes."""
    learners = [i for i, m in enumerate(config.transfers) if isinstance(m, UnlabeledConfig)]
    value = Path(source).resolve() if isinstance(source, str | os.PathLike) else None
    if all(config.transfers[i].unlabeled == value for i in learners):
        return config
    config = config.model_copy(deep=True)
    for i in learners:
        config.transfers[i].unlabeled = value
    return config


def unrecorded_config(config: Any, given: Any) -> Any:
    """The config a new fit starts from when the last one recorded its unlabelled file in a copy
    (:func:`recorded_config`): ``config`` with any edits made to it since, and each method's
    ``transfer.unlabeled`` as ``given`` had it (the methods matched by position and kind)."""
    config = config.model_copy(deep=True)
    before = given.transfers
    for i, method in enumerate(config.transfers):
        if isinstance(method, UnlabeledConfig) and i < len(before) and type(before[i]) is type(method):
            method.unlabeled = before[i].unlabeled
    return config


class PairedLoader(CombinedLoader):
    """``{"labeled": batch, "unlabeled": batch}`` batches; its length (steps per epoch) is known
    before iteration: the longer loader's."""

    def __init__(self, labeled: DataLoader, unlabeled: DataLoader):
        with warnings.catch_warnings():  # Lightning flattening the dict with a class newer torch deprecates
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
            super().__init__({"labeled": labeled, "unlabeled": unlabeled}, mode="max_size_cycle")

    def __len__(self) -> int:
        if self._iterator is not None:
            return len(self._iterator)
        return max(len(loader) for loader in self.flattened)


def main_classes(targets: Any) -> slice:
    """The output columns of the main task (all of them for a single-task model)."""
    sizes = getattr(targets, "task_outputs", None)
    return slice(0, next(iter(sizes.values())) if sizes else targets.n_outputs)


def main_labels(targets: Any, encoded: np.ndarray) -> np.ndarray:
    """The main task's class indices from encoded targets (single- or multi-task)."""
    return targets.main_targets(encoded) if hasattr(targets, "main_targets") else encoded


def warn_if_evaluated(source: Any, evaluated: dict[str, Any]) -> None:
    """Warn when the unlabelled rows are rows the fit evaluates on (``evaluated``: the validation
    and test manifests by name, None where absent; the same file, a byte-identical copy in the same
    folder (whose relative paths name the same files), an equal DataFrame or the same Manifest: see
    :func:`~polymodal.data.content_keys.same_rows`): the model trains on them, so their metrics are
    not those of unseen rows. Labels in an unlabelled manifest are otherwise ignored without a word
    (a labelled training set given as unlabelled rows is a normal set-up)."""
    for split, data in evaluated.items():
        if source is not None and data is not None and same_rows(source, data):
            warn_user(f"the unlabelled rows are the {split} manifest: the model trains on them (as unlabelled "
                      f"rows), so its {split} metrics are not those of unseen rows; give other rows to one of them")


def check_aligned_rows(method: DomainConfig, key: str, table: EncodedTable, manifest: str, batch_size: int,
                       side: str) -> None:
    """Refuse, before training, a domain method whose aligned representation fewer than 2 rows of
    a domain hold (its loss would be 0 at every step: a step compares the two domains only with at
    least 2 rows of each, and skips the term otherwise), and warn when more than
    :data:`SKIPPED_STEPS_WARNING` of the steps would skip it: a batch of ``b`` rows drawn where a
    share ``p`` of the rows hold the representation holds fewer than 2 of them with probability
    ``(1-p)^b + b p (1-p)^(b-1)``. The fused representation (``on: fused``) is held by every row
    with any modality.

    Raises:
        ConfigError: no row (or a single one) of ``table`` holds an aligned modality.
    """
    if not len(table):
        return
    present = {name: np.asarray(m.present, bool) for name, m in table.modalities.items()}
    if method.on == "fused":
        counts = {"fused": int(np.logical_or.reduce(list(present.values())).sum()) if present else 0}
    else:
        counts = {name: int(present[name].sum()) for name in sorted(method.on) if name in present}
    batch = min(batch_size, len(table))
    for name, count in counts.items():
        what = "the fused representation (any modality)" if name == "fused" else f"modality '{name}'"
        setting = f"{key}.on: {method.on if method.on == 'fused' else list(method.on)}"
        if count < 2:
            raise ConfigError([f"{setting}: method '{method.method}' aligns {what} of the {side} rows, but "
                               f"{'none' if count == 0 else 'only 1'} of the {len(table)} rows of {manifest} holds "
                               f"it; a step needs at least 2 such rows of each domain, so the domain loss would be 0 "
                               f"at every step. Give {side} rows with {what}, or align another representation "
                               f"({key}.on: fused, or modalities the rows hold)"])
        share = count / len(table)
        skipped = (1 - share) ** batch + batch * share * (1 - share) ** (batch - 1)
        if skipped > SKIPPED_STEPS_WARNING:
            warn_user(f"{setting}: only {count} of the {len(table)} {side} rows of {manifest} hold {what}; about "
                      f"{skipped:.0%} of the steps (batches of {batch}) would draw fewer than 2 of them and skip "
                      f"the domain loss of '{name}'. Give more {side} rows with {what}, or larger batches")


class TransferPlan:
    """The transfer method(s) of one fit (see the module docstring).

    Attributes:
        info: facts for the run's ``metrics.json`` (unlabelled rows, method).
    """

    def __init__(self, config: Any, pipeline: Any, train_table: EncodedTable, train_y: np.ndarray):
        self.config = config
        self.methods = config.transfers
        self.protonet = config.protonet
        self.pipeline = pipeline
        self.train_table = train_table
        self.train_y = train_y
        self.unlabeled_table: EncodedTable | None = None
        self.unlabeled_manifest: Any | None = None
        self.teacher: TeacherOutputs | None = None
        self.info: dict[str, Any] = {"transfer": "+".join(m.method for m in self.methods)} if self.methods else {}

    @classmethod
    def prepare(cls, config: Any, pipeline: Any, train_manifest: Any, train_table: EncodedTable,
                train_y: np.ndarray, unlabeled: Any | None = None,
                load_run: Callable[[Path], Any] | None = None) -> TransferPlan:
        """Check the method's inputs and load what it learns from.

        Args:
            unlabeled: the unlabelled manifest (path or DataFrame), or None to use
                ``transfer.unlabeled``.
            load_run: loads a saved run (``MultimodalPredictor.load``), for the distillation teacher.

        Raises:
            ConfigError: unlabelled data given to a method that does not use it, or missing for
                one that needs it.
            ManifestError / DecodeError: the unlabelled manifest or the teacher's inputs are bad.
            SchemaMismatchError: the teacher does not fit this run.
        """
        plan = cls(config, pipeline, train_table, train_y)
        learners = [m for m in plan.methods if m.uses_unlabeled != "no"]
        source = unlabeled_source(config, unlabeled)
        if source is not None and not learners:
            names = [m.method for m in plan.methods]
            what = ("no transfer method is configured" if not names
                    else f"the configured transfer method(s) {names} learn from none")
            raise OptionError([f"{option('--unlabeled')}: unlabelled data was given, but {what}; set "
                               f"transfer.method to one that does: {', '.join(UNLABELED_METHODS)}"])
        needs = [m for m in learners if m.uses_unlabeled == "required"]
        if needs and source is None:
            key = config.transfer_key(next(i for i, m in enumerate(plan.methods) if m is needs[0]))
            raise ConfigError([f"{key}.unlabeled: method '{needs[0].method}' learns from an unlabelled "
                               f"manifest; give {option('--unlabeled')}, or set {key}.unlabeled"])
        if learners and source is not None:
            plan.unlabeled_manifest = pipeline.read(source, require_target=False, training=True)
            plan.unlabeled_table = pipeline.encode(plan.unlabeled_manifest, progress=config.train.progress)
            plan.info["unlabeled_rows"] = len(plan.unlabeled_table)
            domain = next((m for m in learners if isinstance(m, DomainConfig)), None)
            if domain is not None and len(plan.unlabeled_table) < 2:  # a step compares two distributions
                raise ManifestError([f"{plan.unlabeled_manifest.name}: method '{domain.method}' compares the source "
                                     "and target distributions of each step and needs at least 2 unlabelled rows; "
                                     f"got {len(plan.unlabeled_table)}"], source=plan.unlabeled_manifest.name)
            if domain is not None:
                key = config.transfer_key(plan.methods.index(domain))
                check_aligned_rows(domain, key, train_table, train_manifest.name, config.train.batch_size, "labelled")
                check_aligned_rows(domain, key, plan.unlabeled_table, plan.unlabeled_manifest.name,
                                   domain.unlabeled_batch_size or config.train.batch_size, "unlabelled")
        distill = next((m for m in plan.methods if isinstance(m, DistillConfig)), None)
        if distill is not None:
            if load_run is None:
                raise ValueError("distillation needs load_run to load the teacher's run folder")
            teacher = load_run(Path(distill.teacher))
            check_teacher(teacher, pipeline.targets.classes)
            device, columns = default_device(config.train.accelerator), main_classes(teacher.pipeline.targets)
            unlabeled = plan.unlabeled_table if distill.uses_unlabeled != "no" else None
            key = config.transfer_key(plan.methods.index(distill))
            outputs = [teacher_outputs(teacher, manifest, np.asarray(table.rows), device, run=distill.teacher,
                                       hint=hint)
                       for manifest, table, hint in (
                           (train_manifest, train_table, None),
                           (plan.unlabeled_manifest, unlabeled, f"{key}.teach_unlabeled: false teaches on the "
                                                                "labelled rows only")) if table is not None]
            # a multi-task teacher's main task; the unlabelled rows' outputs, when there are any, second
            plan.teacher = TeacherOutputs(*[(logits[:, columns], features) for logits, features in outputs])
            plan.info["teacher"] = str(distill.teacher)
        return plan

    def attach_cached_features(self, net: Any) -> None:
        """Embed the unlabelled rows of ``encoder.cache`` modalities with ``net``'s frozen encoders,
        as the labelled rows are, so that both batches hold the same inputs."""
        if self.unlabeled_table is not None:
            self.unlabeled_table = attach_cached_features(self.config, net, self.pipeline, self.unlabeled_manifest,
                                                          self.unlabeled_table, self.config.train.progress)

    def terms(self, net: Any, terms: list[Term]) -> list[Term]:
        """The run's loss terms with each method's term (``TRANSFER_TERMS``) added; a term that
        ``replaces_task`` takes the task term's place (a prototypical network's head scores
        prototypes, which the episodes train)."""
        classes = main_classes(self.pipeline.targets)
        for method in self.methods:
            term = TRANSFER_TERMS.build(method, net=net, classes=classes, config=self.config, pipeline=self.pipeline,
                                        teacher=self.teacher)
            terms = [term, *(t for t in terms if not isinstance(t, TaskTerm))] if term.replaces_task else [*terms, term]
        return terms

    def train_loader(self, labeled: DataLoader) -> Any:
        """The training loader: ``labeled`` itself, paired with the unlabelled rows, or episodic."""
        if self.unlabeled_table is not None:
            sizes = [m.unlabeled_batch_size for m in self.methods if getattr(m, "unlabeled_batch_size", None)]
            size = sizes[0] if sizes else self.config.train.batch_size
            dataset = self.pipeline.dataset(self.unlabeled_table, None, train=True)
            unlabeled = DataLoader(dataset, batch_size=size, shuffle=True, collate_fn=collate,
                                   num_workers=labeled.num_workers, persistent_workers=labeled.num_workers > 0,
                                   worker_init_fn=freeze_inherited_objects,
                                   drop_last=drops_short_batch(len(dataset), size, world_size(self.config.train)))
            return PairedLoader(labeled, unlabeled)
        if self.protonet is not None:
            proto = self.protonet
            labels = main_labels(self.pipeline.targets, self.train_y)
            return episode_loader(labeled.dataset, labels, ways=proto.ways or int(labels.max()) + 1,
                                  shots=proto.shots, queries=proto.queries, episodes=proto.episodes,
                                  seed=self.config.train.seed, collate=collate, num_workers=labeled.num_workers)
        return labeled

    def finish(self, net: Any) -> None:
        """After training: a prototypical network's prototypes become the training classes' means."""
        if self.protonet is not None:
            loader = DataLoader(self.pipeline.dataset(self.train_table, None, train=False),
                                batch_size=self.config.train.batch_size, collate_fn=collate)
            set_class_prototypes(net, loader, main_labels(self.pipeline.targets, self.train_y),
                                  default_device(self.config.train.accelerator))
