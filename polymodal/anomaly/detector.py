"""``AnomalyDetector``: fit on normal data, score, flag, evaluate, save and load (``task: anomaly``).

    det = AnomalyDetector.from_config("anomaly.yaml").fit("normal_train.csv", "valid.csv", out="runs/a")
    det.predict_frame("new.csv")         # score and flag per row
    det.evaluate("test.csv")             # auroc, auprc, fpr@95tpr, flag rates, per-label AUROC
    AnomalyDetector.load("runs/a")

``MultimodalPredictor.from_config`` / ``load`` hand ``task: anomaly`` configs and runs to this
class, so ``polymodal train / evaluate / predict`` work unchanged. Run folder: ``config.yaml``,
``model.safetensors`` (network + the scorer's statistics and threshold), ``preprocessors/``,
``metrics.json``, ``history.csv``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from polymodal.anomaly.metrics import anomaly_metrics, threshold_at_fpr
from polymodal.anomaly.model import build_anomaly_net
from polymodal.anomaly.module import AnomalyModel, AnomalyModule
from polymodal.anomaly.scorers import build_scorer
from polymodal.anomaly.targets import AnomalyTargets
from polymodal.config import Config, load_config, save_config
from polymodal.config.anomaly import AnomalyConfig
from polymodal.data.dataset import collate
from polymodal.data.encode import EncodedTable, skipped_frame
from polymodal.data.manifest import Manifest
from polymodal.data.pipeline import DataPipeline, DataSource
from polymodal.errors import ManifestError, NotFittedError, SchemaMismatchError
from polymodal.utils.device import default_device
from polymodal.utils.io import atomic_write, atomic_write_json

MODEL_FILE = "model.safetensors"


class AnomalyDetector:
    """Fits and applies an anomaly detector described by a ``task: anomaly`` config.

    Attributes:
        config: the validated config.
        settings: its ``anomaly`` section (defaults when absent).
        pipeline: fitted preprocessors (after ``fit``/``load``).
        model: network + scorer (after ``fit``/``load``).
        metrics / info: validation (and test) metrics; facts about the fit.
    """

    def __init__(self, config: Config):
        if config.task != "anomaly":
            raise SchemaMismatchError(f"AnomalyDetector needs a config with task 'anomaly'; got '{config.task}'")
        self.config = config
        self.settings = config.anomaly if config.anomaly is not None else AnomalyConfig()
        self.pipeline: DataPipeline | None = None
        self.model: AnomalyModel | None = None
        self.history = pd.DataFrame()
        self.metrics: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.last_skipped = pd.DataFrame()

    @classmethod
    def from_config(cls, source: str | os.PathLike | dict[str, Any] | Config) -> AnomalyDetector:
        return cls(load_config(source))

    def _new_pipeline(self) -> DataPipeline:
        pipeline = DataPipeline(self.config)
        pipeline.targets = AnomalyTargets(self.config.targets, self.settings.normal)
        return pipeline

    def _build_model(self, pipeline: DataPipeline) -> AnomalyModel:
        net = build_anomaly_net(self.config, pipeline.contexts())
        scorer = build_scorer(self.settings.scorer, len(net.names), self.settings.latent_dim,
                              self.settings.pretrain_fraction)
        return AnomalyModel(net, scorer)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, train: DataSource, valid: DataSource | None = None, *, test: DataSource | None = None,
            out: str | os.PathLike | None = None, resume: bool = False, unlabeled: DataSource | None = None,
            callbacks: list[Any] | None = None) -> AnomalyDetector:
        """Fit preprocessing and the network on ``train`` (normal rows; rows labelled anomalous are
        kept out of what is learned as normal), then the scorer's statistics, then the flag
        threshold on ``valid``'s normal rows at ``anomaly.target_fpr``.

        Args:
            valid: validation manifest (early stopping, threshold); None holds out
                ``train.val_fraction`` of ``train``.
            test: optional labelled manifest evaluated after training.
            out: run folder.
            resume / unlabeled / callbacks: not supported by anomaly detection (must be unset).

        Raises:
            ManifestError / DecodeError: bad input, every problem named.
        """
        import lightning as L

        from polymodal.training.module import OptimSettings
        from polymodal.training.trainer import fit_module

        if resume or unlabeled is not None or callbacks:
            raise SchemaMismatchError("task 'anomaly' supports neither --resume, an unlabelled manifest nor extra "
                                      "callbacks")
        cfg = self.config
        run_dir = Path(out) if out is not None else None
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
        L.seed_everything(cfg.train.seed, workers=True, verbose=False)
        pipeline = self._new_pipeline()
        train_m = pipeline.read(train, require_target=bool(cfg.targets), training=True)
        valid_m = pipeline.read(valid, require_target=bool(cfg.targets), training=True) if valid is not None else None
        if valid_m is None:
            train_m, valid_m = self._split(train_m)
        normal = pipeline.targets.encode(train_m) != 1
        if not normal.any():
            raise ManifestError([f"every training row is labelled anomalous (normal values: {self.settings.normal}); "
                                 "anomaly detection learns from normal rows"], source=train_m.name)
        dropped = 0
        if not self.settings.use_labelled_anomalies:  # normal data only, from the preprocessing on
            dropped = int((~normal).sum())
            train_m = train_m.subset(np.flatnonzero(normal))
        started = time.perf_counter()
        train_table, train_y = pipeline.fit(train_m, progress=cfg.train.progress)
        valid_table = pipeline.encode(valid_m, progress=cfg.train.progress)
        valid_y = pipeline.encode_targets(valid_m, valid_table)
        self.pipeline = pipeline
        L.seed_everything(cfg.train.seed, workers=True, verbose=False)
        model = self._build_model(pipeline)
        optim = OptimSettings(cfg.train.lr, cfg.train.weight_decay, cfg.train.scheduler, cfg.train.warmup_epochs,
                              cfg.train.encoder_lr_scale)
        train_loader = self._loader(train_table, train_y, train=True)
        histories, seconds = [], 0.0
        phases = model.scorer.phases
        for k, (phase, share) in enumerate(phases):
            model.scorer.start_phase(model.net.eval(), phase, lambda: self._loader(train_table, train_y, train=False))
            epochs = max(1, round(cfg.train.epochs * share))
            last = k == len(phases) - 1
            result = fit_module(AnomalyModule(model.train(), phase, optim), train_loader,
                                self._loader(*self._validation_rows(valid_table, valid_y), train=False),
                                cfg.train.model_copy(update={"epochs": epochs}), run_dir=run_dir if last else None,
                                monitor="loss", mode="min")
            histories.append(result.history.assign(phase=phase))
            seconds += result.seconds
        model.eval()
        model.scorer.fit(model.net, self._loader(train_table, train_y, train=False))
        self.model = model
        valid_scores = self._scores(valid_table)
        model.scorer.threshold.fill_(threshold_at_fpr(valid_scores[valid_y != 1], self.settings.target_fpr))
        self.history = pd.concat(histories, ignore_index=True)
        skipped = train_table.skipped + valid_table.skipped
        self.info = {"train_rows": len(train_table), "valid_rows": len(valid_table),
                     "train_anomalies": int((train_y == 1).sum()), "train_anomalies_dropped": dropped,
                     "train_seconds": seconds,
                     "preprocess_seconds": time.perf_counter() - started - seconds,
                     "scorer": self.settings.scorer, "threshold": float(model.scorer.threshold),
                     "parameters": sum(p.numel() for p in model.parameters()), "skipped_files": len(skipped)}
        self.last_skipped = skipped_frame(skipped)
        self.metrics = {"valid": self._metrics(valid_scores, valid_y, pipeline.targets.labels(valid_m, valid_table.rows))}
        if test is not None:
            self.metrics["test"] = self.evaluate(test)
        if run_dir is not None:
            self.save(run_dir)
        return self

    def _validation_rows(self, table: EncodedTable, y: np.ndarray) -> tuple[EncodedTable, np.ndarray]:
        """What the validation loss sees: every row (labelled anomalies as such) with
        ``use_labelled_anomalies``, else the normal rows only."""
        if self.settings.use_labelled_anomalies:
            return table, np.where(y == 1, 1, 0)
        keep = y != 1
        return table.select(keep), np.zeros(int(keep.sum()), np.int64)

    def _split(self, manifest: Manifest) -> tuple[Manifest, Manifest]:
        rng = np.random.default_rng(self.config.train.seed)
        rows = rng.permutation(len(manifest))
        n_valid = max(1, int(round(len(rows) * self.config.train.val_fraction)))
        return manifest.subset(np.sort(rows[n_valid:])), manifest.subset(np.sort(rows[:n_valid]))

    def _loader(self, table: EncodedTable, targets: np.ndarray | None, train: bool) -> DataLoader:
        dataset = self.pipeline.dataset(table, targets, train=train)
        return DataLoader(dataset, batch_size=self.config.train.batch_size, shuffle=train, collate_fn=collate,
                          num_workers=0, drop_last=train and len(dataset) > self.config.train.batch_size)

    # -- inference ----------------------------------------------------------------------------
    def _require_fitted(self) -> tuple[DataPipeline, AnomalyModel]:
        if self.pipeline is None or self.model is None:
            raise NotFittedError("this anomaly detector is not fitted; call fit() or AnomalyDetector.load()")
        return self.pipeline, self.model

    def _scores(self, table: EncodedTable) -> np.ndarray:
        """(N,) anomaly scores of an encoded table."""
        from polymodal.predictor import move_to

        _, model = self._require_fitted()
        device = default_device()
        model.to(device).eval()
        out = []
        with torch.inference_mode():
            for batch in self._loader(table, None, train=False):
                out.append(model(move_to(batch, device)).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def _encode(self, data: DataSource, require_target: bool, modalities: Any = None) -> tuple[Manifest, EncodedTable]:
        pipeline, _ = self._require_fitted()
        names = None if modalities is None else list(modalities)
        manifest = pipeline.read(data, require_target=require_target, modalities=names)
        table = pipeline.encode(manifest, progress=self.config.train.progress,
                                modalities=names if names is not None else pipeline.check_modalities(None, manifest))
        self.last_skipped = skipped_frame(table.skipped)
        return manifest, table

    def predict_frame(self, data: DataSource, modalities: Any = None, **_: Any) -> pd.DataFrame:
        """``score`` (higher = more anomalous) and ``flag`` (score above the validation threshold)
        per manifest row."""
        _, table = self._encode(data, require_target=False, modalities=modalities)
        scores = self._scores(table)
        threshold = float(self.model.scorer.threshold)
        return pd.DataFrame({"score": scores, "flag": scores > threshold}, index=pd.Index(table.rows, name="row"))

    def predict(self, data: DataSource, modalities: Any = None, **_: Any) -> np.ndarray:
        """(N,) bool flags."""
        return self.predict_frame(data, modalities)["flag"].to_numpy()

    def evaluate(self, data: DataSource, modalities: Any = None, **_: Any) -> dict[str, Any]:
        """AUROC, AUPRC, FPR at 95% TPR, the flag's FPR/TPR and ``per_label`` AUROC of each anomaly
        label against the normal rows, on a manifest with the target column.

        Raises:
            SchemaMismatchError: the config has no target column to evaluate against.
        """
        if not self.config.targets:
            raise SchemaMismatchError("evaluate needs labels, but this anomaly config has no target column")
        manifest, table = self._encode(data, require_target=True, modalities=modalities)
        labels = self.pipeline.targets.labels(manifest, table.rows)
        return self._metrics(self._scores(table), self.pipeline.targets.encode(manifest, table.rows), labels)

    def _metrics(self, scores: np.ndarray, y: np.ndarray, labels: list[Any]) -> dict[str, Any]:
        known = y >= 0
        out = anomaly_metrics(scores[known], y[known], float(self.model.scorer.threshold))
        normal = known & (y == 0)
        per_label = {}
        for label in sorted({str(v) for v, k in zip(labels, y, strict=True) if k == 1}):
            rows = np.asarray([str(v) == label for v in labels]) | normal
            per_label[label] = anomaly_metrics(scores[rows], y[rows])["auroc"]
        out["per_label_auroc"] = per_label
        out["rows"] = int(len(scores))
        return out

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the run folder (see the module docstring)."""
        from safetensors.torch import save_model

        pipeline, model = self._require_fitted()
        run = Path(path)
        run.mkdir(parents=True, exist_ok=True)
        save_config(self.config, run / "config.yaml")
        atomic_write(run / MODEL_FILE, lambda tmp: save_model(model.cpu(), str(tmp)))
        pipeline.save(run / "preprocessors")
        atomic_write_json(run / "metrics.json", {**self.metrics, "training": self.info})
        if not self.history.empty:
            atomic_write(run / "history.csv", lambda tmp: self.history.to_csv(tmp, index=False))
        if not self.last_skipped.empty:
            atomic_write(run / "skipped.csv", lambda tmp: self.last_skipped.to_csv(tmp, index=False))
        return run

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnomalyDetector:
        """Load a run folder written by :meth:`save` (no pickle is read)."""
        from safetensors.torch import load_model

        run = Path(path)
        if not (run / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{run} is not a polymodal run folder: {MODEL_FILE} not found")
        detector = cls(load_config(run / "config.yaml"))
        pipeline = DataPipeline.load(detector.config, run / "preprocessors")
        pipeline.targets = AnomalyTargets.from_state(
            json.loads((run / "preprocessors" / "targets.json").read_text(encoding="utf-8")))
        detector.pipeline = pipeline
        model = detector._build_model(pipeline)
        load_model(model, str(run / MODEL_FILE))
        detector.model = model.eval()
        if (run / "metrics.json").is_file():
            stored = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
            detector.info = stored.pop("training", {})
            detector.metrics = stored
        if (run / "history.csv").is_file():
            detector.history = pd.read_csv(run / "history.csv")
        return detector
