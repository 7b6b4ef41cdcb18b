"""The names of everything a run folder holds, in one place: the estimators, the trainer, the
report, resuming and the command line all read them from here.

    config.yaml          the resolved config
    model.safetensors    the network's state dict (an anomaly detector's: network + scorer)
    preprocessors/       fitted preprocessing and target state (JSON and safetensors)
    assets/              copies of the files pretrained encoders need (:mod:`polymodal.assets`)
    metrics.json         ``{"valid": .., "test": .., "training": info}`` (info's ``polymodal_version``:
                         the version that saved the run)
    history.csv          one row per epoch (when training ran)
    skipped.csv          files skipped while encoding the fit's manifests (when there were any;
                         its ``split`` column names the manifest: train, valid or test)
    diagnostics.json     the report's subsets, importance, robustness... (an anomaly detector's: with a test manifest)
    scores.npz           the validation (and test) rows' scores and labels of an anomaly detector (its
                         anomaly scores), a two-class classifier (the positive class's probabilities)
                         or a multilabel model (each label's): what a threshold is chosen from again
                         without retraining (``polymodal threshold``); an anomaly detector's also
                         each row's modalities (``valid_held``, ``test_held``: bit masks) and the
                         validation normal rows' scores per subset of modalities
                         (``valid_subset_scores``), which its thresholds per subset are chosen from
    report.html, plots/  the run's report and its figures
    checkpoints/         last.ckpt (for --resume) and best.ckpt; data.json, the training and
                         validation manifests the training reads (paths and content hashes,
                         written as it starts: what --resume checks an interrupted run against)
    logs/                the epoch CSV log and TensorBoard's
    evaluation/, explain/, export/, export_torchscript/
                         what ``polymodal evaluate`` / ``explain`` / ``export`` write by default
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.safetensors"
PREPROCESSORS_DIR = "preprocessors"
TARGETS_FILE = "targets.json"  # in PREPROCESSORS_DIR: the target encoder's state
ASSETS_DIR = "assets"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SKIPPED_FILE = "skipped.csv"
DIAGNOSTICS_FILE = "diagnostics.json"
SCORES_FILE = "scores.npz"  # numpy arrays only, read with allow_pickle=False
REPORT_FILE = "report.html"
PLOTS_DIR = "plots"
CHECKPOINTS_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"  # inside CHECKPOINTS_DIR
BEST_CKPT = "best.ckpt"
STARTED_DATA_FILE = f"{CHECKPOINTS_DIR}/data.json"  # the manifests a training started on
LAST_CHECKPOINT = f"{CHECKPOINTS_DIR}/{LAST_CKPT}"
LOGS_DIR = "logs"
EVALUATION_DIR = "evaluation"
EXPLAIN_DIR = "explain"
EXPORT_DIR = "export"  # the ONNX export 'polymodal serve RUN' runs
EXPORT_TORCHSCRIPT_DIR = "export_torchscript"

# model.safetensors metadata: the model's fingerprint (Estimator.model_fingerprint), which an export
# records too, so that serving checks an export against its run without loading the model
MODEL_FINGERPRINT_KEY = "polymodal.model_fingerprint"


def saved_fingerprint(model_file: Path) -> str | None:
    """The fingerprint ``model.safetensors`` records in its metadata, read from the file's JSON
    header alone: no torch, no weights read. None for a run saved before it was recorded, and for
    a header that cannot be read (loading the run then names what is wrong with it)."""
    try:
        with open(model_file, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size <= MAX_HEADER_BYTES:
                return None
            header = json.loads(handle.read(size))
    except (OSError, ValueError):  # unreadable, cut short, not JSON
        return None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    value = metadata.get(MODEL_FINGERPRINT_KEY) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else None


MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on its JSON header

# Where a fit with --overwrite keeps the run it replaces (its RUN_ENTRIES) until the new one is saved
# whole, so that an interrupted fit loses nothing
REPLACED_DIR = ".replaced"

# What a run writes into its folder; replacing the run (--overwrite, save(overwrite=True)) removes
# these and nothing else the folder may hold.
RUN_ENTRIES = (CONFIG_FILE, MODEL_FILE, PREPROCESSORS_DIR, ASSETS_DIR, METRICS_FILE, HISTORY_FILE, SKIPPED_FILE,
               DIAGNOSTICS_FILE, SCORES_FILE, REPORT_FILE, PLOTS_DIR, CHECKPOINTS_DIR, LOGS_DIR, EVALUATION_DIR, EXPLAIN_DIR,
               EXPORT_DIR, EXPORT_TORCHSCRIPT_DIR)
