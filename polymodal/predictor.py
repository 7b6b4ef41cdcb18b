"""``MultimodalPredictor``: the user-facing object that fits, evaluates, predicts, saves and loads.

    pred = MultimodalPredictor.from_config("config.yaml").fit("train.csv", "valid.csv", out="runs/x")
    pred.evaluate("test.csv")            # -> dict of metrics
    pred.predict(df); pred.predict_proba(df)
    MultimodalPredictor.load("runs/x")

Run folder: ``config.yaml`` (resolved), ``model.safetensors``, ``preprocessors/`` (JSON and
safetensors; nothing is pickled), ``metrics.json``, ``history.csv``, ``report.html``,
``plots/``, ``checkpoints/``, ``logs/`` and ``skipped.csv`` when files were skipped
(see :mod:`polymodal.runfolder`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from polymodal import runfolder
from polymodal.assets import restore_contexts
from polymodal.config import Config, load_config
from polymodal.config.align import aligned_modalities, modality_pairs
from polymodal.config.decision import DECIDED_TASKS
from polymodal.data.embeddings import attach_cached_features
from polymodal.data.encode import EncodedTable
from polymodal.data.manifest import Manifest
from polymodal.data.pipeline import DataPipeline, DataSource
from polymodal.data.split import group_holdout, stratified_holdout
from polymodal.decision import binary_scores, check_decision_data, note_in_sample, settle_threshold, warn_if_edited
from polymodal.errors import ConfigError, NotFittedError, SchemaMismatchError
from polymodal.estimator import EXPLAIN, EXPORT, PREDICT, ROBUSTNESS, SUBSETS, Estimator, fitting
from polymodal.fewshot import use_support
from polymodal.metrics.retrieval import stacked_validation_metrics, warn_if_collapsed
from polymodal.metrics.tasks import flat_metrics, metric_value, monitored, task_metrics
from polymodal.models import MultimodalNet, build_model
from polymodal.models.objectives import TaskLoss
from polymodal.multitask import (
    further_task_frame,
    further_task_rows,
    main_outputs,
    multitask_metrics,
    task_frame,
    with_further_tasks,
)
from polymodal.resume import manifest_paths, start_run
from polymodal.training.terms import SubsetTerm, TaskTerm, Term, UnimodalTerm
from polymodal.utils.scores import decisions, probabilities
from polymodal.utils.shapley import PERMUTATIONS, SEED

if TYPE_CHECKING:
    from polymodal.evaluation.attribution import Explanation

_EMBEDS_ONLY = ("a task 'retrieval' model maps rows into a shared space and makes no predictions; embed rows "
                "('polymodal embed', pred.embed), search them ('polymodal index build', 'polymodal retrieve') or "
                "score the search ('polymodal evaluate --retrieval')")


class MultimodalPredictor(Estimator):
    """Fits and applies a multimodal model described by a :class:`~polymodal.config.Config`.

    Attributes:
        config: the validated config.
        pipeline: fitted preprocessors and target encoder (after ``fit``/``load``).
        net: the network (after ``fit``/``load``).
        info: facts about the fit (seconds, parameters, best epoch, skipped files...).
        metrics / history / last_skipped: see :class:`~polymodal.estimator.Estimator`.
    """

    # a predicted row that data.on_error: missing left with no modality keeps its place (predict_frame)
    emptied_rows_predicted = "kept, with NaN predictions"

    def __init__(self, config: Config | dict[str, Any] | str | os.PathLike):
        """``config``: a :class:`~polymodal.config.Config`, a dict or a YAML/JSON file's path.

        Raises:
            ConfigError: the config is not valid.
            SchemaMismatchError: a ``task: anomaly`` config (:meth:`from_config` gives it an
                :class:`~polymodal.anomaly.detector.AnomalyDetector`).
        """
        super().__init__(config)
        if self.config.task == "anomaly":
            raise SchemaMismatchError("a task 'anomaly' config is fitted by an AnomalyDetector: "
                                      "MultimodalPredictor.from_config(config) returns one")
        self._given_config = self.config  # what each fit starts from (a fit records the data it used in self.config)
        self.net: MultimodalNet | None = None

    @property
    def unsupported(self) -> dict[str, str]:
        """A ``task: retrieval`` model has embeddings, not predictions: it neither predicts nor
        explains, sweeps or exports."""
        if self.config.task != "retrieval":
            return {}
        return dict.fromkeys((PREDICT, SUBSETS, ROBUSTNESS, EXPLAIN, EXPORT), _EMBEDS_ONLY)

    @property
    def unlabelled_advice(self) -> str:
        """A ``task: retrieval`` model predicts nothing: unlabelled rows are scored as pairs, each
        query's own row the one hit (see :meth:`Estimator.unlabelled_advice`)."""
        if PREDICT not in self.unsupported:
            return super().unlabelled_advice
        return ("to score retrieval without labels (a hit is the query's own row) use 'polymodal evaluate RUN --data "
                "FILE --retrieval --hits pair' (evaluate_retrieval(data, hits='pair') in Python)")

    @classmethod
    def from_config(cls, source: str | os.PathLike | dict[str, Any] | Config) -> MultimodalPredictor:
        """From a YAML/JSON file, a dict or a Config (validated; see ``polymodal config check``).
        A ``task: anomaly`` config gets an :class:`~polymodal.anomaly.detector.AnomalyDetector`
        (same fit / evaluate / predict_frame / save face)."""
        config = load_config(source)
        if config.task == "anomaly":
            from polymodal.anomaly.detector import AnomalyDetector

            return AnomalyDetector(config)  # type: ignore[return-value]
        return cls(config)

    # -- fitting ------------------------------------------------------------------------------
    @fitting  # unchanged if it raises, one fit per run folder, its own seeding, ranks share the preprocessing
    def fit(self, train: DataSource, valid: DataSource | None = None, *, test: DataSource | None = None,
            out: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
            unlabeled: DataSource | None = None, callbacks: list[Any] | None = None) -> MultimodalPredictor:
        """Fit preprocessing on ``train``, then train the network.

        Args:
            train: training manifest (path or DataFrame).
            valid: validation manifest for early stopping and model selection; when None,
                ``train.val_fraction`` of ``train`` is held out (stratified for classification).
            test: optional manifest evaluated after training (metrics in ``metrics.json``); read and
                checked with the others before training starts.
            out: run folder; checkpoints, logs and the final model are written there. A folder
                that already holds a run is refused unless ``resume`` or ``overwrite``.
            resume: continue an interrupted run in ``out`` from its last checkpoint (same config,
                except how long and where it trains: ``resume.RESUMABLE_KEYS``).
            overwrite: replace the run already in ``out``.
            unlabeled: an unlabelled manifest for the ``transfer`` method (domain adaptation:
                the target domain; semi-supervised: more rows of the same domain; distillation:
                pairs the teacher labels); default ``transfer.unlabeled``.
            callbacks: extra Lightning callbacks for the training run (e.g. a tuner's pruning).

        Raises:
            ManifestError / ConfigError / DecodeError: bad input, with every problem named.
            RunFolderError: ``out`` holds a run (see ``out``), or the run to resume is another config's.
        """
        from polymodal.training.finetune import finetune_callbacks  # Lightning: imported for training only
        from polymodal.training.module import OptimSettings, PolymodalModule
        from polymodal.training.trainer import fit_module
        from polymodal.training.transfer import (
            TransferPlan,
            recorded_config,
            unlabeled_source,
            unrecorded_config,
            warn_if_evaluated,
        )

        if self.config is not self._given_config:  # the last fit's record of its unlabelled file, perhaps edited since
            self._given_config = unrecorded_config(self.config, self._given_config)
        cfg = self.config = self._given_config
        self._begin_fit(out, resume=resume, overwrite=overwrite,
                        data={"train": train, "valid": valid, "unlabeled": unlabeled_source(cfg, unlabeled)},
                        from_config={"unlabeled": unlabeled is None})
        pipeline = DataPipeline(cfg)
        train_m, valid_m, test_m = self._read_fit_data(pipeline, train, valid, test, require_target=True)
        started = time.perf_counter()
        train_table, train_y, valid_table, valid_y = self._fit_pipeline(pipeline, train_m, valid_m, test_m, out)
        prep_seconds = time.perf_counter() - started
        transfer = TransferPlan.prepare(cfg, pipeline, train_m, train_table, train_y, unlabeled, load_run=type(self).load)
        warn_if_evaluated(unlabeled_source(cfg, unlabeled), {"validation": valid, "test": test})
        self.config = cfg = recorded_config(cfg, unlabeled_source(cfg, unlabeled))  # the run records the rows it used

        self._seed()
        net = build_model(cfg, pipeline.contexts(), pipeline.targets.n_outputs, pipeline.targets.task_outputs)
        loss = self._loss(train_y)
        # frozen encoders with cache: true run once per input here, never in the training steps
        train_table = attach_cached_features(cfg, net, pipeline, train_m, train_table, cfg.train.progress)
        valid_table = attach_cached_features(cfg, net, pipeline, valid_m, valid_table, cfg.train.progress)
        transfer.attach_cached_features(net)  # and the unlabelled rows
        monitor, mode = monitored(cfg.task, cfg.train.early_stopping)
        self._check_monitor(monitor, valid_y)
        module = PolymodalModule(
            net, loss,
            OptimSettings.from_config(cfg.train),
            metrics=self._validation_metrics,
            modality_dropout=self._dropout_rates(),
            callbacks=finetune_callbacks(cfg, net) + list(callbacks or []),
            terms=transfer.terms(net, self._terms(net, loss)),
        )
        if cfg.task in DECIDED_TASKS:
            check_decision_data(cfg, self.pipeline.targets, valid_y)  # decision.threshold: before the epochs
        run_dir = self._own(start_run(out, cfg, resume=resume, overwrite=overwrite,
                                      data=manifest_paths(train=train, valid=valid)), fresh=True)  # the first write
        result = fit_module(
            module,
            transfer.train_loader(self._loader(train_table, train_y, train=True)),
            self._loader(valid_table, valid_y, train=False),
            cfg.train, run_dir=run_dir, monitor=monitor, mode=mode, resume=resume,
        )
        transfer.finish(net)
        self.net = net.eval()
        self._mark_fitted()
        if result.rank != 0:  # other DDP ranks: rank 0 evaluates and writes the run
            self.info = {"rank": result.rank}
            return self
        self.history = result.history
        valid_outputs = self.raw_outputs(valid_table)
        self.valid_scores = self.test_scores = self.eval_scores = None
        if cfg.task in DECIDED_TASKS and cfg.protonet is None:  # a two-class or multilabel model: chosen from, now or later
            self.valid_scores = binary_scores(self.pipeline.targets, valid_outputs, valid_y)
        decided = settle_threshold(self, self.valid_scores) if cfg.task in DECIDED_TASKS else {}
        self.info = self._fit_info(train_table, valid_table, net, {"train": train, "valid": valid, "test": test},
                                   train_seconds=result.total_seconds, preprocess_seconds=prep_seconds,
                                   best_epoch=result.best_epoch, **{f"best_val_{monitor}": result.best_score},
                                   epochs_run=len(result.history), **transfer.info, **decided)
        self.metrics = {"valid": self._metrics_of(valid_outputs, valid_y)}
        note_in_sample(self)  # an auto threshold's validation figures are its own rows'
        if cfg.task == "retrieval":
            warn_if_collapsed(self.metrics["valid"], cfg.align, epochs=len(result.history))
        self._finish_fit(test_m, run_dir)
        if test_m is not None:
            self.test_scores = self.eval_scores
        from polymodal.evaluation.diagnostics import diagnose_after_fit  # the evaluation layer sits above

        self.diagnostics = diagnose_after_fit(self, test_m if test_m is not None else valid_m,
                                              "valid" if test is None else "test", cfg.report, train=train_m)
        if run_dir is not None:
            self.save(run_dir)
        return self

    def _split(self, manifest: Manifest) -> tuple[Manifest, Manifest]:
        train = self.config.train
        if train.val_group is not None:
            return group_holdout(manifest, train.val_fraction, train.seed, train.val_group)
        label = self.config.targets[0] if self.config.task == "classification" else None
        return stratified_holdout(manifest, train.val_fraction, train.seed, label)

    def _loss(self, train_y: np.ndarray) -> TaskLoss:
        cfg = self.config
        if cfg.task == "retrieval":  # no task: the validation loss scores the embeddings
            from polymodal.training.alignment import retrieval_validation_loss

            return retrieval_validation_loss(cfg)
        train_y = self.pipeline.targets.main_targets(train_y) if cfg.tasks else train_y  # multi-task: the main task
        weights = None if cfg.loss.class_weights is None else torch.tensor(self._class_weights(train_y),
                                                                           dtype=torch.float32)
        main = TaskLoss(cfg.task, weights, cfg.loss.label_smoothing, cfg.loss.regression, cfg.loss.huber_delta)
        return with_further_tasks(cfg, self.pipeline.targets, main)  # one loss per task with `tasks`

    def _class_weights(self, train_y: np.ndarray) -> np.ndarray:
        """``loss.class_weights`` as numbers: a classifier's weight per class (``balanced``: rows /
        (classes * the class's rows)); a multilabel model's positive weight per label
        (``balanced``: the label's training negatives / positives, 1 for a label constant in
        training, which has no other kind of row to weigh against)."""
        setting, targets = self.config.loss.class_weights, self.pipeline.targets
        if self.config.task == "multilabel":
            if setting != "balanced":
                return np.asarray(setting, np.float64)  # one per label: checked with the config
            positives = train_y.sum(axis=0, dtype=np.float64)
            negatives = len(train_y) - positives
            both = (positives > 0) & (negatives > 0)
            return np.where(both, negatives / np.maximum(positives, 1.0), 1.0)
        if setting == "balanced":
            counts = np.bincount(train_y, minlength=targets.n_outputs).astype(np.float64)
            return len(train_y) / (len(counts) * np.maximum(counts, 1))
        if len(setting) != targets.n_outputs:
            raise SchemaMismatchError(f"loss.class_weights has {len(setting)} values but the training data has "
                                      f"{targets.n_outputs} classes {targets.classes}")
        return np.asarray(setting, np.float64)

    def _terms(self, net: MultimodalNet, loss: TaskLoss) -> list[Term]:
        """The loss terms of this config's training step."""
        from polymodal.training.alignment import build_align_term

        if self.config.task == "retrieval":  # the alignment objective alone
            return [build_align_term(self.config, net)]
        terms: list[Term] = [TaskTerm(loss)]
        if net.has_unimodal:
            terms.append(UnimodalTerm(loss, self.config.loss.unimodal_weight))
        if self.config.loss.subset_weight > 0 and len(net.names) > 1:
            terms.append(SubsetTerm(loss, self.config.loss.subset_weight))
        if self.config.align is not None:
            terms.append(build_align_term(self.config, net))
        return terms

    def score_outputs(self, outputs: np.ndarray, target: np.ndarray, held: np.ndarray | None = None
                      ) -> dict[str, Any]:
        """Task metrics on raw outputs; regression values are put back on the target's scale.
        ``held`` (each row's modalities as a bit mask, what an anomaly detector flags by) changes
        nothing here: a predictor decides alike whatever modalities a row holds."""
        targets = self.pipeline.targets
        if self.config.task == "retrieval":  # outputs are the aligned modalities' embeddings side by side
            return stacked_validation_metrics(outputs, target, aligned_modalities(self.config),
                                              modality_pairs(self.config))
        if self.config.tasks:  # the main task's metrics, then `<task>/<metric>` for the others
            return multitask_metrics(targets, outputs, target)
        if self.config.task == "regression":
            return task_metrics("regression", targets.decode_values(outputs), targets.decode_values(target),
                                names=self.config.targets)
        if self.config.task == "classification":
            return task_metrics("classification", outputs, target, targets.n_outputs, classes=targets.classes,
                                threshold=targets.threshold)
        return task_metrics(self.config.task, outputs, target, names=self.config.targets, threshold=targets.threshold)

    def _validation_metrics(self, outputs: np.ndarray, target: np.ndarray) -> dict[str, Any]:
        """What training logs each epoch (as ``val_<name>``): the numbers of :meth:`score_outputs`,
        each target's own among them (``rmse_per_target.rpm``), which early stopping and ``tune``
        may watch."""
        return flat_metrics(self.score_outputs(outputs, target))

    def _check_monitor(self, monitor: str, valid_y: np.ndarray) -> None:
        """Refuse, before training, a monitored metric the validation rows leave undefined (AUROC
        without every class, R2 of one row or of a target constant on them): early stopping would
        have nothing to compare."""
        if monitor == "loss" or self.config.task == "retrieval":
            return
        width = self.pipeline.targets.n_outputs
        value = metric_value(self.score_outputs(np.zeros((len(valid_y), width), np.float32), valid_y), monitor)
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError([f"train.early_stopping.monitor: '{monitor}' is undefined on the {len(valid_y)} "
                               "validation rows (AUROC needs every class among them, R2 at least two rows and a "
                               "target that varies among them); "
                               "monitor another metric, or give validation rows that define it"])

    # -- inference ----------------------------------------------------------------------------
    @property
    def _network(self) -> MultimodalNet | None:
        return self.net

    def require_fitted(self) -> tuple[DataPipeline, MultimodalNet]:
        if not self._fitted:
            raise NotFittedError("this predictor is not fitted; call fit() or MultimodalPredictor.load()")
        self._check_config_unchanged()
        return self.pipeline, self.net

    def output_network(self) -> MultimodalNet:
        return self.require_fitted()[1]

    @property
    def n_outputs(self) -> int:
        return self.require_fitted()[0].targets.n_outputs

    def _metrics_of(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
        scores = self.score_outputs(outputs, targets)
        scores["rows"] = int(len(targets))
        scores.update(further_task_rows(self.pipeline.targets, targets))  # each further task's rows with its label
        return scores

    def evaluate(self, data: DataSource, modalities: Iterable[str] | None = None, *,
                 support: DataSource | None = None, by: str | None = None) -> dict[str, Any]:
        """Metrics on a labelled manifest: accuracy, macro-F1, AUROC, ECE, confusion matrix
        (classification); micro/macro-F1, AUROC (multilabel); MAE, RMSE, R2 (regression).

        Args:
            modalities: evaluate with only these modalities present (the rest treated as missing).
            support: few-shot models (``transfer: protonet``): labelled rows whose classes'
                prototypes classify ``data`` (see :mod:`polymodal.fewshot`).
            by: a column of ``data`` (a site, a machine, a motor load): the metrics of each of its
                values' rows as well, under ``by`` -> column -> value (see
                :meth:`~polymodal.data.manifest.Manifest.groups`); a column the model reads as a
                category is grouped by the category as the model keys it (``normalize_categories:
                strip_lower``: ``'F '`` and ``'f'`` are the one value ``f``).
        """
        with self.using_support(support, modalities, data):
            if by is not None:
                data = self.read_grouped(data, by, modalities=modalities)
            manifest, table = self.encode_data(data, require_target=True, modalities=modalities)
            targets = self.pipeline.encode_targets(manifest, table, scorable=True)
            outputs = self.raw_outputs(self.network_table(manifest, table))
            scores = self._metrics_of(outputs, targets)  # inside: a support set's classes score the outputs
            if support is None and modalities is None and self.config.task in DECIDED_TASKS:
                self.eval_scores = binary_scores(self.pipeline.targets, outputs, targets)
            if by is not None:  # a category of the model's grouped as it keys them ('F ' and 'f' as one)
                groups = manifest.groups(by, table.rows, self.category_normalization(by))
                scores["by"] = {by: {value: self._metrics_of(outputs[rows], targets[rows]) for value, rows in groups.items()}}
            return scores

    def predict_proba(self, data: DataSource, modalities: Iterable[str] | None = None, *,
                      support: DataSource | None = None) -> pd.DataFrame:
        """Class probabilities (classification: softmax; multilabel: per-label sigmoid), one column
        per class, indexed by manifest row (a DataFrame's own index, when it has one); a row left
        without a prediction (see :meth:`predict_frame`) is NaN. ``support``: see :meth:`evaluate`."""
        return self._every_row(*self._probabilities(data, modalities, support, "predict_proba"))

    def _probabilities(self, data: DataSource, modalities: Iterable[str] | None, support: DataSource | None,
                       method: str) -> tuple[pd.DataFrame, Manifest, EncodedTable]:
        """The main task's probabilities of the rows encoding kept (indexed as :meth:`predict_proba`),
        the manifest read and its encoded table. ``method``: what a regression model refuses."""
        self.require(PREDICT, method)
        if self.config.task == "regression":
            raise SchemaMismatchError("predict_proba needs a classification or multilabel model; this one does "
                                      "regression (use predict)")
        with self.using_support(support, modalities, data):
            manifest, table = self.encode_data(data, require_target=False, modalities=modalities, predicting=True)
            outputs = main_outputs(self.pipeline.targets, self.raw_outputs(self.network_table(manifest, table)))
            columns = self.pipeline.targets.classes if self.config.task == "classification" else self.config.targets
        proba = probabilities(self.config.task, outputs)
        return pd.DataFrame(proba, columns=columns, index=manifest.row_index(table.rows)), manifest, table

    def predict(self, data: DataSource, modalities: Iterable[str] | None = None, *,
                support: DataSource | None = None) -> np.ndarray:
        """Predicted labels (classification), 0/1 matrix (multilabel) or values (regression) of
        the main task: regression gives an (N,) array for ``target: COLUMN`` and (N, targets) for
        ``target: [COLUMNS]``, as scikit-learn follows ``y``'s shape. A row left without a
        prediction (see :meth:`predict_frame`) holds NaN: the labels are then an object array, a
        multilabel matrix floats. ``support``: see :meth:`evaluate`."""
        self.require(PREDICT, "predict")
        if self.config.task == "regression":
            with self.using_support(support, modalities, data):  # a support set: refused, as predict_frame and evaluate refuse it
                manifest, table = self.encode_data(data, require_target=False, modalities=modalities, predicting=True)
                outputs = self.raw_outputs(self.network_table(manifest, table))
                values = self.pipeline.targets.decode_values(main_outputs(self.pipeline.targets, outputs))
            floats = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64  # float32 stays float32
            values = self._every_value(values, manifest, table, floats)
            return values[:, 0] if isinstance(self.config.target, str) else values
        proba, manifest, table = self._probabilities(data, modalities, support, "predict")
        chosen = decisions(self.config.task, proba.to_numpy(), self.pipeline.targets.threshold)
        if self.config.task == "multilabel":
            return self._every_value(chosen, manifest, table, np.float64)
        return self._every_value(np.asarray(proba.columns)[chosen], manifest, table, object)

    def predict_frame(self, data: DataSource, modalities: Iterable[str] | None = None, *,
                      support: DataSource | None = None) -> pd.DataFrame:
        """Predictions as a table indexed by manifest row (a DataFrame's own index, when it has
        one): ``prediction`` and ``proba_<class>``
        (classification), ``pred_<label>`` and ``proba_<label>`` (multilabel), ``pred_<target>``
        (regression); further ``tasks`` add their columns prefixed by the task's name; last,
        ``absent``: the modalities the row lacked, comma-separated (empty when none), what its
        prediction was made without.

        Under ``data.on_error: missing`` every row keeps its place: one left with no modality
        present (every cell empty, every file unreadable) has NaN predictions and every modality
        ``absent``, and the warning on the files skipped names it (``eval_skipped`` lists it).
        Under ``skip`` a row with an unreadable file is left out, as the warning says.
        ``support``: see :meth:`evaluate`."""
        self.require(PREDICT, "predict")
        with self.using_support(support, modalities, data):
            manifest, table = self.encode_data(data, require_target=False, modalities=modalities, predicting=True)
            outputs = self.raw_outputs(self.network_table(manifest, table))
            index = manifest.row_index(table.rows)
            frame = task_frame(self.pipeline.targets, main_outputs(self.pipeline.targets, outputs), index)
            frame = frame.join(further_task_frame(self.pipeline.targets, outputs, index)).assign(absent=table.absent())
            return self._every_row(frame, manifest, table, absent=", ".join(table.modalities))

    def _every_row(self, frame: pd.DataFrame, manifest: Manifest, table: EncodedTable,
                   absent: str | None = None) -> pd.DataFrame:
        """``frame`` (one row per row of ``table``) with, under ``data.on_error: missing``, the
        rows of ``manifest`` that encoding left out for want of any modality put back in manifest
        order, NaN (``absent``: their ``absent`` cell), so that a prediction lines up with its input
        (``df["pred"] = pred.predict(df)``) as the file ``polymodal predict`` writes does; under
        ``skip`` such rows are left out, as the user asked."""
        if self.config.data.on_error != "missing" or len(table.rows) == len(manifest):
            return frame
        labels = {c: object for c in frame.columns if str(c).endswith("prediction") and frame[c].dtype.kind in "iub"}
        # class labels stay as written beside NaN (2, not 2.0), as predict's object array keeps them
        every = frame.astype(labels).set_axis(pd.Index(table.rows)).reindex(pd.RangeIndex(len(manifest)))
        if absent is not None:  # an object array, as EncodedTable.absent gives: the chunks of a batch agree on its type
            cells = np.full(len(manifest), absent, object)
            cells[table.rows] = frame["absent"].to_numpy(object)
            every = every.assign(absent=cells)
        return every.set_axis(manifest.row_index(np.arange(len(manifest))))

    def _every_value(self, values: np.ndarray, manifest: Manifest, table: EncodedTable, dtype: Any) -> np.ndarray:
        """``values`` (one per row of ``table``) as :meth:`_every_row` puts a frame's back: under
        ``data.on_error: missing``, in a ``dtype`` array with NaN at the rows encoding left out."""
        if self.config.data.on_error != "missing" or len(table.rows) == len(manifest):
            return values
        every = np.full((len(manifest), *values.shape[1:]), np.nan, dtype)
        every[table.rows] = values
        return every

    @contextmanager
    def using_support(self, support: DataSource | None, modalities: Iterable[str] | None = None,
                      queries: DataSource | None = None) -> Iterator[None]:
        """Within the block, classify by the prototypes of ``support``'s classes, embedded with the
        modalities the queries have: ``modalities``, else those whose columns ``queries`` holds
        (see :func:`polymodal.fewshot.use_support`); ``None`` changes nothing."""
        if support is None:
            yield
            return
        if modalities is None and queries is not None:
            pipeline, _ = self.require_fitted()
            modalities = pipeline.check_modalities(None, pipeline.read_raw(queries))
        with use_support(self, support, modalities):
            yield

    def explain(self, data: DataSource, *, max_rows: int | None = None, seed: int = SEED, samples: int = 4,
                permutations: int = PERMUTATIONS, steps: int = 32, output: Any | None = None,
                support: DataSource | None = None) -> Explanation:
        """What each modality contributed to each prediction: per-row Shapley values over
        modalities, global importance and Integrated-Gradients maps inside each modality; an
        :class:`~polymodal.evaluation.attribution.Explanation` (``.values``, indexed like
        :meth:`predict_proba`; ``.importance``; ``.to_html(folder)``). The options are those of
        :func:`polymodal.evaluation.attribution.explain`; ``support``: see :meth:`evaluate` (the
        outputs are then the support set's classes)."""
        from polymodal.evaluation.attribution import explain  # the evaluation layer sits above

        with self.using_support(support, queries=data):
            return explain(self, data, max_rows=max_rows, seed=seed, samples=samples, permutations=permutations,
                           steps=steps, output=output)

    # -- shared embedding space (``align``) -----------------------------------------------------
    def embed(self, data: DataSource, modality: str) -> pd.DataFrame:
        """L2-normalised shared-space embeddings of one modality: (N, dim) indexed by manifest row
        (a DataFrame's own index, when it has one), columns ``e0 ..``; rows without the modality
        are left out. See :mod:`polymodal.retrieval`."""
        from polymodal.retrieval.embed import embed_rows

        return embed_rows(self, data, modality, labelled=True)

    def evaluate_retrieval(self, data: DataSource, query: str | None = None, gallery: str | None = None, *,
                           hits: str = "auto", labels: str | None = None) -> dict[str, dict[str, Any]]:
        """Recall@1/5/10, mAP and median rank of ``data``'s rows retrieved across modalities, per
        direction ``query->gallery`` (default: every ordered pair of aligned modalities). A hit is
        the query's own row (``hits='pair'``) or a row with the same label (``hits='label'``;
        ``labels`` names its column, default the target); ``auto``, the default, uses labels when
        ``data`` has that column (``polymodal evaluate --retrieval --hits``)."""
        from polymodal.retrieval.search import evaluate_retrieval

        return evaluate_retrieval(self, data, query, gallery, hits=hits, labels=labels)

    def zero_shot(self, data: DataSource, modality: str, classes: Any, *, text_modality: str | None = None,
                  template: str = "{}") -> pd.DataFrame:
        """Classify ``modality`` rows by the nearest class-name embedding of the aligned text side:
        ``prediction`` and ``score_<class>`` per manifest row (see :mod:`polymodal.retrieval.zero_shot`)."""
        from polymodal.retrieval.zero_shot import zero_shot

        return zero_shot(self, data, modality, classes, text_modality, template)

    def set_threshold(self, threshold: float | list[float] | str | None, *, metric: str | None = None,
                      min_sensitivity: float | None = None, min_specificity: float | None = None) -> dict[str, Any]:
        """Set the decision threshold of a two-class classifier, or of each label of a multilabel
        model, without retraining, as ``decision.threshold`` does at fit time (see
        :mod:`polymodal.config.decision`). The config's ``decision`` records it, the validation
        and test metrics follow it; ``save`` writes it (an export made before keeps the old one
        until it is made again).

        Args:
            threshold: a probability in (0, 1): a two-class classifier calls its positive (second)
                class from it, a multilabel model every label; a multilabel model's list of one
                per label, in ``target`` order; ``"auto"``: chosen on the last fit's validation
                rows (by ``metric``, or keeping ``min_sensitivity`` / ``min_specificity``), per
                label for a multilabel model (a label those rows hold with one value only keeps
                0.5, with a warning); None: the more probable class (multilabel: 0.5 for each
                label).
            metric, min_sensitivity, min_specificity: what ``"auto"`` chooses by (as
                ``decision.metric`` / ``decision.min_sensitivity`` / ``decision.min_specificity``).

        Returns:
            ``old`` and ``new`` threshold (a number, a list per label, or None: the default call),
            the ``criterion`` it was chosen by (None when given), and the ``valid`` sensitivity,
            specificity and accuracy at the new one (None when the run kept no validation metrics,
            and for a multilabel model).

        Raises:
            SchemaMismatchError: the model is neither a two-class classifier nor a multilabel model.
            ConfigError: a threshold outside (0, 1), a list for a classifier or of another length
                than the labels, an unknown metric, both ``min_`` rates, or one without ``"auto"``.
            RunFolderError: ``"auto"`` for a run saved before its validation probabilities were kept.
        """
        from polymodal.decision import set_threshold

        return set_threshold(self, threshold, metric=metric, min_sensitivity=min_sensitivity,
                             min_specificity=min_specificity)

    # -- persistence --------------------------------------------------------------------------
    def _write_report(self, run: Path, model: torch.nn.Module) -> None:
        """``report.html`` with its plots."""
        from polymodal.evaluation.report import write_report  # the report sits a layer above

        write_report(self, run, model)

    @classmethod
    def load(cls, path: str | os.PathLike) -> MultimodalPredictor:
        """Load a run folder written by :meth:`save` (no pickle is ever read)."""
        config = runfolder.read_config(runfolder.check_run(path))
        if config.task == "anomaly":  # an anomaly detector's run
            from polymodal.anomaly.detector import AnomalyDetector

            return AnomalyDetector.load(path, config=config)  # type: ignore[return-value]
        predictor, run = cls._open_run(path, config)
        with torch.random.fork_rng(devices=[]):  # initial weights, replaced by the saved ones: the caller's stream kept
            net = build_model(predictor.config, restore_contexts(predictor.pipeline.contexts()),
                              predictor.pipeline.targets.n_outputs, predictor.pipeline.targets.task_outputs)
        runfolder.load_weights(net, run)
        predictor.net = net.eval()
        warn_if_edited(predictor, run)
        return predictor
