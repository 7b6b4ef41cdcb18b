"""``AnomalyDetector``: fit on normal data, score, flag, evaluate, save and load (``task: anomaly``).

    det = AnomalyDetector.from_config("anomaly.yaml").fit("normal_train.csv", "valid.csv", out="runs/a")
    det.predict_frame("new.csv")         # score and flag per row
    det.evaluate("test.csv")             # auroc, auprc, fpr@95tpr, flag rates, per-label AUROC
    AnomalyDetector.load("runs/a")

``MultimodalPredictor.from_config`` / ``load`` hand ``task: anomaly`` configs and runs to this
class, so ``polymodal train / evaluate / predict`` work unchanged. Run folder: ``config.yaml``,
``model.safetensors`` (network + the scorer's statistics and threshold), ``preprocessors/``,
``assets/`` (pretrained encoders' files), ``metrics.json``, ``history.csv``, ``scores.npz`` (the
validation and test rows' scores and labels, the modalities each row held and the validation normal
rows' scores per subset of modalities: ``set_threshold`` chooses from them again without
retraining), ``report.html`` with ``plots/`` (see :mod:`polymodal.run_files`).

A row is flagged above the threshold of the subset of modalities it holds: the full set's at
``anomaly.target_fpr`` on the validation normal rows, each other subset's at the validation
false-positive rate the full set's gives, chosen on those rows scored with that subset alone (a row
scored through the missing path has a score of another scale).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import torch

from polymodal import runfolder
from polymodal.anomaly.cached import with_reconstruction_targets
from polymodal.anomaly.evaluation import evaluate_detector, labelled_metrics
from polymodal.anomaly.model import AnomalyModel, ScoreNetwork, build_anomaly_net
from polymodal.anomaly.scorers import OPTIONAL_STATE, REFERENCE_MAX_MODALITIES, build_scorer
from polymodal.anomaly.targets import AnomalyTargets, training_rows
from polymodal.anomaly.threshold import (
    fit_coalitions,
    rethreshold,
    subset_threshold_table,
    threshold_rows,
    warn_coarse_rate,
)
from polymodal.anomaly.training import phase_epochs, train_phases
from polymodal.assets import restore_contexts
from polymodal.config import Config, load_config
from polymodal.config.anomaly import AnomalyConfig, anomaly_settings
from polymodal.data.embeddings import attach_cached_features
from polymodal.data.encode import EncodedTable
from polymodal.data.manifest import Manifest
from polymodal.data.pipeline import DataPipeline, DataSource
from polymodal.data.split import group_holdout, random_holdout
from polymodal.data.targets import no_normal_row, normal_value_problems
from polymodal.errors import (
    ConfigError,
    ManifestError,
    NotFittedError,
    SchemaMismatchError,
    option,
)
from polymodal.estimator import EMBEDDINGS, PROBABILITIES, ROBUSTNESS, Estimator, fitting
from polymodal.metrics.anomaly import (
    anomaly_metrics,
    flags,
    one_threshold_note,
    row_thresholds,
    threshold_at_fpr,
)
from polymodal.resume import manifest_paths, start_run
from polymodal.run_files import PLOTS_DIR
from polymodal.utils.coalitions import held_masks
from polymodal.utils.shapley import PERMUTATIONS, SEED
from polymodal.utils.warn import warn_user

EMPTIED_NOTE = "not scored: no modality could be read"  # predict_frame's note on a row on_error: missing emptied

_UNSUPPORTED = {  # capability -> why an anomaly detector has none
    ROBUSTNESS: "a corrupted input is what an anomaly detector should flag, so its AUROC under corruption measures "
                "no robustness; score corrupted copies of your files through predict to see which are flagged",
    PROBABILITIES: "an anomaly detector gives each row a score and a flag, not class probabilities; use "
                   "predict_frame (score, flag, absent per row) or predict (the flags)",
    EMBEDDINGS: "an anomaly detector scores rows against normal data and learns no space its modalities share "
                "(task 'anomaly' does not combine with align); use predict_frame (score, flag per row), or "
                "explain for what each modality contributed",
}


def _refused(capability: str, name: str, why: str) -> Callable[..., NoReturn]:
    """A method a detector offers only to say what to use instead (``predict_frame``)."""
    def method(self: AnomalyDetector, *_: Any, **__: Any) -> NoReturn:
        self.refuse(capability, name)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = (f"Not available: {why} (use :meth:`predict_frame`: score, flag per row).\n\n"
                      "Raises:\n    SchemaMismatchError: always, saying to use ``predict_frame``.")
    return method


class AnomalyDetector(Estimator):
    """Fits and applies an anomaly detector described by a ``task: anomaly`` config.

    Attributes:
        config: the validated config.
        settings: its ``anomaly`` section (defaults when absent).
        pipeline: fitted preprocessors (after ``fit``/``load``).
        model: network + scorer (after ``fit``/``load``).
        metrics / info: validation (and test) metrics; facts about the fit.
        history / last_skipped: see :class:`~polymodal.estimator.Estimator`.
        valid_scores: (scores, labels) of the validation rows of the last ``fit`` (for the report
            and :meth:`set_threshold`; saved in the run's ``scores.npz`` and read back by ``load``:
            None for a run saved before it was written).
        test_scores: the same for the test manifest of the last ``fit``; None when it had none.
        eval_scores: the same for the rows of the latest ``evaluate`` (or the fit's test).
        kept: what ``scores.npz`` keeps beside them: ``valid_held`` / ``test_held`` (N,), the bit
            mask of the modalities each row held (bit i: the i-th sorted modality), and
            ``valid_subset_scores`` (2^M, R), the R validation normal rows' scores with only each
            subset's modalities present (NaN where a row lacks one): what :meth:`set_threshold`
            chooses each subset's threshold from again. Empty for a run saved before.
        eval_held: (N,) the bit masks of the rows of the latest ``evaluate``.
    """

    emptied_rows_predicted = "kept and flagged, with a NaN score"  # a row that cannot be checked is raised

    @property
    def unsupported(self) -> dict[str, str]:
        """No robustness sweep (a corrupted input is an anomaly), class probabilities or shared-space
        embeddings (a score and a flag per row instead); subsets, attributions, export and serving work."""
        return _UNSUPPORTED

    def __init__(self, config: Config | dict[str, Any] | str | os.PathLike):
        super().__init__(config)  # validated: a dict or a file's path becomes a Config
        config = self.config
        if config.task != "anomaly":
            raise SchemaMismatchError(f"AnomalyDetector needs a config with task 'anomaly'; got '{config.task}'")
        self.model: AnomalyModel | None = None
        self.eval_held: np.ndarray | None = None
        self._one_threshold_said = False  # the warning of a model without thresholds per subset: given once

    @property
    def settings(self) -> AnomalyConfig:
        """The config's ``anomaly`` section as it is now (defaults when absent): an edit made
        before a refit is the one the refit uses."""
        return anomaly_settings(self.config)

    @classmethod
    def from_config(cls, source: str | os.PathLike | dict[str, Any] | Config) -> AnomalyDetector:
        return cls(load_config(source))

    _read_targets = staticmethod(AnomalyTargets.from_state)  # the target encoder of a saved run's state

    def _new_pipeline(self) -> DataPipeline:
        return DataPipeline(self.config, targets=AnomalyTargets(self.config.targets, self.settings.normal))

    def _build_model(self, pipeline: DataPipeline, restore: bool = False) -> AnomalyModel:
        """The network and scorer; ``restore``: for a saved run's weights (weight files not read)."""
        contexts = pipeline.contexts()
        net = build_anomaly_net(self.config, restore_contexts(contexts) if restore else contexts)
        scorer = build_scorer(self.settings, len(net.names))
        return AnomalyModel(net, scorer)

    # -- fitting ------------------------------------------------------------------------------
    @fitting  # unchanged if it raises, one fit per run folder, its own seeding, ranks share the preprocessing
    def fit(self, train: DataSource, valid: DataSource | None = None, *, test: DataSource | None = None,
            out: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
            unlabeled: DataSource | None = None, callbacks: list[Any] | None = None) -> AnomalyDetector:
        """Fit preprocessing and the network on ``train`` (normal rows; rows labelled anomalous are
        kept out of what is learned as normal), then the scorer's statistics, then the flag
        threshold on ``valid``'s normal rows at ``anomaly.target_fpr``.

        Args:
            valid: validation manifest (early stopping, threshold); None holds out
                ``train.val_fraction`` of ``train``.
            test: optional labelled manifest evaluated after training.
            out: run folder (one that already holds a run is refused unless ``overwrite``).
            resume: continue an interrupted run in ``out`` from its last checkpoint (a scorer trained
                in phases, Deep SVDD, resumes within its last phase, the one that writes checkpoints).
            unlabeled: not supported by anomaly detection (must be unset).
            callbacks: extra Lightning callbacks for the training run of the last phase (e.g. a
                tuner's pruning: its validation loss is the one the kept weights were chosen by).

        Raises:
            ManifestError / DecodeError: bad input, every problem named.
        """
        if unlabeled is not None:
            raise SchemaMismatchError("task 'anomaly' learns from no unlabelled manifest (its training rows are the "
                                      f"normal samples); drop {option('--unlabeled')}")
        cfg = self.config
        if self.settings.threshold is not None:
            raise ConfigError([f"anomaly.threshold: {self.settings.threshold} is the score a fitted detector was "
                               "re-thresholded at (set_threshold(score=), polymodal threshold --score); a fit "
                               "chooses its own threshold at anomaly.target_fpr, on scores whose scale is new: "
                               "remove the key from the config (on this detector in Python: "
                               "det.config.anomaly.threshold = None)"])
        if test is not None and not cfg.targets:
            raise SchemaMismatchError("a test manifest is evaluated against its labels, but this anomaly config has "
                                      "no target column; set target (and anomaly.normal) or leave the test out")
        phases = phase_epochs(self)
        self._begin_fit(out, resume=resume, overwrite=overwrite, data={"train": train, "valid": valid},
                        planned_epochs=phases[-1][1])
        pipeline = self._new_pipeline()
        train_m, valid_m, test_m = self._read_fit_data(pipeline, train, valid, test, require_target=bool(cfg.targets))
        normal = pipeline.targets.encode(train_m) != 1
        if not normal.any():
            said = normal_value_problems(train_m, cfg.targets[0], self.settings.normal, every=False) or [
                f"normal values: {self.settings.normal}"]
            raise ManifestError([f"every training row is labelled anomalous ({said[0]}); anomaly detection learns "
                                 "from normal rows"], source=train_m.name)
        self._require_normal_validation(pipeline.targets, valid_m, held_out=valid is None)
        train_m, dropped = training_rows(train_m, normal, pipeline.targets, self.settings, cfg.train.seed)
        started = time.perf_counter()
        train_table, train_y, valid_table, valid_y = self._fit_pipeline(pipeline, train_m, valid_m, out=out)
        self._seed()
        model = self._build_model(pipeline)
        # frozen encoders with cache: true run once per input here, never in the training steps (on every
        # DDP rank, from the cache folder the ranks share)
        train_table = self._fit_table(model, pipeline, train_m, train_table)
        valid_table = self._fit_table(model, pipeline, valid_m, valid_table)
        run_dir = self._own(start_run(out, cfg, resume=resume, overwrite=overwrite, planned_epochs=phases[-1][1],
                                      data=manifest_paths(train=train, valid=valid)), fresh=True)  # the first write
        result, histories, seconds, before = train_phases(self, model, phases, (train_table, train_y),
                                                          (valid_table, valid_y), run_dir=run_dir, resume=resume,
                                                          callbacks=callbacks)
        model.eval()
        model.scorer.fit(model.net, self._loader(train_table, train_y, train=False))
        self.model = model
        self._mark_fitted()
        if result.rank != 0:  # other DDP ranks: rank 0 sets the threshold, evaluates and writes the run
            self.info = {"rank": result.rank}
            return self
        valid_scores = self._scores(valid_table)  # NaN where the scorer could not score a row: left out
        self.valid_scores, self.test_scores = (valid_scores, valid_y), None
        self.kept = {"valid_held": self._held(valid_table)}
        chosen_on = threshold_rows(self)
        warn_coarse_rate(self.settings.target_fpr, chosen_on)
        model.scorer.threshold.fill_(threshold_at_fpr(chosen_on, self.settings.target_fpr))
        fit_coalitions(self, valid_table.select(valid_y != 1))
        self.history = pd.concat(histories, ignore_index=True)
        self.info = self._fit_info(train_table, valid_table, model, {"train": train, "valid": valid, "test": test},
                                   train_anomalies=int((train_y == 1).sum()), train_anomalies_dropped=dropped,
                                   train_seconds=before + seconds, epochs_run=len(self.history),
                                   # the last phase's best epoch, counted across phases
                                   best_epoch=None if result.best_epoch is None
                                   else result.best_epoch + sum(len(h) for h in histories[:-1]),
                                   preprocess_seconds=time.perf_counter() - started - seconds,
                                   scorer=self.settings.scorer, threshold=float(model.scorer.threshold),
                                   subset_thresholds=subset_threshold_table(self))
        self.metrics = {"valid": labelled_metrics(self, valid_scores, valid_y,
                                                 pipeline.targets.labels(valid_m, valid_table.rows),
                                                 self.kept["valid_held"], subject="validation holds", validation=True)}
        self._warn_inverted_ranking(self.metrics["valid"].get("auroc"))
        self._finish_fit(test_m, run_dir)
        if test_m is not None:
            self.test_scores = self.eval_scores
            self.kept["test_held"] = self.eval_held
            from polymodal.evaluation.diagnostics import diagnose_after_fit  # imported when a fit reaches it

            # on labelled test rows only: the validation rows are normal, their AUROC undefined
            self.diagnostics = diagnose_after_fit(self, test_m, "test", cfg.report)
        if run_dir is not None:
            self.save(run_dir)
        return self

    # -- the flag threshold -------------------------------------------------------------------
    def set_threshold(self, *, fpr: float | None = None, score: float | None = None) -> dict[str, Any]:
        """Set the flag threshold of the fitted detector without retraining: at the false-positive
        rate ``fpr`` on the validation normal rows kept from the fit (as ``fit`` does at
        ``anomaly.target_fpr``), or at the score ``score``. The config records it
        (``anomaly.target_fpr``, or ``anomaly.threshold`` for a score), so that it stays the
        config the model is bound to; the validation and test metrics' flag rates follow. Persist
        it with :meth:`save` (``polymodal threshold RUN`` does both).

        Args:
            fpr: in (0, 1); below 1/N for N validation normal rows it warns (the threshold is
                then the highest of their scores).
            score: any finite score; rows above it are flagged.

        Returns:
            ``old`` and ``new`` threshold, ``valid_fpr`` (the share of scored validation normal
            rows above the new one; None when the run kept no validation scores) and
            ``valid_normals`` (their number, N); ``subsets``, each subset of modalities' new
            threshold, validation false-positive rate and number of validation normal rows holding
            it (None for a model with one threshold), and ``unscored_subsets``, the subsets the
            scorer does not score (``consistency``'s single modalities: a row holding only them
            is flagged with a NaN score), label -> why.

        Raises:
            OptionError: neither or both of ``fpr`` and ``score``, or a value out of range.
            RunFolderError: ``fpr`` for a run saved without its validation scores (before
                ``scores.npz`` was written): fit it again, or give ``score``.
            NotFittedError / ConfigError: not fitted, or its config changed since the fit.
        """
        return rethreshold(self, fpr=fpr, score=score)

    def _warn_inverted_ranking(self, auroc: float | None) -> None:
        """Warn when the validation AUROC (defined where validation holds labelled anomalies) is
        below 0.5: the scorer ranks those anomalies below the normal rows, so what it measures is
        not what sets them apart; name it and the scorers to try instead."""
        if auroc is None or auroc >= 0.5:
            return
        scorer = self.settings.scorer
        why = (" (it flags modalities that do not belong together: anomalies whose modalities still agree, "
               "a fault every sensor shows alike, look normal to it)" if scorer == "consistency" else "")
        others = [name for name in ("autoencoder", "deep_svdd", "mahalanobis") if name != scorer]
        warn_user(f"validation AUROC {auroc:.3f} is below 0.5: the anomaly scorer '{scorer}' ranks the validation's "
                  f"labelled anomalies below its normal rows{why}; its flags will miss them. Try another "
                  f"anomaly.scorer ({', '.join(others)}), or check the validation labels (anomaly.normal: "
                  f"{self.settings.normal})")

    def subset_thresholds(self) -> np.ndarray | None:
        """(2^M,) the flag threshold of a row holding only each subset of modalities (bit i: the
        i-th sorted modality present; NaN: that row is held to the full set's threshold); None for
        a run fitted before they were chosen, or with more than ``REFERENCE_MAX_MODALITIES``
        modalities: one threshold for every row."""
        chosen = self.require_fitted()[1].scorer.subset_thresholds.detach().cpu().numpy().astype(np.float64)
        return chosen if chosen.size and not np.isnan(chosen).all() else None

    def row_thresholds(self, held: np.ndarray) -> np.ndarray:
        """(N,) the flag threshold of each row, that of the subset of modalities it holds (``held``:
        its bit mask; :func:`~polymodal.metrics.anomaly.row_thresholds`)."""
        return row_thresholds(held, float(self.require_fitted()[1].scorer.threshold), self.subset_thresholds())

    def _held(self, table: EncodedTable) -> np.ndarray:
        """(N,) the bit mask of the modalities each row of ``table`` holds (bit i: the i-th sorted name)."""
        return held_masks(np.stack([table.modalities[n].present for n in self.model.names], axis=1))

    def _flags(self, scores: np.ndarray, held: np.ndarray) -> np.ndarray:
        """(N,) each row's flag at its own threshold (:meth:`row_thresholds`); a model with one
        threshold for every row says so, once, when it flags a row that misses a modality."""
        flagged = flags(scores, self.row_thresholds(held))
        if not self._one_threshold_said and self.subset_thresholds() is None:
            many = len(self.model.names) > REFERENCE_MAX_MODALITIES
            note = one_threshold_note(flagged, held, len(self.model.names),
                                      f"more than {REFERENCE_MAX_MODALITIES} modalities" if many else None)
            if note is not None:
                warn_user(note)
                self._one_threshold_said = True
        return flagged

    def coalition_reference(self) -> np.ndarray | None:
        """(2^M,) the normal validation rows' mean score under each coalition of modalities (bit i:
        the i-th sorted modality present); None for a run saved before it was recorded, or with
        more than ``REFERENCE_MAX_MODALITIES`` modalities."""
        reference = self.require_fitted()[1].scorer.normal_coalitions.detach().cpu().numpy().astype(np.float64)
        return reference if reference.size and not np.isnan(reference).any() else None

    def _fit_table(self, model: AnomalyModel, pipeline: DataPipeline, manifest: Manifest, table: EncodedTable
                   ) -> EncodedTable:
        """A fit's ``table`` as the network trains on and scores it: each cached frozen encoder's
        outputs in place of its inputs (:func:`~polymodal.data.embeddings.attach_cached_features`),
        with their reconstruction targets when the scorer is trained or scores by reconstruction."""
        network = attach_cached_features(self.config, model, pipeline, manifest, table, self.config.train.progress)
        scorer = model.scorer
        return self._with_targets(table, network, pipeline, model,
                                  scorer.learns_by_reconstruction or scorer.reconstructs)

    @staticmethod
    def _with_targets(table: EncodedTable, network: EncodedTable, pipeline: DataPipeline, model: AnomalyModel,
                      wanted: bool) -> EncodedTable:
        """``network`` (``table`` with cached encoders' stored outputs) with those modalities'
        reconstruction targets from ``table``'s inputs where ``wanted`` (:mod:`polymodal.anomaly.cached`)."""
        if not wanted or network is table:
            return network
        return with_reconstruction_targets(table, network, pipeline.preprocessors, model.net.recon_size)

    def _require_normal_validation(self, targets: AnomalyTargets, valid: Manifest, *, held_out: bool) -> None:
        """Refuse validation rows none of which is normal (each labelled anomalous): the flag
        threshold is chosen on the normal ones, and early stopping follows them.

        Raises:
            ManifestError: naming the manifest (or the rows held out of the training one), the
                target column, ``anomaly.normal`` and the labels it holds instead.
        """
        if (targets.encode(valid) != 1).any():  # normal, or without a label (taken as normal)
            return
        which = None if not held_out else (f"the {len(valid)} validation rows held out of {valid.name} "
                                           f"(train.val_fraction {self.config.train.val_fraction:g})")
        said = no_normal_row(valid, targets.columns[0], self.settings.normal, which)
        raise ManifestError([f"{said}; the detector validates and sets its flag threshold on normal rows: give "
                             "validation rows that hold normal ones (labelled anomalies beside them are scored for "
                             "the validation AUROC)" + ("" if held_out else f", or {option('no --valid', 'valid=None')} to hold "
                                                        "out train.val_fraction of the training rows")],
                            source=valid.name)

    def _split(self, manifest: Manifest) -> tuple[Manifest, Manifest]:  # no labels needed
        train = self.config.train
        if train.val_group is not None:
            return group_holdout(manifest, train.val_fraction, train.seed, train.val_group)
        return random_holdout(manifest, train.val_fraction, train.seed)

    # -- inference ----------------------------------------------------------------------------
    @property
    def _network(self) -> AnomalyModel | None:
        return self.model

    def require_fitted(self) -> tuple[DataPipeline, AnomalyModel]:
        if not self._fitted:
            raise NotFittedError("this anomaly detector is not fitted; call fit() or AnomalyDetector.load()")
        self._check_config_unchanged()
        return self.pipeline, self.model

    def output_network(self) -> ScoreNetwork:
        return ScoreNetwork(self.require_fitted()[1])

    @property
    def n_outputs(self) -> int:
        return 1

    def network_table(self, manifest: Manifest, table: EncodedTable, *, in_memory: bool = False) -> EncodedTable:
        """The estimator's (each cached frozen encoder's stored outputs in place of its inputs), with
        those modalities' reconstruction targets when the scorer scores by reconstruction."""
        network = super().network_table(manifest, table, in_memory=in_memory)
        pipeline, model = self.require_fitted()
        return self._with_targets(table, network, pipeline, model, model.scorer.reconstructs)

    def _scores(self, table: EncodedTable) -> np.ndarray:
        """(N,) anomaly scores of an encoded table (as the network reads it: :meth:`network_table`)."""
        return self.raw_outputs(table)[:, 0]

    def predict_frame(self, data: DataSource, modalities: Any = None, *,
                      support: DataSource | None = None) -> pd.DataFrame:
        """``score`` (higher = more anomalous), ``flag`` (score above the validation threshold) and
        ``absent`` (the modalities missing from the row, comma-separated; empty when none: a feed
        that stopped is told from a quiet one) per manifest row (a DataFrame's own index, when it
        has one).

        A scorer that cannot score some rows (``consistency``: fewer than two modalities present)
        adds a ``note`` column, the reason on those rows and null elsewhere. Such a row's score is
        NaN and its flag True: a row that cannot be checked is raised, as a monitor raises a sensor
        that stopped reporting. So is, under ``data.on_error: missing``, a row left with no
        modality that could be read (every file unreadable or absent; listed in ``eval_skipped``):
        it keeps its place, ``absent`` names every modality and its note says why (the ``note``
        column is then on every call, so that the chunks of a batch prediction agree). One warning
        counts the rows left unscored, out of every row returned, by reason. Under ``skip`` a row
        with an unreadable file is left out.
        ``support`` is refused: a detector has no classes to take from a support set.
        """
        self._refuse_support(support)
        manifest, table = self.encode_data(data, require_target=False, modalities=modalities, predicting=True)
        scores = self._scores(self.network_table(manifest, table))
        scorer = self.model.scorer
        unscored = np.isnan(scores)
        frame = pd.DataFrame({"score": scores, "flag": self._flags(scores, self._held(table)),
                              "absent": table.absent()}, index=manifest.row_index(table.rows))
        keeps_emptied = self.config.data.on_error == "missing"
        if scorer.unscored_reason is not None or keeps_emptied:  # on every call, so that chunks of a manifest agree
            reason = f"not scored: {scorer.unscored_reason}" if scorer.unscored_reason is not None else None
            frame["note"] = pd.Series(np.where(unscored, reason, None), index=frame.index, dtype=object)
        if keeps_emptied:
            frame = self._with_emptied_rows(frame, manifest, table)
        self._warn_unscored(int(unscored.sum()) if scorer.unscored_reason is not None else 0,
                            len(frame) - len(scores), len(frame))
        return frame

    def _warn_unscored(self, unscorable: int, emptied: int, rows: int) -> None:
        """One warning for the rows :meth:`predict_frame` returns without a score, out of all
        ``rows`` it returns: ``unscorable`` the scorer could not score (its ``unscored_reason``),
        ``emptied`` left with no modality that could be read (``data.on_error: missing``)."""
        reasons = [(count, why) for count, why in ((unscorable, self.model.scorer.unscored_reason),
                                                   (emptied, "no modality could be read")) if count]
        if not reasons:
            return
        said = reasons[0][1] if len(reasons) == 1 else "; ".join(
            f"{count} row{'' if count == 1 else 's'}: {why}" for count, why in reasons)
        warn_user(f"{unscorable + emptied} of {rows} rows could not be scored ({said}): their score is NaN, their "
                  "flag True (a row that cannot be checked is raised) and their note says why")

    def _with_emptied_rows(self, frame: pd.DataFrame, manifest: Manifest, table: EncodedTable) -> pd.DataFrame:
        """``frame`` (the scored rows of ``table``) with the rows of ``manifest`` that encoding left
        out for want of any modality (``data.on_error: missing``) put back in manifest order: score
        NaN, flag True, every modality absent and a note."""
        emptied = np.setdiff1d(np.arange(len(manifest)), table.rows)
        if not len(emptied):
            return frame
        names = ", ".join(table.modalities)  # as EncodedTable.absent spells a row without any
        filler = pd.DataFrame({"score": np.full(len(emptied), np.nan, frame["score"].dtype),
                               "flag": np.ones(len(emptied), bool), "absent": np.full(len(emptied), names, object),
                               "note": np.full(len(emptied), EMPTIED_NOTE, object)},
                              index=manifest.row_index(emptied))
        rows = np.concatenate([table.rows, emptied])
        return pd.concat([frame, filler]).iloc[np.argsort(rows, kind="stable")]

    def score_outputs(self, outputs: np.ndarray, targets: np.ndarray, held: np.ndarray | None = None
                      ) -> dict[str, Any]:
        """:func:`~polymodal.metrics.anomaly.anomaly_metrics` of scores (N, 1) against encoded
        labels (0 normal, 1 anomaly; -1, no label, left out), each row flagged at the threshold of
        the modalities it was scored with (``held``: (N,) bit masks; None: every row at the full
        set's): what subset evaluation (``--missing``) and attribution's metric drops score."""
        known = np.asarray(targets) >= 0
        threshold = (float(self.require_fitted()[1].scorer.threshold) if held is None
                     else self.row_thresholds(held)[known])
        return anomaly_metrics(outputs[known, 0], targets[known], threshold)

    def explain(self, data: DataSource, *, max_rows: int | None = None, seed: int = SEED, samples: int = 4,
                permutations: int = PERMUTATIONS, steps: int = 32, output: Any | None = None,
                support: DataSource | None = None) -> Any:
        """What each modality contributed to each row's anomaly score: Shapley values over
        modalities (a coalition scored with the others hidden, as missing cells are), the
        importance table (with labels: AUROC with every modality, without each and with each
        alone) and Integrated-Gradients maps inside each modality for the ``samples`` highest
        scores. Options as :func:`polymodal.evaluation.attribution.explain` (``output``: only
        ``score``)."""
        from polymodal.evaluation.attribution import explain  # imported when used: it loads captum

        self._refuse_support(support)
        return explain(self, data, max_rows=max_rows, seed=seed, samples=samples, permutations=permutations,
                       steps=steps, output=output)

    def predict(self, data: DataSource, modalities: Any = None, *, support: DataSource | None = None) -> np.ndarray:
        """(N,) bool flags."""
        return self.predict_frame(data, modalities, support=support)["flag"].to_numpy()

    # -- a classifier's and an aligned model's methods: refused, saying what to use --------------
    predict_proba = _refused(PROBABILITIES, "predict_proba", "a detector scores and flags rows")
    embed = _refused(EMBEDDINGS, "embed", "a detector has no shared embedding space")
    evaluate_retrieval = _refused(EMBEDDINGS, "evaluate_retrieval",
                                  "a detector has no shared embedding space to retrieve across")
    zero_shot = _refused(EMBEDDINGS, "zero_shot", "a detector has no classes, nor a shared space to match their "
                                                  "names in")

    def evaluate(self, data: DataSource, modalities: Any = None, *, support: DataSource | None = None,
                 by: str | None = None, target: str | None = None,
                 normal: Sequence[Any] | None = None) -> dict[str, Any]:
        """AUROC, AUPRC, FPR at 95% TPR, the flag's FPR/TPR and ``per_label`` AUROC of each anomaly
        label against the normal rows, on a manifest with the target column; ``by``: also per
        value of that column (see :meth:`MultimodalPredictor.evaluate`).

        Args:
            target: the column of ``data`` whose labels the rows are scored against (default: the
                config's ``target``): a detector trained without one (``target: null``) is
                evaluated this way.
            normal: the labels that mean normal (default: ``anomaly.normal``); matched as
                training matches them (``0`` and ``'0'`` alike; case counts).

        Raises:
            SchemaMismatchError: no ``target``, and the config has no target column to evaluate against.
            ManifestError: ``data`` lacks the target column, or a row's label is empty.
            OptionError: ``normal`` is empty.
        """
        self._refuse_support(support)
        return evaluate_detector(self, data, modalities, by=by, target=target, normal=normal)

    # -- persistence --------------------------------------------------------------------------
    def _write_report(self, run: Path, model: AnomalyModel) -> None:
        """``report.html``: the metrics, per-label AUROC and the score distributions."""
        from polymodal.anomaly.report import anomaly_sections  # the report sits a layer above
        from polymodal.evaluation.report import write_report

        scored = {split: pair for split, pair in (("valid", self.valid_scores), ("test", self.test_scores))
                  if pair is not None}
        write_report(self, run, model, anomaly_sections(self.metrics, float(model.scorer.threshold), scored,
                                                        run / PLOTS_DIR))

    @classmethod
    def load(cls, path: str | os.PathLike, *, config: Config | None = None) -> AnomalyDetector:
        """Load a run folder written by :meth:`save` (no pickle is read); ``config``: its config,
        when already read (``MultimodalPredictor.load`` reads it to tell the task)."""
        detector, run = cls._open_run(path, config)
        with torch.random.fork_rng(devices=[]):  # initial weights, replaced by the saved ones: the caller's stream kept
            model = detector._build_model(detector.pipeline, restore=True)
        runfolder.load_weights(model, run, optional=OPTIONAL_STATE)
        detector.model = model.eval()
        return detector
