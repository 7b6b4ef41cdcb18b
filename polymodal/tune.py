"""Hyper-parameter search with Optuna: ``polymodal tune CONFIG --trials N``.

The config's ``tune:`` section names dotted config keys and their ranges or choices. Each trial
trains the config with the sampled values (TPE sampler, seeded), reports the validation metric
after every epoch so that a median pruner can stop hopeless trials early, and the search writes

    <out>/trials.csv        one row per trial: number, state, value, seconds, the sampled values
                            (and, once a trial failed, a note saying why)
    <out>/best_config.yaml  the base config with the best values filled in (``tune`` removed)
    <out>/summary.json      metric, direction, best value and parameters, trials completed,
                            pruned, failed and stopped
    <out>/study.journal     Optuna's record of every trial (a journal file), which ``resume`` reads

A trial whose metric is not a number (its training diverged, or the metric is undefined on the
validation rows) fails, is not ranked, and counts towards ``trials`` as a completed or pruned one
does. A trial an interruption or an error stopped does not count.

An ``<out>`` that already holds these files is refused unless ``overwrite`` is given, which
removes them (and nothing else the folder holds) before the first trial, or ``resume``, which
continues the search recorded there (an interrupted one, or a finished one given more trials):
its finished trials count towards ``trials``, and the trial the interruption stopped is marked
failed (stopped, not counted).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import yaml

from polymodal.config import Config, config_to_dict, load_config
from polymodal.config.diff import changed_keys, flatten, said_changes
from polymodal.config.overrides import apply_values, naming_overrides
from polymodal.config.task_metrics import (
    describe_choices,
    direction,
    headline,
    mixes_units,
    monitor_choices,
    per_target_name,
)
from polymodal.config.tune import ChoiceParam, RangeParam
from polymodal.data.content_keys import manifest_key
from polymodal.errors import ConfigError, OptionError, RunFolderError
from polymodal.training.devices import world_size
from polymodal.utils.io import (
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_folder_path,
    exclusive_lock,
)
from polymodal.utils.warn import warn_user


def trial_config(base: dict[str, Any], values: dict[str, Any]) -> Config:
    """The base config (as a dict) with sampled values applied, validated, ``tune`` removed.

    A value for a component's selector (``fusion.name``, ``modalities.x.encoder.name``...) that
    differs from the base replaces that section with the new component at its defaults (the
    base's settings belong to the other component); it is applied before the section's other
    sampled keys, which then adjust the new component.
    """
    data = copy.deepcopy(base)
    data.pop("tune", None)
    apply_values(data, values, named=lambda key: f"tune.space.{key}")
    return load_config(data)


def _suggest(trial: Any, key: str, param: RangeParam | ChoiceParam) -> Any:
    if isinstance(param, ChoiceParam):
        index = trial.suggest_categorical(key, list(range(len(param.choices))))  # any JSON value as a choice
        return copy.deepcopy(param.choices[index])
    if param.integer:
        return trial.suggest_int(key, param.low, param.high, step=int(param.step or 1), log=param.log)
    return trial.suggest_float(key, float(param.low), float(param.high), log=param.log,
                               step=None if param.step is None else float(param.step))


def _metric(config: Config) -> tuple[str, str]:
    tune = config.tune
    stop = config.train.early_stopping
    if tune is not None and tune.metric != "auto":
        name = tune.metric
        if mixes_units(config.task, config.targets, name):
            warn_user(f"tune.metric: '{name}' averages the {name} of targets {config.targets}, which mixes their "
                      f"units; optimise one target ('{per_target_name(name, config.targets[0])}') or 'r2' (unit-free)")
    elif stop is not None and stop.monitor != "auto":
        name = stop.monitor
    else:
        name = headline(config.task, config.targets)
    if name not in monitor_choices(config.task, config.targets):
        raise ConfigError([f"tune.metric: '{name}' is not a validation metric of task '{config.task}'; "
                           f"allowed: {describe_choices(config.task, config.targets)}"])
    return name, f"{direction(name)}imize"


def _kept(predictor: Any, column: str) -> float:
    """``column`` of the history at the epoch whose weights the fit kept (the last one if none was
    chosen); NaN where it was never logged."""
    history = predictor.history
    best = predictor.info.get("best_epoch")
    rows = history[history["epoch"] == best] if best is not None else history
    return float((rows if len(rows) else history)[column].iloc[-1]) if column in history.columns else math.nan


def _score(predictor: Any, metric: str) -> float:
    """``val_<metric>`` of the epoch whose weights the fit kept (the last one if none was chosen);
    NaN where it or the epoch's validation loss is not a number."""
    # a metric is logged only where finite: absent, it never was (the trial diverged, or it is
    # undefined on these validation rows)
    value = _kept(predictor, f"val_{metric}")
    if metric != "loss" and not math.isfinite(_kept(predictor, "val_loss")):  # diverged: NaN outputs
        value = math.nan  # score as the first class or as none (an accuracy of a class's share): not ranked
    if not math.isfinite(value):  # Optuna records a NaN value as a failed trial and goes on
        warn_user(f"val_{metric} of the kept epoch is not a number (the trial diverged, or the metric is "
                  "undefined on the validation rows): the trial is not ranked")
        return math.nan
    return value


# A trial's user attribute: why its metric was not a number (one of FAILURES' keys). A failed trial
# that holds it ran to its end and counts towards --trials; one without it was stopped (an
# interruption, an error) and does not.
FAILED = "failed"
FAILURES = {"diverged": "diverged: val_loss is not a number",
            "undefined": "the metric is undefined on the validation rows (val_loss is a number)"}


def _failure(predictor: Any) -> str:
    """Why a trial's metric (:func:`_score`) is not a number, a key of :data:`FAILURES`: the
    training diverged when the kept epoch's validation loss is not a number either, else the
    metric is undefined on the validation rows (an AUROC where they hold one class)."""
    return "undefined" if math.isfinite(_kept(predictor, "val_loss")) else "diverged"


def _counts(trial: Any) -> bool:
    """Whether a trial counts towards ``--trials``: completed, pruned, or failed on a metric that is
    not a number (:data:`FAILED`); a running trial, or one an interruption or an error stopped, does
    not."""
    state = trial.state.name
    return state in ("COMPLETE", "PRUNED") or (state == "FAIL" and FAILED in trial.user_attrs)


def pruning_callback(trial: Any, monitor: str) -> Any:
    """A Lightning callback reporting ``val_<monitor>`` each epoch and stopping pruned trials."""
    import lightning as L
    import optuna

    class _Pruning(L.Callback):
        def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            value = trainer.callback_metrics.get(f"val_{monitor}")
            if value is None:
                return
            trial.report(round(float(value), 6), step=trainer.current_epoch)  # float32 -> a clean decimal
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch + 1}: val_{monitor} = {float(value):.4f}")

    return _Pruning()


