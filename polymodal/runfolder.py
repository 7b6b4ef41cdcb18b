"""The run folder: what ``save`` writes and ``load`` reads back.

Shared by :class:`~polymodal.predictor.MultimodalPredictor` and
:class:`~polymodal.anomaly.detector.AnomalyDetector`:

    config.yaml          the resolved config
    model.safetensors    the network's state dict (an anomaly detector's: network + scorer)
    preprocessors/       fitted preprocessing and target state (JSON and safetensors)
    metrics.json         ``{"valid": .., "test": .., "training": info}``
    history.csv          one row per epoch (when training ran)
    skipped.csv          files skipped while encoding the fit's manifests (when there were any;
                         its ``split`` column names the manifest: train, valid or test)
    diagnostics.json     the report's subsets, importance, robustness... (predictor only)

A predictor's run also holds ``assets/`` (:mod:`polymodal.assets`), ``report.html``,
``plots/``, ``checkpoints/`` and ``logs/``. Every file is written atomically; loading never
unpickles anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polymodal.config import Config, load_config, save_config
from polymodal.data.pipeline import DataPipeline
from polymodal.utils.io import atomic_write, atomic_write_json

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.safetensors"
PREPROCESSORS = "preprocessors"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SKIPPED_FILE = "skipped.csv"
DIAGNOSTICS_FILE = "diagnostics.json"


def start_run(out: str | os.PathLike | None, config: Config) -> Path | None:
    """Create the run folder ``out`` (when given) and write its ``config.yaml`` before training."""
    if out is None:
        return None
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    save_config(config, run / CONFIG_FILE)
    return run


def check_run(path: str | os.PathLike) -> Path:
    """``path`` as a run folder.

    Raises:
        FileNotFoundError: the folder holds no ``model.safetensors``.
    """
    run = Path(path)
    if not (run / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{run} is not a polymodal run folder: {MODEL_FILE} not found")
    return run


# Keys added after run folders were first written, by encoder name, with the behaviour of the
# versions before them (a new default that differs would rebuild another network).
PREDATED_DEFAULTS: dict[str, dict[str, Any]] = {"mel_cnn": {"frequency": "mean"}}


def read_config(run: Path) -> Config:
    """The run's config. A saved ``config.yaml`` lists every key, so one it lacks predates that
    key: it takes the behaviour the run was trained with (``PREDATED_DEFAULTS``), not today's
    default."""
    config = load_config(run / CONFIG_FILE)
    for modality in config.modalities.values():
        encoder = modality.encoder
        for key, old in PREDATED_DEFAULTS.get(encoder.name, {}).items():
            if key not in encoder.model_fields_set:
                setattr(encoder, key, old)
    return config


def write_model(path: str | os.PathLike, config: Config, model: torch.nn.Module, pipeline: DataPipeline) -> Path:
    """Write what rebuilds the model: ``config.yaml``, ``model.safetensors`` and ``preprocessors/``.

    Returns:
        The run folder (created when missing).
    """
    from safetensors.torch import save_model

    run = Path(path)
    run.mkdir(parents=True, exist_ok=True)
    save_config(config, run / CONFIG_FILE)
    atomic_write(run / MODEL_FILE, lambda tmp: save_model(model.cpu(), str(tmp)))
    pipeline.save(run / PREPROCESSORS)
    return run


def load_pipeline(run: Path, config: Config) -> DataPipeline:
    """The fitted preprocessors and target encoder of ``preprocessors/``."""
    return DataPipeline.load(config, run / PREPROCESSORS)


def load_weights(model: torch.nn.Module, run: Path) -> None:
    """Fill ``model`` (built from the run's config and preprocessors) from ``model.safetensors``."""
    from safetensors.torch import load_model

    load_model(model, str(run / MODEL_FILE))


def write_results(run: Path, metrics: dict[str, Any], info: dict[str, Any], history: pd.DataFrame,
                  skipped: pd.DataFrame) -> None:
    """Write ``metrics.json`` (with ``info`` under ``training``), and ``history.csv`` /
    ``skipped.csv`` when they have rows."""
    atomic_write_json(run / METRICS_FILE, {**metrics, "training": info})
    if not history.empty:
        atomic_write(run / HISTORY_FILE, lambda tmp: history.to_csv(tmp, index=False))
    write_skipped(run / SKIPPED_FILE, skipped)


def write_skipped(path: Path, skipped: pd.DataFrame) -> None:
    """Write the skipped-file table to ``path`` (CSV) when it has rows; else remove a stale one."""
    if skipped.empty:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: skipped.to_csv(tmp, index=False))


@dataclass
class RunResults:
    """What :func:`write_results` wrote: ``metrics`` per split, ``info`` (facts about the fit), the
    epoch ``history`` and the ``skipped`` files."""

    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)


def read_results(run: Path) -> RunResults:
    """What :func:`write_results` wrote; the empty default where a file is missing."""
    results = RunResults()
    if (run / METRICS_FILE).is_file():
        stored = json.loads((run / METRICS_FILE).read_text(encoding="utf-8"))
        results.info = stored.pop("training", {})
        results.metrics = stored
    if (run / HISTORY_FILE).is_file():
        results.history = pd.read_csv(run / HISTORY_FILE)
    if (run / SKIPPED_FILE).is_file():
        results.skipped = pd.read_csv(run / SKIPPED_FILE)
    return results


def write_diagnostics(run: Path, diagnostics: dict[str, Any]) -> None:
    """``diagnostics.json``, when there are any."""
    if diagnostics:
        atomic_write_json(run / DIAGNOSTICS_FILE, diagnostics)


def read_diagnostics(run: Path) -> dict[str, Any]:
    """``diagnostics.json``; empty when the run has none."""
    if not (run / DIAGNOSTICS_FILE).is_file():
        return {}
    return json.loads((run / DIAGNOSTICS_FILE).read_text(encoding="utf-8"))
