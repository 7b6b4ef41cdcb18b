"""Starting a run folder and resuming one: what a new run may replace (``--overwrite``), whether a
run can be resumed (its last checkpoint readable, training not finished, the same config except
how long and where it trains: :data:`RESUMABLE_KEYS`), and that a resume learns from the same
data (train, valid and unlabelled manifests, recorded at fit time by :func:`manifest_paths`). The
folder's files are named in :mod:`polymodal.run_files`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from polymodal.config import Config, save_config
from polymodal.config.diff import changed_keys, flatten, said_changes
from polymodal.data.content_keys import manifest_key
from polymodal.data.pipeline import DataSource
from polymodal.errors import ConfigError, RunFolderError, option
from polymodal.metrics.tasks import monitored
from polymodal.run_files import (
    CONFIG_FILE,
    LAST_CHECKPOINT,
    METRICS_FILE,
    MODEL_FILE,
    REPLACED_DIR,
    RUN_ENTRIES,
    STARTED_DATA_FILE,
)
from polymodal.runfolder import read_config
from polymodal.training.checkpoints import checkpoint_state
from polymodal.training.devices import launcher_mismatch, secondary_process, world_size
from polymodal.utils.io import atomic_write_json, check_folder_path, damaged_zip, exclusive_lock

F = TypeVar("F", bound=Callable[..., Any])


def check_out(out: str | os.PathLike | None, config: Config, *, resume: bool = False, overwrite: bool = False,
              verify_checkpoint: bool = True, planned_epochs: int | None = None) -> None:
    """Check, before any data is read and without writing anything, that a fit may use ``out``
    (``verify_checkpoint``: also read the checkpoint to resume from through, for its CRCs;
    ``planned_epochs``: the epochs of the training the checkpoints belong to, when not
    ``train.epochs``: an anomaly scorer's last phase).

    Raises:
        RunFolderError: ``resume`` and ``overwrite`` together; ``out`` is a file; it already holds
            a trained model or an interrupted run and neither ``resume`` nor ``overwrite`` was
            asked for; ``resume`` with a config that differs from the run's beyond
            :data:`RESUMABLE_KEYS` or on another number of processes (:func:`check_same_processes`),
            of a run that finished training (:func:`check_unfinished`), or with a damaged checkpoint.
        FileNotFoundError: ``resume`` and the run has no checkpoint to resume from.
    """
    if resume and overwrite:
        raise RunFolderError(f"{option('--resume')} continues the run in {option('--out')} and {option('--overwrite')} "
                             "replaces it; give one of them")
    if out is None:
        if resume:
            raise FileNotFoundError(f"{option('--resume')}: no checkpoint to resume from without a run folder "
                                f"({option('--out')})")
        return
    run = Path(out)
    if run.exists() and not run.is_dir():
        raise RunFolderError(f"the run folder {run} is a file; give a folder (new or an earlier run's) as {option('--out')}")
    check_folder_path(run, f"the run folder ({option('--out')})", writable=True)  # a read-only place: found before any work
    last = run / LAST_CHECKPOINT
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"{option('--resume')}: no checkpoint to resume from at {last}")
        check_resumable(run, config)
        if verify_checkpoint:
            check_checkpoint(last)
        check_same_processes(run, config)
        check_unfinished(run, config, planned_epochs)
    elif (held := held_run(run)) is not None and not overwrite:
        unsaved = held == MODEL_FILE and last.is_file() and not results_written(run, checkpoint_epochs(last))
        what = ("a trained model whose latest results were not all written (a save interrupted)" if unsaved
                else "a trained model" if held == MODEL_FILE else f"an interrupted run ({LAST_CHECKPOINT})")
        hint = f", {option('--resume')} to continue it" if held == LAST_CHECKPOINT or unsaved else ""
        raise RunFolderError(f"{run} already holds {what}; give another {option('--out')}{hint}, or "
                             f"{option('--overwrite')} to replace it")


def holding_the_run_folder(fit: F) -> F:
    """Decorate an estimator's ``fit`` so that, given ``out``, it holds that run folder's lock
    (:func:`polymodal.utils.io.exclusive_lock`) from its first check to its last file: a second fit
    into the same folder is refused at once instead of interleaving checkpoints and leaving one run
    reported as written that the other replaced. The other ranks of a distributed fit, which
    run the same ``fit`` into the same folder, write nothing there and take no lock."""

    @functools.wraps(fit)
    def locked(self: Any, *args: Any, out: str | os.PathLike | None = None, **kwargs: Any) -> Any:
        with run_folder_lock(out, self.config.train):
            return fit(self, *args, out=out, **kwargs)

    return locked  # type: ignore[return-value]


@contextlib.contextmanager
def run_folder_lock(out: str | os.PathLike | None, train: Any, source: str | None = None) -> Iterator[None]:
    """Hold the lock of the run folder ``out`` for the block (:func:`holding_the_run_folder`; the
    command line around its early :func:`check_out` too, so that a folder another fit is writing
    is named as such, not as an interrupted run); nothing to hold without ``out``, or on the other
    ranks of a distributed fit (``train``: the config's training settings; ``source``: the config
    file they came from, which an error names).

    Raises:
        ConfigError: the process was launched for another number of processes than ``train`` asks.
        RunFolderError: another fit holds the lock.
    """
    if (mismatch := launcher_mismatch(train)) is not None:
        raise ConfigError([mismatch], source=source)  # before the lock, which each such process would take for its own run
    if out is None or secondary_process(train):
        yield
        return

    def busy(held: Path) -> RunFolderError:
        return RunFolderError(f"{out} is being trained into by another fit (it holds {held}); wait for it to end, "
                              f"or give another {option('--out')}")

    check_folder_path(out, f"the run folder ({option('--out')})", writable=True)  # where the lock goes too
    with exclusive_lock(out, busy):
        yield


def held_run(run: Path) -> str | None:
    """What makes ``run`` hold a run: its trained model (:data:`MODEL_FILE`), else the checkpoint of
    an interrupted one (:data:`LAST_CHECKPOINT`); None for a new or unrelated folder."""
    return next((name for name in (MODEL_FILE, LAST_CHECKPOINT) if (run / name).is_file()), None)


def check_checkpoint(path: Path) -> None:
    """Refuse a damaged checkpoint before training starts from it.

    Raises:
        RunFolderError: the file is not a complete archive (see ``utils.io.damaged_zip``).
    """
    reason = damaged_zip(path)
    if reason is not None:
        raise RunFolderError(f"{option('--resume')}: the checkpoint {path} is damaged ({reason}); training cannot "
                             f"continue from it. Start again with {option('--overwrite')}")


def start_run(out: str | os.PathLike | None, config: Config, *, resume: bool = False,
              overwrite: bool = False, planned_epochs: int | None = None,
              data: Mapping[str, str] | None = None) -> Path | None:
    """Create the run folder ``out`` (when given) and write its ``config.yaml``, right before
    training: the inputs have been read, checked and preprocessed by then, so a mistake (or a
    corrupt file) leaves an existing folder as it was. With ``overwrite``, the earlier run's own
    files (:data:`RUN_ENTRIES`) are set aside (:func:`set_aside_run`) until the new run is saved.
    A new training records ``data`` (:func:`manifest_paths` of its training and validation
    manifests) in :data:`STARTED_DATA_FILE`, which :func:`check_resumed_data` checks a resume of
    the run against when it was interrupted before saving. A resume says where it starts again
    (:func:`resuming_line`, on stderr, with ``train.progress``).

    Raises:
        See :func:`check_out`, which runs again here (the folder may have changed meanwhile; the
        checkpoint was verified when the fit started).
    """
    check_out(out, config, resume=resume, overwrite=overwrite, verify_checkpoint=False, planned_epochs=planned_epochs)
    if out is None:
        return None
    run = Path(out)
    if secondary_process(config.train):  # other ranks (under torchrun all start at once): rank 0 writes
        return run
    if resume and config.train.progress:
        print(resuming_line(run, config.train.epochs if planned_epochs is None else planned_epochs),
              file=sys.stderr, flush=True)  # beside the epoch lines (training.progress), on the process that writes
    if not resume and held_run(run) is not None:
        set_aside_run(run)
    run.mkdir(parents=True, exist_ok=True)
    save_config(config, run / CONFIG_FILE)
    if not resume:
        atomic_write_json(run / STARTED_DATA_FILE, dict(data or {}))
    return run


def resuming_line(run: Path, planned: int) -> str:
    """What a resume says as training starts again: ``resuming RUN at epoch N of M`` (``planned``:
    the epochs of the training the checkpoints belong to, an anomaly scorer's last phase), or that
    its epochs are trained and only its results are left to write (a save that was stopped)."""
    state = checkpoint_state(run / LAST_CHECKPOINT)
    done = state["epoch"] + 1
    phase = " of its last training phase" if state["earlier_epochs"] else ""
    if done >= planned:
        return f"resuming {run}: its {done} epochs{phase} are trained; writing the results an interrupted save left out"
    return f"resuming {run} at epoch {done + 1} of {planned}{phase}"


def set_aside_run(run: Path) -> None:
    """Move the trained run in ``run`` (its :data:`RUN_ENTRIES`) into ``run/.replaced``
    (:data:`REPLACED_DIR`), where it stays until the run replacing it is saved whole
    (:func:`drop_replaced_run`): an interrupted ``--overwrite`` fit loses nothing. An interrupted
    run (no model) is removed instead, keeping the trained run an earlier ``--overwrite`` set aside."""
    if not (run / MODEL_FILE).is_file():
        clear_run(run)
        return
    aside = run / REPLACED_DIR
    if aside.exists():
        shutil.rmtree(aside)
    aside.mkdir()
    for name in RUN_ENTRIES:
        if (run / name).exists() or (run / name).is_symlink():
            os.replace(run / name, aside / name)


def drop_replaced_run(run: Path) -> None:
    """Remove the run ``--overwrite`` set aside in ``run`` (:func:`set_aside_run`), once the new
    one is saved whole."""
    aside = run / REPLACED_DIR
    if aside.is_dir():
        shutil.rmtree(aside)


def clear_run(run: Path) -> None:
    """Remove an earlier run's files from ``run`` (see :data:`RUN_ENTRIES`)."""
    for name in RUN_ENTRIES:
        path = run / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# Settings a resumed run may change: how long and where it trains, not what it trains.
RESUMABLE_KEYS = frozenset({"train.epochs", "train.max_minutes", "train.early_stopping", "train.progress",
                            "train.num_workers", "train.threads",
                            "train.accelerator", "train.devices", "train.num_nodes", "train.strategy", "report",
                            "data.cache_dir", "data.memory_limit_gb"})


def check_resumable(run: Path, config: Config) -> None:
    """Refuse to resume ``run`` with a config that would build or train another model.

    Raises:
        RunFolderError: the keys that differ (beyond :data:`RESUMABLE_KEYS`), old and new values.
    """
    old_config = read_config(run)
    saved = flatten(_without_data(old_config.model_dump(mode="json")))
    given = flatten(_without_data(config.model_dump(mode="json")))
    changed = changed_keys(saved, given, unchecked=RESUMABLE_KEYS)
    if not changed and saved.get("train.scheduler") == "onecycle" and saved.get("train.epochs") != given.get("train.epochs"):
        raise RunFolderError(f"{option('--resume')}: {run} trains with the one-cycle schedule, which spans the "
                             f"{saved['train.epochs']} epochs it started with; resume with train.epochs: "
                             f"{saved['train.epochs']}, or start a new run (the cosine schedule may be extended)")
    before = monitored(old_config.task, old_config.train.early_stopping)[0]  # the metric the kept epoch is chosen by
    after = monitored(config.task, config.train.early_stopping)[0]
    if before != after:
        raise RunFolderError(f"{option('--resume')}: {run} selects its best epoch by validation {before}; resuming it by "
                             f"{after} would ignore the epochs before the resume (train.early_stopping.monitor: "
                             f"{before}, or start a new run)")
    if changed:
        raise RunFolderError(f"{option('--resume')}: {run} was trained with another config: {said_changes(saved, given, changed)}. "
                             f"Resume with its {run / CONFIG_FILE}, or start a new run")


def check_same_processes(run: Path, config: Config) -> None:
    """Refuse to resume ``run`` on another number of processes (``train.devices`` x
    ``train.num_nodes``, on this machine for ``devices: auto``) than it trained on, as its last
    checkpoint recorded (:class:`~polymodal.training.trainer.StepsPerEpoch`; else as its config
    says): each process would take another share of the rows, and each epoch another number of
    optimiser steps than the learning-rate schedule and the checkpoint's step count are laid out
    over. The steps themselves are compared again as training starts.

    Raises:
        RunFolderError: naming both settings, the processes they make, and why.
    """
    record = checkpoint_state(run / LAST_CHECKPOINT)["callbacks"].get("StepsPerEpoch")
    if isinstance(record, dict) and isinstance(record.get("world_size"), int):
        before, devices, nodes = record["world_size"], record.get("devices"), record.get("num_nodes")
    else:  # a checkpoint written before the record
        train = read_config(run).train
        before, devices, nodes = world_size(train), train.devices, train.num_nodes
    after = world_size(config.train)
    if before != after:
        raise RunFolderError(
            f"{option('--resume')}: {run} trained on {before} process(es) (train.devices: {devices} x train.num_nodes: {nodes}); "
            f"resuming it on {after} (train.devices: {config.train.devices} x train.num_nodes: "
            f"{config.train.num_nodes}) would give each process another share of the rows, and each epoch another "
            "number of optimiser steps than "
            + (f"its learning-rate schedule (train.scheduler: {config.train.scheduler}) and its step count are laid "
               "out over (the schedule would end too early or too late)" if config.train.scheduler != "none" else
               "its step count (and a transfer method's ramp) is laid out over, and another global batch")
            + f". Resume it on {before} (train.devices: {before // max(nodes, 1)}, train.num_nodes: {nodes}), or "
            "start a new run")


def check_unfinished(run: Path, config: Config, planned_epochs: int | None = None) -> None:
    """Refuse to resume a run that finished training (it has ``metrics.json``) when ``config``
    would train it no further: its last checkpoint closed epoch ``train.epochs`` or later, or
    early stopping ended it and ``train.early_stopping`` keeps its patience. Resuming it would
    train nothing (or one epoch early stopping would end again) yet rewrite its model, metrics and
    report. The epochs are read from the checkpoint, not from ``metrics.json``, which a resume
    interrupted before its first checkpoint leaves behind from the run before it.

    Raises:
        RunFolderError: naming the epochs the run trained, and what would train it further.
    """
    state = checkpoint_state(run / LAST_CHECKPOINT)
    epochs = state["epoch"] + 1  # of the training the checkpoints belong to (an anomaly scorer's last phase)
    if not results_written(run, epochs + state["earlier_epochs"]):
        return  # interrupted before its end: training (or the writing of its results) continues
    again = f"give {option('--overwrite')} to train it again, or another {option('--out')}"
    planned = config.train.epochs if planned_epochs is None else planned_epochs
    if epochs >= planned:
        share = "" if planned_epochs is None else f", of which its last training phase runs {planned}"
        raise RunFolderError(f"{option('--resume')}: {run} already finished its {epochs} epochs (train.epochs: "
                             f"{config.train.epochs}{share}); nothing to resume. Raise train.epochs to train it "
                             f"longer, or {again}")
    stopper = next((v for k, v in state["callbacks"].items() if k.startswith("EarlyStopping")), None)
    stop = config.train.early_stopping
    if stopper is not None and stopper.get("stopped_epoch", 0) > 0 and stop is not None \
            and stop.patience <= stopper.get("patience", stop.patience):
        raise RunFolderError(f"{option('--resume')}: {run} already finished: early stopping ended it after {epochs} epochs "
                             f"(patience {stop.patience}); nothing to resume. Raise train.early_stopping.patience "
                             f"or remove early_stopping to train it longer, or {again}")


def checkpoint_epochs(path: Path) -> int:
    """The epochs the checkpoint at ``path`` closed (an anomaly scorer's earlier phases counted)."""
    state = checkpoint_state(path)
    return state["epoch"] + 1 + state["earlier_epochs"]


def results_written(run: Path, epochs: int) -> bool:
    """Whether ``run``'s results were all written after its last checkpoint, which closed epoch
    ``epochs``: its ``metrics.json``, the last file a save writes (after the model and the
    report), counts as many epochs. A save interrupted in a resumed run leaves the previous fit's
    ``metrics.json`` (fewer epochs) or none; ``--resume`` then trains no further and writes it all."""
    try:
        saved = json.loads((run / METRICS_FILE).read_text()).get("training", {}).get("epochs_run")
    except (OSError, ValueError, AttributeError):  # missing, torn (written atomically: not by us) or not a dict
        return False
    return isinstance(saved, int) and saved >= epochs


def _without_data(config: dict[str, Any]) -> dict[str, Any]:
    """A config dump without ``transfer.unlabeled``: the unlabelled manifest is data, checked by
    :func:`check_resumed_data` like the training manifest (``--unlabeled`` may name it instead)."""
    transfer = config.get("transfer")
    for method in transfer if isinstance(transfer, list) else [transfer]:
        if isinstance(method, dict):
            method.pop("unlabeled", None)
    return config


def recorded_unlabeled(config: Config) -> str | None:
    """The unlabelled manifest a run trained on, as its ``config.yaml`` records it
    (``transfer.unlabeled``: the file ``--unlabeled`` or the config named; None for a DataFrame)."""
    return next((str(m.unlabeled) for m in config.transfers if getattr(m, "unlabeled", None) is not None), None)


def check_resumed_data(run: Path, data: dict[str, Any], from_config: dict[str, bool] | None = None) -> None:
    """Refuse to resume a run on other manifests than those it recorded, or on a recorded file
    whose content changed since (its content hash, :func:`manifest_paths`): more epochs on other
    rows (a validation share held out of rows it trained on, when ``--valid`` is left out) would
    not continue the same run. The training and validation manifests are recorded, with their
    hashes, by a finished run (in ``metrics.json``) and as training starts
    (:data:`STARTED_DATA_FILE`, read for a run interrupted before saving); the unlabelled one of a ``transfer`` method in ``config.yaml``
    (``transfer.unlabeled``), when the run starts, so it is checked for an interrupted run too.
    A manifest given as a DataFrame records no path, and is not checked.

    Args:
        data: ``{"train": path or DataFrame, "valid": path, DataFrame or None, "unlabeled": ...}``
            as given (``unlabeled``: what the fit would learn from, ``--unlabeled`` or the config's).
        from_config: by split, whether the source given came from the config, not an option.

    Raises:
        RunFolderError: naming the manifest the run recorded and the one given, or the recorded
            file whose content changed.
    """
    metrics, started = run / METRICS_FILE, run / STARTED_DATA_FILE
    if metrics.is_file():  # a finished run's record
        recorded = json.loads(metrics.read_text(encoding="utf-8")).get("training", {})
    else:  # an interrupted one's: what its training started on (none in a run that started before it was written)
        recorded = json.loads(started.read_text(encoding="utf-8")) if started.is_file() else {}
    if "unlabeled" in data:
        config = read_config(run)
        recorded["unlabeled_manifest"] = recorded_unlabeled(config)
        optional = all(m.uses_unlabeled != "required" for m in config.transfers)
        if recorded["unlabeled_manifest"] is None and data["unlabeled"] is not None and optional:
            # a method that may go without (distillation) records none for "none", as for a DataFrame
            raise RunFolderError(f"{option('--resume')}: {run} trained without {option('--unlabeled')} (or with a DataFrame of "
                                 "unlabelled rows, which records no path); resuming it with unlabelled rows would not "
                                 f"continue the same run: resume it without {option('--unlabeled')}, or start a new "
                                 "run")
    for split, given in data.items():
        before = recorded.get(f"{split}_manifest")
        now = str(Path(given).resolve()) if isinstance(given, str | os.PathLike) else None
        flag = option(f"--{split}")
        if before is not None and now != before:
            shown = now or ("none" if given is None else "a DataFrame")
            if (from_config or {}).get(split) and given is not None:
                shown += f", the config's transfer.{split}"
            raise RunFolderError(f"{option('--resume')}: {run} trained with {flag} {before}; resume it with the same {flag} "
                                 f"(given: {shown})")
        key = recorded.get(f"{split}_manifest_key")
        if before is not None and key is not None and Path(before).is_file() and manifest_key(before) != key:
            raise RunFolderError(f"{option('--resume')}: {run} trained with {flag} {before}, whose content changed since "
                                 f"({CHANGED_MANIFEST.get(split, 'the epochs before were trained on its old rows')}); "
                                 f"start a new run (another {option('--out')}), or {option('--overwrite')} to train this one again on it")


def manifest_paths(**sources: DataSource | None) -> dict[str, str]:
    """``{"<split>_manifest": absolute path, "<split>_manifest_key": content hash}`` for the
    sources given as files (a DataFrame has no path to record): the run remembers what it was
    fitted and tested on, and can tell when a file by that name changed since."""
    recorded = {}
    for split, source in sources.items():
        if isinstance(source, (str, os.PathLike)):
            path = Path(source).resolve()
            recorded[f"{split}_manifest"] = str(path)
            recorded[f"{split}_manifest_key"] = manifest_key(path)  # its bytes' digest (hex)
    return recorded


# why a resume refuses a manifest whose content changed since the run trained on it, by split
CHANGED_MANIFEST = {"train": "the preprocessing fitted on it, and the validation rows held out of it without a "
                             "validation manifest, would not match the epochs before",
                    "valid": "the epochs before were validated, and their best chosen, on its old rows"}

