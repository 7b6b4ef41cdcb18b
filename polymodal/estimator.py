"""``Estimator``: what :class:`~polymodal.predictor.MultimodalPredictor` and
:class:`~polymodal.anomaly.detector.AnomalyDetector` share.

That is the config, the fitted data pipeline, the facts of the fit (``history``, ``info``,
``metrics``, ``last_skipped``), the files skipped by the latest evaluation (``eval_skipped``),
reading and encoding manifests, batching, batched inference and what every run folder holds
(config, preprocessing, weights and results: :mod:`polymodal.runfolder`; the pretrained
encoders' files: :mod:`polymodal.assets`). A
subclass keeps its network in its own attribute and brings ``require_fitted``, ``output_network``
and ``n_outputs`` (the network as ``(inputs, present) -> (B, K)`` outputs), ``_split`` (how
``valid`` is held out of ``train`` when none is given), ``fit``, ``evaluate``, ``predict``, and
``load`` around :meth:`_open_run` and ``_write_report`` (what :meth:`save` writes besides what
every run holds).

The layers built over a fitted model (evaluation, retrieval, deploy) use these public methods
beside the user-facing ones: :meth:`require_fitted` (pipeline and network), :meth:`read_data`
(a manifest read and validated), :meth:`encode_data` (read and encoded), :meth:`infer` (a module
run over an encoded table in batches), :meth:`raw_outputs` (:meth:`output_network` over an encoded table: what an export is checked
against), ``device``; a predictor adds ``score_outputs`` (task metrics of outputs).
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from polymodal import __version__, runfolder
from polymodal.assets import localize_assets, save_assets
from polymodal.config import Config, load_config
from polymodal.config.fitted import check_unchanged, model_settings
from polymodal.data.content_keys import content_key, same_rows
from polymodal.data.dataset import Batch, data_loader, unshared_generator
from polymodal.data.embeddings import reuse_cached_features
from polymodal.data.encode import EncodedTable
from polymodal.data.manifest import Manifest
from polymodal.data.multitarget import classes_fitted_on, targets_from_state
from polymodal.data.pipeline import DataPipeline, DataSource, as_names
from polymodal.data.skipped import describe_skipped, require_rows, skipped_by_split, skipped_frame
from polymodal.data.targets import TargetEncoder
from polymodal.data.validation import target_problems
from polymodal.errors import ConfigError, ManifestError, RunFolderError, SchemaMismatchError, option
from polymodal.resume import (
    check_out,
    check_resumed_data,
    clear_run,
    drop_replaced_run,
    held_run,
    holding_the_run_folder,
    manifest_paths,
)
from polymodal.run_files import SCORES_FILE, SKIPPED_FILE
from polymodal.runfolder import Scored
from polymodal.training.devices import across_ranks, check_devices, world_size
from polymodal.training.process_state import kept_process_state
from polymodal.utils.device import default_device, default_workers, run_batches
from polymodal.utils.io import check_folder_path
from polymodal.utils.warn import warn_user

F = TypeVar("F", bound=Callable[..., Any])

# the manifests a fit records (``info["<split>_manifest"]``), in the order a held-out check prefers them
MANIFEST_SPLITS = ("test", "valid", "train")


# capabilities an estimator may lack (see Estimator.require)
PREDICT = "prediction"
SUBSETS = "subset evaluation (--missing)"
ROBUSTNESS = "a robustness sweep (--robustness)"
EXPLAIN = "explain"
EXPORT = "export"
PROBABILITIES = "class probabilities"
EMBEDDINGS = "a shared embedding space"


class Estimator:
    """Base of the objects that fit on a manifest and save a run folder.

    Attributes:
        config: the validated config.
        pipeline: fitted preprocessors and target encoder (after ``fit``/``load``).
        history: one row per training epoch.
        info: facts about the fit (rows, seconds, parameters, ``skipped_files`` of the train and
            valid manifests, the manifests given as files: ``train_manifest``, ``valid_manifest``,
            ``test_manifest`` and their content keys...).
        metrics: ``{"valid": .., "test": ..}`` from the fit.
        last_skipped: the files skipped by the fit (``split`` column: train, valid or test), written
            to the run folder's ``skipped.csv``; later evaluations leave it alone.
        eval_skipped: the files skipped by the latest evaluate / predict / explain (or the fit's test set).
        diagnostics: the report's analyses after the fit (subsets, importance, robustness...: see
            :mod:`polymodal.evaluation.diagnostics`; an anomaly detector's on its test manifest only).
        emptied_rows_predicted: what ``data.on_error: missing`` does to a predicted row left with no
            modality present, as the skipped-files warning says it (:func:`describe_skipped`'s
            ``emptied``): left out of a prediction (an anomaly detector keeps it, flagged).
    """

    emptied_rows_predicted: ClassVar[str] = "left out"
    _read_targets = staticmethod(targets_from_state)  # the target encoder of a saved run's state (a subclass's own)

    @property
    def unsupported(self) -> dict[str, str]:
        """What this estimator cannot do, by capability (PREDICT, SUBSETS, ROBUSTNESS, EXPLAIN,
        EXPORT; PROBABILITIES and EMBEDDINGS for the methods only a predictor has), with the reason
        (see :meth:`require`); it may depend on the config's task."""
        return {}

    @property
    def unlabelled_advice(self) -> str:
        """What an evaluation refused for a manifest without the target column advises instead:
        what this estimator does with unlabelled rows (a predictor's predictions; a subclass whose
        model makes none says what it offers)."""
        return "to predict unlabelled rows use 'polymodal predict' (predict_frame in Python)"

    def __init__(self, config: Config | dict[str, Any] | str | os.PathLike):
        """``config``: a :class:`~polymodal.config.Config`, a dict or a YAML/JSON file's path
        (validated as :func:`~polymodal.config.load_config` does)."""
        self.config = load_config(config)
        if self.config is config:  # the caller's object: this estimator's own copy, which no other shares
            self.config = config.model_copy(deep=True)
        self.pipeline: DataPipeline | None = None
        self.history = pd.DataFrame()
        self.info: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.last_skipped = pd.DataFrame()
        self.eval_skipped = pd.DataFrame()
        self.diagnostics: dict[str, Any] = {}  # the report's subsets, importance, robustness... (see report.rows)
        self.run_dir: Path | None = None  # the run folder this model was last trained into, loaded from or saved to
        self._own_folders: set[Path] = set()  # every such folder: save() replaces this model's own runs freely
        self._skips_warned = True
        self._gaps_said: set[str] = set()  # the untrained-gap warnings given (see _warn_untrained_gaps)
        self._fitted_settings: dict[str, Any] | None = None  # the model's config sections when it was fitted / loaded
        # (scores, labels) the run keeps in scores.npz, to choose a threshold from again without the rows: an anomaly
        # detector's scores, a two-class classifier's positive-class probabilities (None: not kept, or other tasks)
        self.valid_scores: Scored | None = None  # of the last fit's validation rows
        self.test_scores: Scored | None = None  # of the last fit's test rows
        self.eval_scores: Scored | None = None  # of the latest evaluate's rows (or the fit's test)
        # what scores.npz keeps beside them, by name (an anomaly detector's: each row's modalities, the
        # validation normal rows' scores per subset of modalities); empty for other estimators
        self.kept: dict[str, np.ndarray] = {}

    def _claim_run_folder(self, path: str | os.PathLike, overwrite: bool) -> Path:
        """``path`` ready for :meth:`save`: a folder holding another run (not this model's own) is
        refused, or with ``overwrite`` cleared of that run's files first, so that its checkpoints,
        logs and report never sit beside this model."""
        run = Path(path)
        if run.resolve() not in self._own_folders and run.is_dir() and (held := held_run(run)) is not None:
            if not overwrite:
                raise RunFolderError(f"{run} already holds another run ({held}); save(path, overwrite=True) replaces "
                                     "it (its checkpoints, logs and report go too), or give another folder")
            clear_run(run)
        self._own(run)
        return run

    def _own(self, run: Path | None, *, fresh: bool = False) -> Path | None:
        """Record ``run`` as this model's run folder (see :meth:`_claim_run_folder`); returns it.
        ``fresh``: a new fit, whose model owns no earlier folder (another may have been saved there)."""
        if fresh:
            self._own_folders.clear()
            self.run_dir = None
        if run is not None:
            self.run_dir = Path(run)
            self._own_folders.add(self.run_dir.resolve())
        return run

    @property
    def classes(self) -> list[Any] | None:
        """The outputs in the order of ``predict_proba``'s columns: the class labels
        (classification) or the label columns (multilabel); None for other tasks and before
        ``fit`` / ``load``."""
        if self.pipeline is None or self.config.task not in ("classification", "multilabel"):
            return None
        targets = self.pipeline.targets
        return list(targets.classes) if self.config.task == "classification" else list(targets.columns)

    @property
    def device(self) -> torch.device:
        """Where this model runs outside training (inference, frozen-feature caching, the
        report's diagnostics): ``train.accelerator``'s device on this machine (see
        :func:`~polymodal.utils.device.default_device`)."""
        return default_device(self.config.train.accelerator)

    @property
    def rank(self) -> int:
        """This process's rank in the latest distributed fit (0 otherwise): the lines after ``fit``
        run on every rank, so ``if pred.rank == 0:`` guards what should happen once."""
        return int(self.info.get("rank", 0))

    def __repr__(self) -> str:
        modalities = {name: m.kind for name, m in self.config.modalities.items()}
        return (f"{type(self).__name__}(task={self.config.task!r}, modalities={modalities}, "
                f"fitted={self._fitted})")

    @property
    def _network(self) -> torch.nn.Module | None:
        """The subclass's network (None before ``fit`` / ``load``)."""
        raise NotImplementedError

    @property
    def _fitted(self) -> bool:
        """Whether ``fit`` or ``load`` gave this estimator its pipeline and network: what
        :meth:`require_fitted` checks (and ``repr`` says)."""
        return self.pipeline is not None and self._network is not None

    @contextmanager
    def quiet_skips(self) -> Iterator[Estimator]:
        """Within the block, files skipped by ``data.on_error`` are not warned about (they are
        still listed in ``last_skipped`` / ``eval_skipped``): for callers that report them
        themselves, such as the command line (with the file it lists them in) or batch
        prediction (once for all its chunks)."""
        before, self._skips_warned = self._skips_warned, False
        try:
            yield self
        finally:
            self._skips_warned = before

    def warn_skipped(self, skipped: pd.DataFrame, listed: str, *, predicting: bool = False) -> None:
        """Warn about ``skipped`` files (unless inside :meth:`quiet_skips`): the first few, and
        where ``listed`` they all are; ``predicting``: they were skipped by a prediction, whose
        rows left with no modality present are :attr:`emptied_rows_predicted` (else left out)."""
        if self._skips_warned and not skipped.empty:
            emptied = self.emptied_rows_predicted if predicting else "left out"
            warn_user(f"{describe_skipped(skipped, self.config.data.on_error, emptied=emptied)}\n"
                      f"  all of them: {listed}")

    def require_fitted(self) -> tuple[DataPipeline, torch.nn.Module]:
        """The fitted pipeline and network.

        Raises:
            NotFittedError: neither ``fit`` nor ``load`` has run.
        """
        raise NotImplementedError

    def output_network(self) -> torch.nn.Module:
        """The fitted network with one face for every task: ``(inputs, present) -> (B, K)`` raw
        outputs (a classifier's logits or values, an anomaly detector's scores); what an export traces.

        Raises:
            NotFittedError: neither ``fit`` nor ``load`` has run.
        """
        raise NotImplementedError

    def model_fingerprint(self) -> str:
        """A hash of what the fitted model's outputs depend on: its network's weights and buffers,
        its preprocessing and a classifier's decision threshold (the same for a fitted model and for
        it loaded from its run folder; another one after training further). Batch predictions
        resume, and an export is served, only for the model they were made with."""
        from polymodal.models.weights import state_digest

        pipeline, net = self.require_fitted()
        threshold = getattr(pipeline.targets, "threshold", None)  # an anomaly detector's lives in its network
        return state_digest(net, "".join(f"{name}:{prep.fingerprint()};"
                                         for name, prep in sorted(pipeline.preprocessors.items()))
                            + ("" if threshold is None else f"decision.threshold:{threshold!r};"))

    def raw_outputs(self, table: EncodedTable) -> np.ndarray:
        """:meth:`output_network`'s outputs (N, K) for an encoded table."""
        network = self.output_network()
        return self.infer(network, table, lambda batch: network(batch["inputs"], batch["present"]),
                          (0, self.n_outputs))

    def network_table(self, manifest: Manifest, table: EncodedTable, *, in_memory: bool = False) -> EncodedTable:
        """``table`` (encoded from ``manifest``) as the network reads it for inference: where the model
        caches a frozen encoder's outputs (``encoder.cache``), those outputs in place of the inputs
        (see :func:`polymodal.data.embeddings.reuse_cached_features`; ``in_memory``: computed and
        held in memory when there is no usable cache folder), read from (and added to) the feature
        cache. Shared by every estimator: it needs only the fitted model's encoders by modality
        name (``require_fitted()[1].encoders``: a ``MultimodalNet``'s, an ``AnomalyModel``'s)."""
        pipeline, model = self.require_fitted()
        return reuse_cached_features(self.config, model, pipeline, manifest, table, in_memory=in_memory,
                                     progress=self.config.train.progress)

    @property
    def n_outputs(self) -> int:
        """K, the width of :meth:`raw_outputs`."""
        raise NotImplementedError

    def coalition_reference(self) -> np.ndarray | None:
        """What modality attribution measures a row's scores against, per coalition of modalities
        (bit i: the i-th sorted modality present): None, the score with no modality present (an
        anomaly detector: the normal rows' mean score under the same coalition)."""
        return None

    def _mark_fitted(self) -> None:
        """Remember the config the model was fitted or loaded with (see :mod:`polymodal.config.fitted`);
        ``None`` while a fit runs, whose config may differ from the last one's. A label the fitted
        model never saw is reported as such (:func:`~polymodal.data.multitarget.classes_fitted_on`)."""
        self._fitted_settings = model_settings(self.config)
        if self.pipeline is not None and isinstance(self.pipeline.targets, TargetEncoder):
            self.pipeline.targets.fitted_on = classes_fitted_on(self.config)

    def _check_config_unchanged(self) -> None:
        """Refuse a model whose config changed since it was fitted (``pred.config.task = ...``)."""
        check_unchanged(self._fitted_settings, self.config)

    def _split(self, manifest: Manifest) -> tuple[Manifest, Manifest]:
        """(train, valid) held out of a training manifest when no validation one is given."""
        raise NotImplementedError

    def require(self, capability: str, asked: str | None = None) -> None:
        """Raise a clear error when ``capability`` is one this estimator does not have.

        Args:
            asked: what the message calls it when the user asked for it under another name
                (``serving`` needs ``export``); default ``capability``.

        Raises:
            SchemaMismatchError: naming the capability, the task and why.
        """
        if capability in self.unsupported:
            self.refuse(capability, asked)

    def refuse(self, capability: str, asked: str | None = None) -> NoReturn:
        """Raise :meth:`require`'s error for ``capability`` (one of :attr:`unsupported`): for a
        method this estimator offers only to say what to use instead.

        Raises:
            SchemaMismatchError: naming the capability, the task and why.
        """
        reason = self.unsupported.get(capability, "this estimator does not implement it")
        raise SchemaMismatchError(f"{asked or capability} is not available for task '{self.config.task}': {reason}")

    # -- fitting ------------------------------------------------------------------------------
    def _seed(self) -> None:
        """Seed every random generator (Python, numpy, torch, data workers) with ``train.seed``,
        and give torch ``train.threads`` CPU threads when set (the fit restores both after). Every
        rank of a distributed fit is seeded alike, so that they build the same model; its ranks
        other than 0 draw apart once training starts (:class:`~polymodal.training.trainer.RankSeed`)."""
        import lightning as L

        L.seed_everything(self.config.train.seed, workers=True, verbose=False)
        if self.config.train.threads is not None:
            torch.set_num_threads(self.config.train.threads)

    def _begin_fit(self, out: str | os.PathLike | None, *, resume: bool, overwrite: bool, data: dict[str, Any],
                   planned_epochs: int | None = None, from_config: dict[str, bool] | None = None) -> None:
        """What every fit checks before it reads any data, then seeds: that ``out`` may take the
        run (:func:`~polymodal.resume.check_out`; ``planned_epochs`` as there), that the devices
        asked for exist, and that a resumed run is given the manifests it recorded (``data``:
        split name -> source, ``from_config`` as :func:`~polymodal.resume.check_resumed_data`)."""
        self._fitted_settings = None  # this fit's config may differ from the last one's
        check_out(out, self.config, resume=resume, overwrite=overwrite, planned_epochs=planned_epochs)
        check_devices(self.config.train)
        if resume and out is not None:
            check_resumed_data(Path(out), data, from_config=from_config)
        self._seed()

    def _read_fit_data(self, pipeline: DataPipeline, train: DataSource, valid: DataSource | None,
                       test: DataSource | None, *, require_target: bool) -> tuple[Manifest, Manifest, Manifest | None]:
        """The validated training, validation and test manifests, all read before training starts
        (a mistake in the test manifest is reported before, not after, the epochs); ``valid``
        None: held out of ``train``. Every file or folder the config names (weights, word vectors,
        a teacher run...) is looked for first, and those missing are named by their keys."""
        from polymodal.config.root import missing_paths

        missing = missing_paths(self.config)
        if missing:
            raise ConfigError(missing)
        if same_rows(train, valid):  # the same file, a copy of it, an equal DataFrame or the same Manifest
            which = ("DataFrame holds the training rows" if isinstance(valid, pd.DataFrame)
                     else f"Manifest ({valid.name}) holds the training rows" if isinstance(valid, Manifest)
                     else f"manifest is the training manifest ({valid})" if Path(valid).resolve() == Path(train).resolve()
                     else f"manifest {valid} is a copy of the training manifest ({train})")
            warn_user(f"the validation {which}: early stopping and the weights kept at the end follow rows the model "
                      f"trains on; give held-out rows, or {option('no --valid', 'valid=None')} to hold out "
                      "train.val_fraction")
        train_m = pipeline.read(train, require_target=require_target, training=True)
        if valid is None:
            train_m, valid_m = self._split(train_m)
        else:
            valid_m = pipeline.read(valid, require_target=require_target, training=True)
        return train_m, valid_m, None if test is None else pipeline.read(test, require_target=True)

    def _evaluate_test(self, test: Manifest, run_dir: Path | None) -> dict[str, Any]:
        """``evaluate(test)`` after a fit. When it fails (say, a corrupt file in the test manifest, or
        a file system error), the trained model is saved to ``run_dir`` first, then the error is
        raised."""
        try:
            return self.evaluate(test)
        except Exception:  # not swallowed: the model is saved, then the error goes on
            if run_dir is not None:
                self.save(run_dir)
                warn_user(f"the test manifest could not be evaluated; the trained model is saved in {run_dir} "
                          "(evaluate it with 'polymodal evaluate' once the manifest is fixed)")
            raise

    def _fit_info(self, train_table: EncodedTable, valid_table: EncodedTable, model: torch.nn.Module,
                  sources: dict[str, DataSource | None], **facts: Any) -> dict[str, Any]:
        """``info`` after a fit: the rows and files of both splits, how many training rows lacked
        each modality (``train_absent``), the parameters, ``facts`` and the manifests it was fitted
        on (``sources``: split -> path or DataFrame)."""
        absent = {name: int((~modality.present).sum()) for name, modality in train_table.modalities.items()}
        return {"train_rows": len(train_table), "valid_rows": len(valid_table), "train_absent": absent, **facts,
                "parameters": sum(p.numel() for p in model.parameters()),
                "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "skipped_files": len(train_table.skipped) + len(valid_table.skipped), **manifest_paths(**sources)}

    def _finish_fit(self, test: Manifest | None, run_dir: Path | None) -> None:
        """After the validation metrics: evaluate ``test`` (when given), adding the files it skipped
        to ``last_skipped`` (training's and validation's, from :meth:`_fit_pipeline`; the run
        writes all three)."""
        if test is not None:
            with self.quiet_skips():  # said below, with the run's list
                self.metrics["test"] = self._evaluate_test(test, run_dir)
            self.warn_skipped(self.eval_skipped, _skip_list(run_dir))
            if not self.eval_skipped.empty:
                self.last_skipped = pd.concat([self.last_skipped, skipped_by_split({"test": self.eval_skipped})],
                                              ignore_index=True)

    def _dropout_rates(self) -> dict[str, float]:
        """``train.modality_dropout`` per modality."""
        rate = self.config.train.modality_dropout
        return dict(rate) if isinstance(rate, dict) else {n: float(rate) for n in self.config.modality_names}

    def _fit_pipeline(self, pipeline: DataPipeline, train_m: Manifest, valid_m: Manifest,
                      test_m: Manifest | None = None, out: str | os.PathLike | None = None
                      ) -> tuple[EncodedTable, np.ndarray, EncodedTable, np.ndarray]:
        """Fit ``pipeline`` on ``train_m`` (it becomes ``self.pipeline``) and encode both manifests;
        ``test_m``'s targets are encoded too, so a label the training did not see is refused
        before the epochs (and before ``--overwrite`` clears the earlier run), not after them.
        The files both splits skipped (``data.on_error``) become ``last_skipped`` and are warned
        about here, before the epochs, so a broken path is seen before hours of training (``out``:
        the run folder whose ``skipped.csv`` will list them).

        Returns:
            The training table and targets, then the validation table and targets.
        """
        progress = self.config.train.progress
        train_table, train_y = pipeline.fit(train_m, progress=progress)
        valid_table = pipeline.encode(valid_m, progress=progress)
        require_rows(valid_table, valid_m, self.config.data.on_error, "validate on", "validation row(s)")
        valid_y = pipeline.encode_targets(valid_m, valid_table)
        if test_m is not None:
            pipeline.check_test_targets(test_m)
        for manifest in (valid_m, test_m):  # read before the preprocessors learned the categories: checked now
            if manifest is not None:
                pipeline.warn_unknown_categories(manifest, self.config.modality_names)
        self.pipeline = pipeline
        self.last_skipped = skipped_by_split({"train": skipped_frame(train_table.skipped),
                                              "valid": skipped_frame(valid_table.skipped)})
        self.warn_skipped(self.last_skipped, _skip_list(out))
        return train_table, train_y, valid_table, valid_y

    def _loader(self, table: EncodedTable, targets: np.ndarray | None, train: bool) -> DataLoader:
        """Batches of ``table`` (with ``targets`` when given); augmented and shuffled when ``train``.

        ``train.num_workers`` worker processes (None: several when training with augmentation,
        else none), kept alive between epochs, and pinned memory when the model runs on a CUDA GPU.
        """
        workers = self.config.train.num_workers
        if workers is None:
            augment = any(getattr(getattr(m, "preprocess", None), "augment", None)
                          for m in self.config.modalities.values())
            workers = default_workers() if (train and augment) else 0
        return data_loader(self.pipeline.dataset(table, targets, train=train), self.config.train.batch_size,
                           train=train, workers=workers, pin_memory=self.device.type == "cuda",
                           ranks=world_size(self.config.train))

    # -- inference ----------------------------------------------------------------------------
    def read_data(self, data: DataSource, *, require_target: bool, modalities: Iterable[str] | None = None
                  ) -> Manifest:
        """``data`` read and validated with the fitted pipeline (``modalities``: only these
        present; a bare name is one modality).

        Raises:
            ManifestError: ``require_target`` (an evaluation) and ``data`` lacks a target column:
                named, with what to do with unlabelled rows instead (:attr:`unlabelled_advice`); or
                any other problem.
            SchemaMismatchError: ``modalities`` names one the model does not have (with the
                name most likely meant).
        """
        pipeline, _ = self.require_fitted()
        names = as_names(modalities)
        if names is not None:  # an unknown name before the target is looked for
            pipeline.check_modalities(names, None)
        if require_target:
            data = pipeline.read_raw(data)  # a Manifest as it is: read once
            unlabelled = [problem for column in self.config.targets if column not in data.columns
                          for problem in target_problems(data, column, self.config.task)]
            if unlabelled:
                raise ManifestError([f"{problem}: evaluating scores predictions against it; {self.unlabelled_advice}"
                                     for problem in unlabelled], source=data.name)
        return pipeline.read(data, require_target=require_target, modalities=names)

    def encode_data(self, data: DataSource, *, require_target: bool, modalities: Iterable[str] | None = None,
                    predicting: bool = False) -> tuple[Manifest, EncodedTable]:
        """Read (:meth:`read_data`) and encode ``data`` with the fitted pipeline (``modalities``:
        only these present); its skipped files become ``eval_skipped`` (warned about as a
        prediction's when ``predicting``: see :meth:`warn_skipped`)."""
        pipeline, _ = self.require_fitted()
        names = as_names(modalities)
        manifest = self.read_data(data, require_target=require_target, modalities=names)
        table = pipeline.encode(manifest, progress=self.config.train.progress,
                                modalities=pipeline.check_modalities(names, manifest))
        if names is None:  # rows that lack a modality by themselves, not a subset chosen on purpose
            self._warn_untrained_gaps(manifest, table, scored=require_target)
        self.eval_skipped = skipped_frame(table.skipped)
        self.warn_skipped(self.eval_skipped, "the predictor's .eval_skipped", predicting=predicting)
        if require_target:  # scores of no row: refused, not computed
            require_rows(table, manifest, self.config.data.on_error, "evaluate")
        return manifest, table

    def _warn_untrained_gaps(self, manifest: Manifest, table: EncodedTable, *, scored: bool = False) -> None:
        """Warn when rows lack a modality that the model never trained without
        (:func:`untrained_absences`): their predictions come from a missing path no training row took
        (``scored``: an evaluation's, counted in its metrics)."""
        untrained = untrained_absences(self)
        if len(table.modalities) < 2 or not untrained:
            return
        lacking = [name for name in untrained if name in table.modalities and not table.modalities[name].present.all()]
        said = f"{manifest.name}: rows without {' or '.join(map(repr, lacking))}"
        if lacking and said not in self._gaps_said:  # once per manifest and modalities: a batch's chunks share it
            self._gaps_said.add(said)
            them = "it" if len(lacking) == 1 else "them"
            warn_user(f"{said} are predicted from the other modalities, and this model never trained without {them} "
                      f"(no modality dropout for {them}, no subset loss, every training row held {them}): their "
                      + ("predictions, counted in these metrics, " if scored else "predictions ")
                      + "may be far less accurate ('polymodal predict', predict_frame in Python, names them in its 'absent' "
                      "column; train with "
                      "train.modality_dropout to predict from a subset)")

    def read_grouped(self, data: DataSource, by: str, *, modalities: Iterable[str] | None = None,
                     require_target: bool = True) -> Manifest:
        """``data`` read and validated for evaluation, with ``by`` (the column its metrics are split
        by) checked to be one of its columns before any file is decoded (``require_target``
        False: the config's target columns need not be there, as when an anomaly detector is
        evaluated against another)."""
        manifest = self.read_data(data, require_target=require_target, modalities=modalities)
        manifest.require_column(by, "to split the metrics by")
        return manifest

    def category_normalization(self, column: str) -> str | None:
        """How the model keys ``column`` as a category: the ``normalize_categories`` of the
        tabular modality that reads it as one (the fitted preprocessor's; None: no modality reads
        it as a category, or two read it with different settings), for grouping rows by it as
        the model tells them apart (:meth:`~polymodal.data.manifest.Manifest.groups`)."""
        pipeline, _ = self.require_fitted()
        hows = {prep.cfg.normalize_categories for prep in pipeline.preprocessors.values()
                if prep.kind == "tabular" and column in prep.categorical}
        return hows.pop() if len(hows) == 1 else None

    def recorded_manifest(self, splits: Iterable[str] = MANIFEST_SPLITS) -> tuple[str, Path] | None:
        """The first of ``splits`` whose manifest the fit recorded and which still exists, as
        ``(split, path)``; None when there is none (manifests given as DataFrames, or moved).
        A file whose content changed since the fit is returned with a warning."""
        for split in splits:
            path = self.info.get(f"{split}_manifest")
            if path is not None and Path(path).is_file():
                key = self.info.get(f"{split}_manifest_key")
                if key is not None and content_key(path, file_based=True).hex() != key:
                    warn_user(f"the run's {split} manifest {path} changed since the fit (its content is not the "
                              "file the run was trained with); using it as it is now")
                return split, Path(path)
        return None

    @contextmanager
    def using_support(self, support: DataSource | None, modalities: Iterable[str] | None = None,
                      queries: DataSource | None = None) -> Iterator[None]:
        """Within the block, classify by the prototypes of ``support``'s classes (few-shot models,
        see :mod:`polymodal.fewshot`; ``modalities`` / ``queries``: what the prototypes are embedded
        with); ``None`` changes nothing.

        Raises:
            SchemaMismatchError: a support set for a model that takes none.
        """
        self._refuse_support(support)
        yield

    def _refuse_support(self, support: DataSource | None) -> None:
        """Raise when ``support`` is given to a model that takes none."""
        if support is not None:
            raise SchemaMismatchError(f"a support set needs a model trained with transfer: {{method: protonet}}; "
                                      f"this is a task '{self.config.task}' model")

    def infer(self, module: torch.nn.Module, table: EncodedTable, forward: Callable[[Batch], torch.Tensor],
               empty_shape: tuple[int, ...]) -> np.ndarray:
        """``forward(batch)`` over ``table`` in batches, with ``module`` in eval mode on
        :attr:`device`.

        Returns:
            The outputs (N, ...) as float32, of ``empty_shape`` when ``table`` has no rows.
        """
        loader = self._loader(table, None, train=False)
        loader.generator = unshared_generator()  # the caller's torch random stream left where it was
        outs = run_batches(module, loader, forward, self.device)
        return outs[0].numpy() if outs else np.zeros(empty_shape, np.float32)

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the run folder (see :mod:`polymodal.runfolder`), every file atomically: the
        copies of its pretrained encoders' files (:mod:`polymodal.assets`), config, preprocessing,
        the network's weights (after those: a save interrupted before them leaves no model in a
        new folder), ``diagnostics.json``, the report (:meth:`_write_report`), then ``history.csv`` / ``skipped.csv``
        and, last, ``metrics.json``: a folder whose ``metrics.json`` counts the epochs of its
        last checkpoint was saved whole (what ``--resume`` reads, :func:`polymodal.resume.results_written`).
        ``info`` records the polymodal version saving it (``polymodal_version``), which loading
        names when the config holds a key this version does not know.

        Raises:
            RunFolderError: ``path`` holds another run (not the one this model was trained into
                or loaded from) and ``overwrite`` is not set; with it, that run's files go first.
        """
        pipeline, model = self.require_fitted()
        run = self._claim_run_folder(check_folder_path(path, "the run folder"), overwrite)  # not a file, nor inside one
        self.info[runfolder.VERSION_KEY] = __version__  # what writes the run (config.yaml): the report, metrics.json
        save_assets(self.config, model.encoders, run)  # what pretrained encoders need besides their weights
        runfolder.write_model(run, self.config, model, pipeline, fingerprint=self.model_fingerprint())
        runfolder.write_diagnostics(run, self.diagnostics)
        runfolder.write_scores(run / SCORES_FILE, {"valid": self.valid_scores, "test": self.test_scores}, self.kept)
        self._write_report(run, model)
        runfolder.write_results(run, self.metrics, self.info, self.history, self.last_skipped)
        drop_replaced_run(run)  # saved whole: the run an --overwrite fit set aside goes
        return run

    def _write_report(self, run: Path, model: torch.nn.Module) -> None:
        """Write the subclass's ``report.html`` (and what it shows) into ``run``."""
        raise NotImplementedError

    @classmethod
    def _open_run(cls, path: str | os.PathLike, config: Config | None = None) -> tuple[Any, Path]:
        """A new estimator for the run folder ``path``: its config (``config`` when already read,
        pointed at the run's copies of the encoders' files), fitted pipeline and results; the
        subclass builds the network and loads the weights.

        Raises:
            RunNotFoundError: ``path`` is no run folder (see :func:`polymodal.runfolder.check_run`).
        """
        run = runfolder.check_run(path)
        estimator = cls(localize_assets(config if config is not None else runfolder.read_config(run), run))
        estimator._own(run)
        estimator.pipeline = runfolder.load_pipeline(run, estimator.config, cls._read_targets)
        estimator._mark_fitted()
        results = runfolder.read_results(run)
        estimator.metrics, estimator.info, estimator.history = results.metrics, results.info, results.history
        estimator.last_skipped = results.skipped
        estimator.diagnostics = runfolder.read_diagnostics(run)
        try:
            scores, kept = runfolder.read_scores(run), runfolder.read_kept_arrays(run)
        except RunFolderError as err:  # kept to choose a threshold again from: the model serves without them
            warn_user(f"{err}; the run loads without its kept scores (choosing a threshold again needs them)")
            scores, kept = {}, {}
        estimator.valid_scores, estimator.test_scores = scores.get("valid"), scores.get("test")
        estimator.kept = kept
        return estimator, run


def fitting(fit: F) -> F:
    """The guards every estimator's ``fit`` runs under, outermost first: a fit that raises leaves
    the estimator as it was, fitted or not (:func:`unchanged_on_failure`); no second fit writes into
    the same run folder meanwhile (:func:`~polymodal.resume.holding_the_run_folder`); the seeding and
    deterministic switches are the fit's own (:func:`~polymodal.training.process_state.kept_process_state`);
    the ranks of a distributed fit share what this process preprocessed and only rank 0 warns
    (:func:`~polymodal.training.devices.across_ranks`)."""
    return unchanged_on_failure(holding_the_run_folder(kept_process_state()(across_ranks(fit))))


def unchanged_on_failure(fit: F) -> F:
    """Decorate an estimator's ``fit`` so that a fit which raises (any exception, a
    ``KeyboardInterrupt`` too) leaves the estimator as it was before the call: a fitted one keeps its
    config, pipeline, network, results and run folder, and predicts as before (not the new
    preprocessing with the old network); an unfitted one stays unfitted. A fit builds new objects
    and sets them as it goes: every attribute is put back as the object it was, and the dicts, lists
    and sets among them get their contents back (a fit changes some in place: the run folders the
    model owns, the warnings given)."""

    @functools.wraps(fit)
    def guarded(self: Estimator, *args: Any, **kwargs: Any) -> Any:
        before = dict(vars(self))
        contents = {name: copy.copy(value) for name, value in before.items() if isinstance(value, dict | list | set)}
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            for name, value in contents.items():
                held = before[name]
                held.clear()
                if isinstance(held, list):
                    held.extend(value)
                else:
                    held.update(value)
            raise

    return guarded  # type: ignore[return-value]


def _skip_list(run: str | os.PathLike | None) -> str:
    """Where the files a fit skipped are listed: the run folder's ``skipped.csv`` (written with
    the run), else the estimator's ``last_skipped``."""
    return "the predictor's .last_skipped" if run is None else f"{Path(run) / SKIPPED_FILE}, written with the run"


def untrained_absences(predictor: Any) -> list[str] | None:
    """The modalities whose absence training never showed the model, as a missing cell or a
    coalition hides them: every modality but those with ``train.modality_dropout`` above 0 and
    those some training row lacked (``info["train_absent"]``); none with (a task model's; an
    anomaly detector has none) ``loss.subset_weight`` above 0, which trains each modality alone,
    a fusion with a head per modality (``late``), which scores a coalition with its present
    modalities' own heads, on inputs they trained on, or the ``consistency`` anomaly scorer, which
    compares the present modalities' pairs only (each modality's encoder reads it alone). None (not
    known): a run fitted before the training rows' gaps were recorded, where the settings leave
    some modality in question."""
    config = predictor.config
    if config.fusion.produces_outputs or (config.task != "anomaly" and config.loss.subset_weight > 0):
        return []
    if config.task == "anomaly" and config.anomaly is not None and config.anomaly.scorer == "consistency":
        return []
    dropout = config.train.modality_dropout
    rates = dropout if isinstance(dropout, dict) else dict.fromkeys(config.modalities, dropout)
    untrained = [name for name in config.modalities if rates.get(name, 0.0) <= 0]
    absent = (getattr(predictor, "info", None) or {}).get("train_absent")
    if absent is None:
        return None if untrained else []
    return [name for name in untrained if not absent.get(name, 0)]