# What a search writes into --out; --overwrite removes these and nothing else the folder may hold.
JOURNAL_FILE = "study.journal"
TUNE_FILES = ("trials.csv", "best_config.yaml", "summary.json", JOURNAL_FILE)
STUDY_NAME = "polymodal"


def check_tune_out(out: str | Path, *, overwrite: bool = False, resume: bool = False) -> None:
    """Check, without writing anything, that a search may write its results into ``out``.

    Raises:
        RunFolderError: ``resume`` and ``overwrite`` together; ``out`` is a file; it already
            holds an earlier search's results (:data:`TUNE_FILES`) and neither ``overwrite`` nor
            ``resume`` was asked for; ``resume`` and it holds no search's journal.
    """
    if resume and overwrite:
        raise RunFolderError("--resume continues the search in --out and --overwrite replaces it; give one of them")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"the search folder {folder} is a file; give a folder (new or an earlier search's) "
                             "as --out")
    check_folder_path(folder, "--out", writable=True)
    if resume:
        if not (folder / JOURNAL_FILE).is_file():
            raise RunFolderError(f"--resume: {folder} holds no search to continue ({JOURNAL_FILE} not found; a search "
                                 "before 2026-12-06 kept none)")
        return
    held = [name for name in TUNE_FILES if (folder / name).exists()]
    if held and not overwrite:
        journal = ", --resume to continue it" if JOURNAL_FILE in held else ""
        raise RunFolderError(f"{folder} already holds a search's results ({', '.join(held)}); give another --out"
                             f"{journal}, or --overwrite to replace them")


# Where and how visibly a trial trains: a resumed search may change these (not what it trains).
PLACE_KEYS = ("train.progress", "train.num_workers", "train.threads", "train.accelerator", "train.devices",
              "train.num_nodes", "train.strategy", "report", "data.cache_dir", "data.memory_limit_gb")
# How many trials: a resumed search may run more (as --trials says), its trials the same.
TRIALS_KEY = "tune.trials"


