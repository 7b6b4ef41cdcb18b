"""The run folder: what ``save`` writes and ``load`` reads back (config, preprocessing, weights,
results), for :class:`~polymodal.predictor.MultimodalPredictor` and
:class:`~polymodal.anomaly.detector.AnomalyDetector`. Every file the folder may hold is named in
:mod:`polymodal.run_files`. Every file is written atomically; loading never unpickles anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polymodal import __version__
from polymodal.config import Config, load_config, save_config
from polymodal.data.pipeline import DataPipeline
from polymodal.errors import ConfigError, PolymodalError, RunFolderError, RunNotFoundError, option
from polymodal.run_files import (
    CONFIG_FILE,
    DIAGNOSTICS_FILE,
    HISTORY_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_FINGERPRINT_KEY,
    PREPROCESSORS_DIR,
    REPLACED_DIR,
    SCORES_FILE,
    SKIPPED_FILE,
)
from polymodal.utils.io import atomic_write, atomic_write_json, check_folder_path, folder_digest

Scored = tuple[np.ndarray, np.ndarray]  # (N,) scores and their (N,) labels (classifier: 0/1; anomaly: 0 normal, 1 anomaly, -1 none)


def check_run(path: str | os.PathLike) -> Path:
    """``path`` as a run folder.

    Raises:
        RunNotFoundError: nothing at ``path``, a file, or a folder without ``model.safetensors``
            (also a ``FileNotFoundError``).
    """
    run = Path(path)
    if not run.exists():
        raise RunNotFoundError(f"run folder not found: {run}")
    if not run.is_dir():
        wrote = option("'polymodal train --out'", "fit(out=)")
        raise RunNotFoundError(f"{run} is a file, not a run folder (give the folder {wrote} wrote)")
    if not (run / MODEL_FILE).is_file():
        if (run / LAST_CHECKPOINT).is_file():  # a fit stopped before it saved its model
            replaced = run / REPLACED_DIR
            kept = (f"; the run it replaces is kept in {replaced} until then (move its files back into {run} to use "
                    "that one instead)" if (replaced / MODEL_FILE).is_file() else "")
            finish = option("'polymodal train CONFIG ... --out RUN --resume'", "fit(..., out=RUN, resume=True)")
            raise RunNotFoundError(f"{run} holds an interrupted run (its {LAST_CHECKPOINT}, no {MODEL_FILE} yet): "
                                   f"finish it with {finish} (its config is {run / CONFIG_FILE}), then use it{kept}")
        raise RunNotFoundError(f"{run} is not a polymodal run folder: {MODEL_FILE} not found")
    return run


# Keys added after run folders were first written, with the behaviour of the versions before them
# (a new default that differs would rebuild another network, or read inputs another way): by
# encoder name, and by modality kind for preprocessing; a dotted key is one inside a sub-section,
# set only where the saved config has that sub-section. (A value whose meaning changed is read by
# its config section under the ``saved_run`` validation context: a text's ``stopwords: true``.)
PREDATED_DEFAULTS: dict[str, dict[str, Any]] = {"mel_cnn": {"frequency": "mean"}}
PREDATED_PREPROCESS: dict[str, dict[str, Any]] = {"image": {"background": None}, "video": {"background": None},
                                                  "signal": {"spectrogram.scale": "log1p"},
                                                  "tabular": {"normalize_categories": "none"},
                                                  "text": {"keep_number_punctuation": False, "join_apostrophes": False}}


def read_config(run: Path) -> Config:
    """The run's config. A saved ``config.yaml`` lists every key, so one it lacks predates that
    key: it takes the behaviour the run was trained with (``PREDATED_DEFAULTS``,
    ``PREDATED_PREPROCESS``), not today's default.

    Raises:
        ConfigError: ``config.yaml`` does not load; a key this version does not know is told
            apart from a mistake by the polymodal version that wrote the run (:func:`version_hint`).
    """
    try:
        config = load_config(run / CONFIG_FILE, saved_run=True)
    except ConfigError as err:
        raise version_hint(run, err) from None
    for modality in config.modalities.values():
        for section, predated in ((modality.encoder, PREDATED_DEFAULTS.get(modality.encoder.name, {})),
                                  (modality.preprocess, PREDATED_PREPROCESS.get(modality.kind, {}))):
            for dotted, old in predated.items():
                *parents, key = dotted.split(".")
                owner = section
                for parent in parents:
                    owner = getattr(owner, parent) if owner is not None else None
                if owner is not None and key not in owner.model_fields_set:
                    setattr(owner, key, old)
    return config


UNKNOWN_KEY = ": unknown key '"  # how a config problem names a key the schema lacks (config.base)


def version_hint(run: Path, err: ConfigError) -> ConfigError:
    """``err`` (the run's ``config.yaml`` does not load) with a hint after its first unknown key:
    the polymodal version that wrote the run (:func:`written_by`) beside this one when they
    differ (a key a newer version added, or an older one had), or that the run records none;
    ``err`` itself when no key is unknown or the versions are the same (a key added by hand)."""
    first = next((i for i, problem in enumerate(err.problems) if UNKNOWN_KEY in problem), None)
    written = written_by(run)
    if first is None or written == __version__:
        return err
    if written is None:
        hint = (f"the run records no polymodal version (saved before versions were recorded, or never saved): a "
                f"polymodal older or newer than this one ({__version__}) may have written the key; load the run "
                f"with that version, or remove the key from {CONFIG_FILE} if it was added by hand")
    else:
        newer = _release(written) > _release(__version__)
        hint = (f"the run was written by polymodal {written}, this is polymodal {__version__}: load it with "
                f"polymodal {written}" + (" or upgrade (pip install -U polymodal)" if newer else ""))
    problems = list(err.problems)
    problems[first] = f"{problems[first]}; {hint}"
    return ConfigError(problems, source=err.source)


def written_by(run: Path) -> str | None:
    """The polymodal version that wrote ``run`` (``metrics.json``'s ``training.polymodal_version``,
    :func:`write_results`); None for a run saved before it was recorded, or never saved, and
    where ``metrics.json`` cannot be read (loading it names that)."""
    try:
        version = json.loads((run / METRICS_FILE).read_text(encoding="utf-8")).get("training", {}).get(VERSION_KEY)
    except (OSError, ValueError, AttributeError):  # missing, damaged, or not the dict a save writes
        return None
    return version if isinstance(version, str) else None


def _release(version: str) -> tuple[int, ...]:
    """``"0.10.2"`` as ``(0, 10, 2)``, for telling an older version from a newer one (a suffix such
    as ``rc1`` or ``.dev3`` is left out; ``()`` for text that starts with no number)."""
    release = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in release.group(0).split(".")) if release else ()


VERSION_KEY = "polymodal_version"  # in metrics.json's training section: the version that wrote the run


def write_model(path: str | os.PathLike, config: Config, model: torch.nn.Module, pipeline: DataPipeline,
                fingerprint: str | None = None) -> Path:
    """Write what rebuilds the model: ``config.yaml``, ``preprocessors/`` and, last,
    ``model.safetensors``, whose metadata records the model's ``fingerprint`` (what serving checks
    an export against) and a digest of the preprocessors' files: a save
    interrupted between the files (each written atomically) leaves a run that
    :func:`load_weights` names as damaged, never new weights read with old preprocessors. (The
    config stays editable: one that no longer fits the weights fails to load them anyway.)

    Returns:
        The run folder (created when missing).
    """
    from safetensors.torch import save_model

    run = check_folder_path(path, "the run folder")  # not a file, nor inside one
    run.mkdir(parents=True, exist_ok=True)
    save_config(config, run / CONFIG_FILE)
    pipeline.save(run / PREPROCESSORS_DIR)
    metadata = {PREPROCESSORS_KEY: folder_digest(run / PREPROCESSORS_DIR),
                **({MODEL_FINGERPRINT_KEY: fingerprint} if fingerprint is not None else {})}
    atomic_write(run / MODEL_FILE, lambda tmp: save_model(model.cpu(), str(tmp), metadata=metadata))
    return run


PREPROCESSORS_KEY = "polymodal.preprocessors"  # model.safetensors metadata: the digest of preprocessors/


@contextmanager
def reading(run: Path, name: str) -> Iterator[None]:
    """Report a missing, truncated or unreadable run file ``name`` as a :class:`RunFolderError`
    that names it, instead of the reader's own exception."""
    from safetensors import SafetensorError

    try:
        yield
    except PolymodalError:
        raise
    except FileNotFoundError as err:
        missing = Path(err.filename).relative_to(run) if err.filename and Path(err.filename).is_relative_to(run) else name
        raise RunFolderError(f"the run {run} is incomplete: {missing} is missing; retrain it or restore the "
                             "file") from None
    except (OSError, ValueError, RuntimeError, SafetensorError,  # JSONDecodeError is a ValueError
            zipfile.BadZipFile, EOFError,  # an .npz archive cut short or overwritten
            TypeError, AttributeError, KeyError) as err:  # readable, but not the structure the file has
        raise RunFolderError(f"the run {run} is damaged: {name} cannot be read ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}); retrain it or restore the file") from None