def _drop_keys(config: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``config`` (a dict, changed in place) without the dotted ``keys``."""
    for key in keys:
        *parents, last = key.split(".")
        node = config
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return config


def _search_key(base: dict[str, Any], direction: str, train: Any, valid: Any) -> str:
    """What a resumed search must share with the one it continues: the config it samples from
    (its ``tune`` section included, :data:`PLACE_KEYS` and :data:`TRIALS_KEY` aside), the direction
    of its metric and the content of its training and validation manifests."""
    config = _drop_keys(copy.deepcopy(base), (*PLACE_KEYS, TRIALS_KEY))
    data = {name: manifest_key(source) for name, source in (("train", train), ("valid", valid))}
    return json.dumps({"config": config, "direction": direction, "data": data}, sort_keys=True, default=str)


def _recorded_key(recorded: Any) -> Any:
    """The :func:`_search_key` a journal recorded, as this version writes it: one written while
    ``tune.trials`` had to stay the same on resume holds it, here dropped. As it is when it cannot
    be read (none recorded, a journal of another form)."""
    try:
        before = json.loads(recorded)
    except (TypeError, ValueError):
        return recorded
    if not isinstance(before, dict) or not isinstance(before.get("config"), dict):
        return recorded
    _drop_keys(before["config"], (TRIALS_KEY,))
    return json.dumps(before, sort_keys=True, default=str)


def _search_differences(recorded: Any, key: str) -> list[str]:
    """What differs between the search a journal recorded (its :func:`_search_key`) and the one
    ``key`` describes, in words: the config keys with their old and new values (as ``train
    --resume`` names them), the direction of the metric, the manifests whose content differs.
    Empty when the recorded key cannot be read (a journal of another form)."""
    try:
        before = json.loads(recorded)
    except (TypeError, ValueError):  # none recorded, or not JSON: the caller says what may differ
        return []
    if not isinstance(before, dict) or not all(isinstance(before.get(k), dict) for k in ("config", "data")):
        return []
    now = json.loads(key)
    said = []
    saved, given = flatten(before["config"]), flatten(now["config"])
    changed = changed_keys(saved, given)
    if changed:
        said.append(f"another config ({said_changes(saved, given, changed)})")
    if before.get("direction") != now["direction"]:
        said.append(f"its metric {before.get('direction')}d, not {now['direction']}d")
    for split, verb in (("train", "trained"), ("valid", "validated")):
        old, new = before["data"].get(split), now["data"][split]
        if old == new:
            continue
        if split == "valid" and (old is None or new is None):
            said.append("its validation rows held out of --train (no --valid)" if old is None else
                        "a --valid manifest (now left out: rows held out of --train)")
        else:
            said.append(f"another --{split} (the search {verb} on a manifest of other content)")
    return said


def _open_study(out: Path, key: str, direction: str, seed: int, pruner: Any, *, resume: bool) -> Any:
    """The Optuna study recorded in ``out``'s journal: a new one, or (``resume``) the one there,
    checked to be this config's search, its trials left running by an interruption marked failed.
    The TPE sampler is seeded with ``seed`` plus the trials recorded, so a resumed search does not
    draw its first trials' values again."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out / JOURNAL_FILE)))
    if not resume:
        study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction=direction,
                                    sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
        study.set_user_attr("search", key)
        return study
    recorded = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage, pruner=pruner,
                              sampler=optuna.samplers.TPESampler(seed=seed + len(recorded.trials)))
    started = _recorded_key(study.user_attrs.get("search"))
    if started != key:
        differences = _search_differences(started, key)
        said = ("; ".join(differences) if differences else
                "another config, its metric optimised the other way, or other data (--train / --valid)")
        raise RunFolderError(f"--resume: the search in {out} started with {said}; resume it with the config, --set "
                             f"values and manifests it started with (a resume may change {TRIALS_KEY}, as --trials "
                             f"does, and where trials train: {', '.join(PLACE_KEYS)}), or give --overwrite to start a "
                             "new search (or another --out)")
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)  # the interrupted one
    return study


def _trial_row(trial: Any) -> dict[str, Any]:
    """A trial as a row of the results table; a failed one's ``note`` says why (:data:`FAILURES`), or
    that it was stopped and does not count."""
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
    row = {"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value, "seconds": seconds,
           **{k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in trial.user_attrs["values"].items()}}
    if trial.state.name == "FAIL":
        failure = trial.user_attrs.get(FAILED)
        row["note"] = ("stopped (an interruption or an error): not counted" if failure is None
                       else FAILURES.get(failure, failure))
    return row


def run_search(config_path: str | Path, train: Any, valid: Any, out: str | Path, trials: int | None = None,
               on_trial: Callable[[dict[str, Any]], None] | None = None, *, overwrite: bool = False,
               resume: bool = False, overrides: dict[str, Any] | None = None) -> pd.DataFrame:
    """Search the config's ``tune.space``; return (and write) the trials table.

    Args:
        trials: trials in all (default ``tune.trials``); a resumed search's finished trials count
            (completed, pruned, and failed on a metric that is not a number).
        overrides: dotted config keys set before the search (``--set``; see
            :mod:`polymodal.config.overrides`).
        overwrite: replace an earlier search's results in ``out`` (:data:`TUNE_FILES`); without
            it (or ``resume``), such a folder is refused before any trial trains.
        resume: continue the search recorded in ``out`` (same config and overrides; ``tune.trials``
            and :data:`PLACE_KEYS` may change).

    Raises:
        ConfigError: the config has no ``tune`` section, a value the space may draw does not fit
            (:func:`check_search`, before anything is written), values drawn together do not fit
            (named by their ``tune.space`` keys), or no trial completed (each was pruned, or failed
            on a metric that is not a number: the message says which, and what to change).
        OptionError: ``trials`` below 1.
        RunFolderError: see :func:`check_tune_out`; ``resume`` of another config's search, or of
            one that already ran ``trials``.
    """
    if trials is not None and trials < 1:
        raise OptionError([f"--trials: at least 1; got {trials}"])
    config = load_config(config_path, overrides=overrides, check_files=True)
    searched = () if config.tune is None else config.tune.space
    if world_size(config.train) > 1 or "train.devices" in searched or "train.num_nodes" in searched:
        raise ConfigError([f"train.devices: {config.train.devices} (x num_nodes {config.train.num_nodes}): the trials "
                           "of a search run one after another in this process; search on one device, then train the "
                           "best config (best_config.yaml) with several"])  # the file or a --set: not blamed on either
    # every value the search may try, before anything is written (a journal of a search whose
    # space fails is one --resume cannot continue) and before any training starts
    monitor, direction = check_search(config, str(config_path))
    base = config_to_dict(config)
    tune = config.tune
    out = Path(out)
    check_tune_out(out, overwrite=overwrite, resume=resume)

    def busy(held: Path) -> RunFolderError:
        return RunFolderError(f"{out} is being searched into by another tune (it holds {held}); wait for it to end, "
                              "or give another --out")

    def blame(err: ConfigError, number: int, values: dict[str, Any], *, drawn_only: bool = False) -> NoReturn:
        """Raise a problem a trial found (more blocks to freeze than the encoder has) named by the
        ``tune.space`` keys whose drawn values caused it, else by the ``--set`` value or the file;
        ``drawn_only``: the drawn values are its only cause (the config they were applied to
        passed), so one naming no key of the space is blamed on all of them."""
        drawn = []
        for problem in err.problems:
            keys = _space_keys(problem, values) or (list(values) if drawn_only else [])
            drawn.append(f"{', '.join(f'tune.space.{k}' for k in keys)}: trial {number} drew "
                         f"{', '.join(repr(values[k]) for k in keys)}: {problem}" if keys else problem)
        with naming_overrides(overrides, str(config_path)):
            raise ConfigError(drawn, source=str(config_path))

    with exclusive_lock(out, busy):
        return _search(out, base, tune, monitor, direction, train, valid, trials, on_trial, resume=resume,
                       blame=blame)


def _space_keys(problem: str, values: dict[str, Any]) -> list[str]:
    """The ``tune.space`` key (of ``values``) at or above the key path ``problem`` names, else
    those below it (``fusion: dim (20) must be divisible by heads (6)`` for ``fusion.dim`` and
    ``fusion.heads``); none when it names a key no drawn value touches."""
    where = problem.partition(":")[0].strip()
    above = [key for key in values if where == key or where.startswith(key + ".")]
    return above[:1] or [key for key in values if key.startswith(where + ".")]


def check_search(config: Config, source: str | None = None) -> tuple[str, str]:
    """Check a config's ``tune`` section as ``polymodal tune`` does before it writes anything: its
    metric (:func:`_metric`) and its space (:func:`check_space`).

    Returns:
        The metric optimised and its direction (``maximize`` / ``minimize``).

    Raises:
        ConfigError: the metric is not one of the task's, or a value the space may draw does not fit.
    """
    if config.tune is None:
        raise ConfigError(["tune: the config has no 'tune' section (space, trials...) to search"], source=source)
    metric = _metric(config)
    check_space(config_to_dict(config), config.tune.space, source)
    return metric