def load_pipeline(run: Path, config: Config, read_targets: Callable[[Mapping[str, Any]], Any]) -> DataPipeline:
    """The fitted preprocessors and target encoder of ``preprocessors/`` (``read_targets``: the
    encoder from its state, as the estimator reading the run has it); a damaged JSON file among
    them is named."""
    try:
        with reading(run, f"{PREPROCESSORS_DIR}/"):
            return DataPipeline.load(config, run / PREPROCESSORS_DIR, read_targets)
    except RunFolderError:
        for path in sorted((run / PREPROCESSORS_DIR).glob("*.json")):  # name the file, when it is one that
            with reading(run, f"{PREPROCESSORS_DIR}/{path.name}"):  # does not parse (read only on failure)
                json.loads(path.read_text(encoding="utf-8"))
        raise


def load_weights(model: torch.nn.Module, run: Path, optional: Collection[str] = ()) -> None:
    """Fill ``model`` (built from the run's config and preprocessors) from ``model.safetensors``.

    Args:
        optional: entries of the model's state that runs saved by an earlier version lack: such
            an entry, when missing, keeps the value the model was built with."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    with reading(run, MODEL_FILE):
        with safe_open(str(run / MODEL_FILE), framework="pt") as handle:
            recorded = (handle.metadata() or {}).get(PREPROCESSORS_KEY)  # runs saved before it have none
            saved = {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
        if recorded is not None and recorded != folder_digest(run / PREPROCESSORS_DIR):
            raise RunFolderError(f"the run {run} is damaged: {PREPROCESSORS_DIR}/ is not the one {MODEL_FILE} was "
                                 "saved with (an interrupted save, or files copied from another run); retrain it "
                                 "or restore the files")
        check_weight_shapes(run, model, saved, optional)
        load_model(model, str(run / MODEL_FILE), strict=not any(k not in saved for k in optional))


SHOWN_DIFFERENCES = 3


def check_weight_shapes(run: Path, model: torch.nn.Module, saved: dict[str, list[int]],
                        optional: Collection[str] = ()) -> None:
    """Refuse weights that do not fit the network ``config.yaml`` builds (an edited config: another
    width, encoder or modality), naming the first differences, before torch's loader reports a
    mismatch as if the weights were damaged.

    Raises:
        RunFolderError: naming both files and the first differing parameters.
    """
    state = model.state_dict()
    wanted = {k: list(v.shape) for k, v in state.items()}
    tied = {state[k].data_ptr() for k in saved if k in state and state[k].numel()}  # saved under one of its names
    differences = [f"{k}: {shape} in {MODEL_FILE}, {wanted[k]} for {CONFIG_FILE}"
                   for k, shape in saved.items() if k in wanted and wanted[k] != shape]
    differences += [f"{k}: only in {MODEL_FILE}" for k in saved if k not in wanted]
    differences += [f"{k}: not in {MODEL_FILE}" for k in state
                    if k not in saved and k not in optional and not (state[k].numel() and state[k].data_ptr() in tied)]
    if differences:
        more = f"; {len(differences) - SHOWN_DIFFERENCES} more" if len(differences) > SHOWN_DIFFERENCES else ""
        raise RunFolderError(f"the run {run}: {CONFIG_FILE} does not describe the network {MODEL_FILE} holds (was "
                             f"{CONFIG_FILE} edited after training?): {'; '.join(differences[:SHOWN_DIFFERENCES])}"
                             f"{more}; restore {CONFIG_FILE} or retrain")


def write_results(run: Path, metrics: dict[str, Any], info: dict[str, Any], history: pd.DataFrame,
                  skipped: pd.DataFrame) -> None:
    """Write ``history.csv`` / ``skipped.csv`` when they have rows, then ``metrics.json`` (with
    ``info`` under ``training``, where a save records the polymodal version writing the run as
    :data:`VERSION_KEY`): the last file of a save."""
    if not history.empty:
        atomic_write(run / HISTORY_FILE, lambda tmp: history.to_csv(tmp, index=False))
    write_skipped(run / SKIPPED_FILE, skipped)
    atomic_write_json(run / METRICS_FILE, {**metrics, "training": info})


def write_skipped(path: Path, skipped: pd.DataFrame) -> None:
    """Write the skipped-file table to ``path`` (CSV) when it has rows; else remove a stale one
    (there is none where its folder is missing or a file)."""
    if skipped.empty:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()
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
        with reading(run, METRICS_FILE):
            stored = json.loads((run / METRICS_FILE).read_text(encoding="utf-8"))
            if not isinstance(stored, dict):
                raise ValueError(f"expected a JSON object, found {type(stored).__name__}")
            results.info = stored.pop("training", {})
        results.metrics = stored
    if (run / HISTORY_FILE).is_file():
        with reading(run, HISTORY_FILE):
            results.history = pd.read_csv(run / HISTORY_FILE)
    if (run / SKIPPED_FILE).is_file():
        with reading(run, SKIPPED_FILE):
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
    with reading(run, DIAGNOSTICS_FILE):
        return json.loads((run / DIAGNOSTICS_FILE).read_text(encoding="utf-8"))


def write_scores(path: Path, kept: dict[str, Scored | None], arrays: dict[str, np.ndarray] | None = None) -> None:
    """The scores and labels of each split ``kept`` into ``path`` (``.npz``, numpy arrays only): an
    anomaly detector's anomaly scores, a two-class classifier's positive-class probabilities (N,), a
    multilabel model's label probabilities (N, L), from which a threshold is chosen again without
    the rows, and the further ``arrays`` an estimator keeps beside them (:func:`read_kept_arrays`);
    a stale file goes when there are no scores (a run loaded from a folder saved before they were
    kept)."""
    arrays = {**{f"{split}_{part}": np.asarray(values, dtype)
                 for split, pair in kept.items() if pair is not None
                 for part, values, dtype in (("scores", pair[0], np.float64), ("labels", pair[1], np.int64))},
              **({} if not any(pair is not None for pair in kept.values()) else (arrays or {}))}
    if not arrays:
        path.unlink(missing_ok=True)
        return

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would add .npz to the temporary name
            np.savez(handle, **arrays)

    atomic_write(path, write)


def read_scores(run: Path) -> dict[str, Scored]:
    """What :func:`write_scores` wrote into ``run``, by split; empty when the run has none."""
    if not (run / SCORES_FILE).is_file():
        return {}
    with reading(run, SCORES_FILE), np.load(run / SCORES_FILE, allow_pickle=False) as stored:
        out = {}
        for split in ("valid", "test"):
            if f"{split}_scores" in stored.files:
                scores, labels = stored[f"{split}_scores"], stored[f"{split}_labels"]
                if scores.ndim not in (1, 2) or scores.shape != labels.shape:  # 2: a multilabel model's, per label
                    raise ValueError(f"{split}: {scores.shape[0] if scores.ndim else 0} scores for "
                                     f"{labels.shape[0] if labels.ndim else 0} labels")
                out[split] = (scores, labels)
        return out


def read_kept_arrays(run: Path) -> dict[str, np.ndarray]:
    """The arrays :func:`write_scores` kept in ``run`` beside the splits' scores and labels, by
    name; empty when the run has none."""
    if not (run / SCORES_FILE).is_file():
        return {}
    with reading(run, SCORES_FILE), np.load(run / SCORES_FILE, allow_pickle=False) as stored:
        splits = {f"{split}_{part}" for split in ("valid", "test") for part in ("scores", "labels")}
        return {name: stored[name] for name in stored.files if name not in splits}