def _inside(param: RangeParam) -> float:
    """A value a float range may draw that is no whole number (a key taking whole numbers accepts
    both ends of ``{low: 16, high: 64.0}``, and refuses what a trial draws between them): the
    first step above ``low``, else one halfway (on the range's scale), moved to the half above the
    whole number below it when that is inside."""
    low, high = float(param.low), float(param.high)
    if param.step is not None:
        return low + float(param.step)
    middle = math.sqrt(low * high) if param.log else (low + high) / 2
    half = math.floor(middle) + 0.5
    return half if low < half < high else float(f"{middle:.4g}")


def _range_problems(base: dict[str, Any], key: str, param: RangeParam) -> list[str]:
    """A float range's value between its ends that the config refuses (its ends fit): a whole-number
    key given a float bound is told to give whole bounds."""
    value = _inside(param)
    try:
        trial_config(base, {key: value})
    except ConfigError as err:
        problems = "; ".join(err.problems)
        try:
            trial_config(base, {key: round(value)})
        except ConfigError:
            return [f"tune.space.{key}: a value inside the range, {value!r}, does not fit the config: {problems}"]
        bounds = ", ".join(f"{end}: {round(getattr(param, end))}" for end in ("low", "high"))
        return [f"tune.space.{key}: {key} takes whole numbers, but low {param.low!r} and high {param.high!r} make a "
                f"float range (a trial may draw {value!r}: {problems}); give both bounds as whole numbers "
                f"({bounds}) to draw integers"]
    return []


def check_space(base: dict[str, Any], space: dict[str, Any], source: str | None = None) -> None:
    """Refuse a search space that leads anywhere invalid, before any trial trains: each key with
    every one of its choices, or a range's two ends and, for a float range, a value between them
    (a trial fails on its own value otherwise, after the trials before it trained).

    Raises:
        ConfigError: every value that does not fit, by ``tune.space`` key.
    """
    problems = []
    for key, param in space.items():
        tried = ([("choice", c) for c in param.choices] if isinstance(param, ChoiceParam)
                 else [("low", param.low), ("high", param.high)])
        found: dict[str, list[str]] = {}  # a problem -> the values that meet it (an unknown key: every one)
        for what, value in tried:
            try:
                trial_config(base, {key: value})
            except ConfigError as err:
                for problem in err.problems:
                    found.setdefault(problem, []).append(f"{what} {value!r}")
        problems += [p if p.startswith("tune.space.")  # the key itself leads nowhere
                     else f"tune.space.{key}: {' and '.join(values)} do{'es' if len(values) == 1 else ''} not fit the "
                          f"config: {p}" for p, values in found.items()]
        if not found and isinstance(param, RangeParam) and not param.integer:
            problems += _range_problems(base, key, param)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)), source=source)


def _search(out: Path, base: dict[str, Any], tune: Any, monitor: str, direction: str, train: Any, valid: Any,
            trials: int | None, on_trial: Callable[[dict[str, Any]], None] | None, *, resume: bool,
            blame: Callable[..., NoReturn]) -> pd.DataFrame:
    """:func:`run_search` once its inputs are checked and ``out`` is locked (``blame``: raises a
    config problem a trial's fit found, labelled with where it came from)."""
    import optuna

    from polymodal.predictor import MultimodalPredictor

    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        for name in TUNE_FILES:  # an earlier search's (--overwrite): none of them may outlive this one
            (out / name).unlink(missing_ok=True)
    # errors only: a failed trial's error (a Ctrl-C) is reported once, by the command, not with
    # Optuna's traceback of it first
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=tune.warmup_epochs)
              if tune.pruner == "median" else optuna.pruners.NopPruner())
    study = _open_study(out, _search_key(base, direction, train, valid), direction, tune.seed, pruner, resume=resume)
    total = tune.trials if trials is None else trials
    done = sum(_counts(t) for t in study.get_trials(deepcopy=False))
    if done >= total:
        raise RunFolderError(f"--resume: the search in {out} already ran {done} trial(s) (--trials {total}); nothing "
                             "to resume: give --trials with more to run more")

    def objective(trial: optuna.Trial) -> float:
        values = {key: _suggest(trial, key, param) for key, param in tune.space.items()}
        trial.set_user_attr("values", values)
        try:  # the space's keys were checked one at a time: drawn together they may still not fit
            config = trial_config(base, values)
        except ConfigError as err:
            blame(err, trial.number, values, drawn_only=True)
        predictor = MultimodalPredictor.from_config(config)  # task anomaly: a detector
        predictor.config.train.progress = False
        try:
            predictor.fit(train, valid, callbacks=[pruning_callback(trial, monitor)])
        except ConfigError as err:
            if err.source is not None:  # another file's (a teacher run's config): as it is
                raise
            blame(err, trial.number, values)
        score = _score(predictor, monitor)
        if math.isnan(score):  # failed, yet run to its end: it counts towards --trials
            trial.set_user_attr(FAILED, _failure(predictor))
        return score

    def table() -> pd.DataFrame:  # every trial the journal holds, this run's and those before a resume
        return pd.DataFrame([_trial_row(t) for t in study.get_trials(deepcopy=False)
                             if t.state != optuna.trial.TrialState.RUNNING and "values" in t.user_attrs])

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        frame = table()
        atomic_write(out / "trials.csv", lambda tmp: frame.to_csv(tmp, index=False))
        if on_trial is not None:
            on_trial(_trial_row(trial))

    started = time.perf_counter()
    study.optimize(objective, n_trials=total - done, callbacks=[record], catch=())
    counted = [t for t in study.trials if _counts(t)]
    completed = [t for t in counted if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        raise ConfigError([_none_completed(counted, out / "trials.csv", monitor, base, list(tune.space))])
    best = study.best_trial
    best_config = trial_config(base, best.user_attrs["values"])
    atomic_write_text(out / "best_config.yaml", yaml.safe_dump(config_to_dict(best_config), sort_keys=False))
    atomic_write_json(out / "summary.json", {
        "metric": f"val_{monitor}", "direction": direction, "best_value": best.value, "best_trial": best.number,
        "best_values": best.user_attrs["values"], "trials": len(study.trials), "completed": len(completed),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in counted),
        "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in counted),  # ran, metric not a number
        "stopped": len(study.trials) - len(counted),  # an interruption or an error: not counted
        "seconds": time.perf_counter() - started,
    })
    return table()


def _none_completed(trials: list[Any], table: Path, monitor: str, base: dict[str, Any], space: list[str]) -> str:
    """What ended a search none of whose counted ``trials`` completed, and what to change: pruned
    trials ask for later pruning, diverged ones (:data:`FAILED`) for a lower learning rate (the
    values of ``tune.space.train.lr`` they drew, when it is searched), an undefined metric for
    another one."""
    kinds = {"pruned": [t for t in trials if t.state.name == "PRUNED"],
             **{kind: [t for t in trials if t.user_attrs.get(FAILED) == kind] for kind in FAILURES}}
    said = {"pruned": "pruned", "diverged": "diverged (val_loss is not a number)",
            "undefined": f"failed: val_{monitor} is undefined on the validation rows (val_loss is a number)"}
    remedies = {"pruned": "run more trials, prune later (tune.warmup_epochs) or not at all (tune.pruner: none)",
                "diverged": _lower_lr(kinds["diverged"], base, space),
                "undefined": f"optimise a metric these validation rows define (tune.metric), or validate on rows "
                             f"that define val_{monitor} (--valid; an AUROC needs both classes among them)"}
    found = [kind for kind in kinds if kinds[kind]]
    what = (f"every one {'was ' if found == ['pruned'] else ''}{said[found[0]]}" if len(found) == 1 else
            ", ".join(f"{len(kinds[kind])} {said[kind]}" for kind in found))
    return (f"tune: none of the {len(trials)} trial(s) completed ({what}; see {table}); "
            + "; ".join(remedies[kind] for kind in found))


def _lower_lr(diverged: list[Any], base: dict[str, Any], space: list[str]) -> str:
    """The remedy for ``diverged`` trials: lower learning rates in ``tune.space.train.lr`` (naming
    those they drew) or, when it is not searched, the config's ``train.lr``; clipped gradients
    where the config turns them off."""
    if "train.lr" in space:
        drawn = sorted({t.user_attrs["values"]["train.lr"] for t in diverged})
        lower = (f"lower the learning rates tune.space.train.lr draws (the diverged trials drew "
                 f"{', '.join(f'{v:.3g}' for v in drawn[:5])}{', ...' if len(drawn) > 5 else ''})")
    else:
        lower = f"lower the learning rate (train.lr: {base['train']['lr']:.3g}, or search it in tune.space)"
    if base["train"].get("grad_clip") is None and "train.grad_clip" not in space:
        lower += ", or clip gradients (train.grad_clip)"
    return lower
