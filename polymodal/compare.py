"""A look across finished runs (AutoGluon's leaderboard): :func:`compare_runs`, one row per run
folder, best first. Only each run's config and results files are read, never its weights.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from polymodal.config import Config
from polymodal.config.decision import DECIDED_TASKS
from polymodal.config.task_metrics import TASK_METRICS, direction, headline, per_target_name, split_metric
from polymodal.decision import CALL_METRICS, IN_SAMPLE
from polymodal.errors import ConfigError, OptionError, RunFolderError, RunNotFoundError, option
from polymodal.metrics.tasks import flat_metrics
from polymodal.run_files import CONFIG_FILE
from polymodal.runfolder import check_run, read_config, read_results, reading
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.warn import warn_user

EVALUATE_ONE = ("'polymodal evaluate RUN --data FILE'", "MultimodalPredictor.load(RUN).evaluate(FILE)")  # per run
COMPARED = {"anomaly": ("auroc", "auprc", "fpr@95tpr")}  # beside the task's monitors (loss aside); the first ranks


def _ranking_column(frame: pd.DataFrame, by: str, split: str) -> str:
    """The metric column ``by`` names (``auroc`` or ``valid_auroc``), or an error listing them."""
    metrics = [c for c in frame.columns if c.startswith(f"{split}_")]
    column = by if by in metrics else f"{split}_{by}"
    if column not in metrics:
        hint = did_you_mean(by, [m.split("_", 1)[1] for m in metrics])
        raise OptionError([f"{option('--by')}: the runs' {split} metrics are {', '.join(m.split('_', 1)[1] for m in metrics) or 'none'}; "
                           f"got '{by}'{hint}"])
    return column


def _scored_rows(config: Config, results: Any, split: str) -> tuple[tuple, str]:
    """What a run's ``split`` metrics were computed on, as a key equal for the same rows (the
    manifest's content, the rows scored; ``valid`` held out of the training manifest: that
    manifest, the fraction and the seed), and in words."""
    info, rows = results.info, results.metrics.get(split, {}).get("rows")
    counted = f"{rows} rows" if rows is not None else "rows"
    if info.get(f"{split}_manifest_key") is not None:
        return ("file", info[f"{split}_manifest_key"], rows), f"{counted} of {info.get(f'{split}_manifest')}"
    if split == "valid" and info.get("train_manifest_key") is not None:
        fraction, seed = config.train.val_fraction, config.train.seed
        return (("held out", info["train_manifest_key"], fraction, seed, rows),
                f"{counted} held out of {info.get('train_manifest')} (val_fraction {fraction}, seed {seed})")
    return ("unrecorded", rows), f"{counted} of a DataFrame"  # no path to tell it by


def _per_target_scores(config: Config, scores: Mapping[str, Any]) -> dict[str, Any]:
    """A regression run's figures of each target by flat name (``rmse_per_target.rpm``): a run of
    one target's are its ``mae``, ``rmse`` and ``r2``; none for other tasks."""
    each = TASK_METRICS[config.task].per_target
    if len(config.targets) == 1:
        return {per_target_name(m, config.targets[0]): scores.get(m) for m in each}
    return {k: v for k, v in flat_metrics(scores).items() if split_metric(k)[0] in each and split_metric(k)[1]}


def _threshold_chosen_on_valid(config: Config, results: Any) -> bool:
    """Whether a run's decision threshold was chosen on its validation rows (``decision:
    {threshold: auto}``), so that the validation figures of its calls are fitted to them: the
    note its validation metrics carry (as ``evaluate`` and ``train`` print it), or its config's
    ``auto`` for a run saved before the note."""
    note = str((results.metrics.get("valid") or {}).get("note") or "")
    return IN_SAMPLE in note or (config.task in DECIDED_TASKS and config.decision.threshold == "auto")


def _warn_in_sample(chosen: list[str], ranked: str | None, runs: int) -> None:
    """Say which runs' validation figures are fitted to the rows their threshold was chosen on
    (``chosen``), and what that does to a ranking by one of those figures."""
    said = (f"{', '.join(chosen)}: the decision threshold was chosen on these validation rows (decision: {{threshold: "
            "auto}), so the valid figures of its calls (accuracy, F1) are fitted to them (optimistic, unlike test "
            "rows')")
    if ranked is not None and ranked.split("_", 1)[1] in CALL_METRICS:
        said += (f"; the ranking by {ranked} favours them over the other runs" if len(chosen) < runs else
                 f"; the ranking by {ranked} compares figures each threshold was fitted to")
        said += " ({} ranks by what no threshold sets)".format(option("--by auroc", 'by="auroc"'))
    test = option("--split test", 'split="test"')
    warn_user(said + f"; to rank on rows no threshold was chosen on: {test}, or "
              f"{option(*EVALUATE_ONE)} for each run on one manifest")


def aligned_model(align: Any) -> str:
    """A retrieval run's ``model`` cell: its alignment objective, with its positives when they are
    same-label rows (``align contrastive (label positives)``; pairs go unsaid, the default)."""
    return f"align {align.objective}" + (" (label positives)" if align.positives == "label" else "")


def _predicted(config: Config) -> tuple[str, tuple[str, ...]]:
    """What a run predicts, equal for runs whose metrics measure the same thing: its task and its
    target columns (in any order: an average over them does not depend on it)."""
    return config.task, tuple(sorted(config.targets))


def compare_runs(runs: str | os.PathLike | list[str | os.PathLike], split: str | None = None,
                 by: str | None = None) -> pd.DataFrame:
    """One row per run folder, best first, for a look across experiments (AutoGluon's leaderboard):
    its task, target column(s), modalities, model (:func:`aligned_model` for a retrieval run),
    epochs, parameters (the saved network's) and how many trained (a frozen pretrained encoder's
    are counted, not trained), training time and the metrics its ``metrics.json`` holds for
    ``split`` (``valid`` or ``test``; None: ``test`` when every run has one, else ``valid``),
    ranked by the task's headline metric when the runs predict the same target(s) (``r2`` for
    regression of several: unit-free), or by ``by`` (a metric of the table,
    ``auroc`` or ``valid_auroc``; best first by its direction). Where a regression run has several
    targets, every regression run also gets each target's own figures
    (``valid_rmse_per_target.rpm``; a run of one target: its own ``rmse``), which ``by`` may rank
    by. The column ranked by is ``frame.attrs["ranked_by"]`` (None: not one ranking; the rows of
    each task and target are then together, best first by its headline metric where
    ``frame.attrs["grouped"]``, else in the order given).
    Nothing is loaded but the config and the results files. ``runs`` is a list of run folders; a
    single path is a list of one.

    A path that holds no finished run (a folder ``runs/*`` also matched, a run still training), or
    a run that does not load (a ``config.yaml`` another polymodal version wrote, a damaged
    ``metrics.json``), is left out with a warning that says what it is (a config's first
    problem). Runs that predict different targets (another task, other target columns) are not
    ranked by default and are warned about when ``by`` ranks them by a figure that is not one
    target's own. Compared on ``valid``, the runs whose decision
    threshold was chosen on those rows (``decision: {threshold: auto}``: the figures of its calls
    are fitted to them) are named in a warning, which says when the ranking favours them; falling
    back to ``valid`` because some runs have no test metrics names those runs.

    Raises:
        RunNotFoundError: none of ``runs`` is a finished run folder that loads.
        OptionError: ``split`` is neither ``valid`` nor ``test``, or is ``test`` where no run has
            test metrics; ``by`` names no metric column of the table.
    """
    if split not in (None, "valid", "test"):
        raise OptionError([f"{option('--split')}: valid or test; got {split!r}"])
    if isinstance(runs, (str, os.PathLike)):  # one run folder, not a list of its letters
        runs = [runs]
    found, left_out = [], []
    for path in runs:
        try:
            run = check_run(path)
            with reading(run, CONFIG_FILE):
                config = read_config(run)
            found.append((str(path), config, read_results(run)))
        except ConfigError as err:  # a key another polymodal version wrote, a config edited by hand
            first, more = (err.problems or [str(err)])[0], len(err.problems) - 1
            left_out.append(f"{path}: its {CONFIG_FILE} does not load: {first}"
                            + (f" (and {more} more problem(s))" if more > 0 else ""))
        except RunFolderError as err:  # no run there (a folder runs/* also matched), or a damaged one
            left_out.append(str(err))
    if not found:
        raise RunNotFoundError("no run to compare: " + "; ".join(left_out))
    if left_out:
        warn_user("left out of the comparison: " + "; ".join(left_out))
    untested = [name for name, _, results in found if "test" not in results.metrics]
    if split is None and untested and len(untested) < len(found):
        warn_user(f"compared on valid metrics: {', '.join(untested)} {'has' if len(untested) == 1 else 'have'} no test metrics (trained without a test "
                  f"manifest; {option(*EVALUATE_ONE)} scores every run on one manifest)")
    if split == "test" and len(untested) == len(found):  # a table of no figures
        valid = option("--split valid", 'split="valid"')
        raise OptionError([f"{option('--split')}: none of the runs has test metrics ({', '.join(untested)}: trained "
                           f"without a test manifest); compare them on valid ({valid}), or score every run on one "
                           f"manifest with {option(*EVALUATE_ONE)}"])
    if split == "test" and untested:
        warn_user(f"{', '.join(untested)} {'has' if len(untested) == 1 else 'have'} no test metrics (trained without "
                  f"a test manifest): listed last, without figures; {option(*EVALUATE_ONE)} scores every run on one "
                  "manifest")
    split = split or ("valid" if untested else "test")
    several = any(config.task == "regression" and len(config.targets) > 1 for _, config, _ in found)
    rows = []
    for name, config, results in found:
        info, scores = results.info, results.metrics.get(split, {})
        metrics = [m for m in (*TASK_METRICS[config.task].monitors, *COMPARED.get(config.task, ())) if m != "loss"]
        model = (f"scorer {config.anomaly.scorer if config.anomaly else 'autoencoder'}" if config.task == "anomaly"
                 else aligned_model(config.align) if config.task == "retrieval" and config.align
                 else f"{config.fusion.name} + {config.head.name}")
        own = _per_target_scores(config, scores) if several else {}
        rows.append({"run": name, "task": config.task, "target": "+".join(config.targets) or None,
                     "modalities": "+".join(config.modalities), "model": model,
                     "epochs": info.get("epochs_run"), "best_epoch": info.get("best_epoch"),
                     "parameters": info.get("parameters"), "trainable": info.get("trainable_parameters"),
                     "train_s": None if info.get("train_seconds") is None else round(info["train_seconds"], 1),
                     **{f"{split}_{m}": scores.get(m) for m in metrics if isinstance(scores.get(m), int | float)},
                     **{f"{split}_{m}": v for m, v in own.items() if isinstance(v, int | float)}})
    frame = pd.DataFrame(rows, dtype=object)  # whole numbers stay whole beside a run that lacks one
    groups: dict[tuple, tuple[str, list[str]]] = {}
    for name, config, results in found:
        if split not in results.metrics:  # no figures to compare: said above
            continue
        key, said = _scored_rows(config, results, split)
        groups.setdefault(key, (said, []))[1].append(name)
    if len(groups) > 1:
        warn_user(f"the runs' {split} metrics come from different rows ("
                  + "; ".join(f"{', '.join(names)}: {said}" for said, names in groups.values())
                  + f"): they do not compare row for row; score them on one manifest with {option(*EVALUATE_ONE)} "
                  "(or give every fit the same validation and test manifests)")
    predicted: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for name, config, _ in found:
        predicted.setdefault(_predicted(config), []).append(name)
    grouped = False  # the rows grouped by what they predict, each group ranked
    if by is not None:
        ranked = _ranking_column(frame, by, split)
        if len(predicted) > 1 and split_metric(ranked.split("_", 1)[1])[1] is None:
            by_own = option("--by rmse_per_target.<target>", 'by="rmse_per_target.<target>"')
            warn_user(f"ranked by {ranked}, but the runs predict different targets ({_said(predicted)}): its values "
                      f"do not measure the same thing (rank by one target's own figure, e.g. {by_own}, where the runs "
                      "share the target)")
    elif len(predicted) > 1:
        ranked = None
        what = "targets" if len({task for task, _ in predicted}) == 1 else "tasks"
        warn_user(f"the runs predict different {what} ({_said(predicted)}): their {split} metrics do not "
                  "measure the same thing, so they are not ranked against each other: the runs of each task and "
                  f"target are grouped, best first by its headline metric ({option('--by METRIC', 'by=METRIC')} ranks them all anyway; "
                  "rmse_per_target.<target> by one shared target's own)")
        frame, grouped = _grouped(frame, [_predicted(config) for _, config, _ in found], split)
    else:
        ranked = _headline_column(*next(iter(predicted)), split)
    chosen = [name for name, config, results in found if _threshold_chosen_on_valid(config, results)]
    if split == "valid" and chosen:
        _warn_in_sample(chosen, ranked if ranked in frame else None, len(found))
    if ranked in frame:
        frame = frame.sort_values(ranked, ascending=direction(ranked.split("_", 1)[1]) == "min",
                                  na_position="last", kind="stable")
    frame = frame.reset_index(drop=True)
    frame.attrs["ranked_by"] = ranked if ranked in frame else None
    frame.attrs["grouped"] = grouped
    return frame


def _headline_column(task: str, targets: tuple[str, ...], split: str) -> str:
    """The column a task's runs rank by: ``valid_accuracy``, ``test_auroc``..."""
    return f"{split}_{COMPARED[task][0] if task in COMPARED else headline(task, list(targets))}"


def _grouped(frame: pd.DataFrame, predicted: list[tuple[str, tuple[str, ...]]], split: str
             ) -> tuple[pd.DataFrame, bool]:
    """``frame``'s rows (one per run, what each predicts in ``predicted``) grouped by what they
    predict, groups in the order their first run was given, each best first by its headline
    metric; and whether some group holds several runs (so that ranking within it did something)."""
    parts = []
    for key in dict.fromkeys(predicted):
        part = frame[[p == key for p in predicted]]
        column = _headline_column(*key, split)
        if column in part:
            part = part.sort_values(column, ascending=direction(column.split("_", 1)[1]) == "min",
                                    na_position="last", kind="stable")
        parts.append(part)
    return pd.concat(parts), any(len(part) > 1 for part in parts)


def _said(predicted: Mapping[tuple[str, tuple[str, ...]], list[str]]) -> str:
    """Which runs predict what, in words: ``runs/a: regression of load; runs/b: regression of load, rpm``."""
    said = []
    for (task, targets), names in predicted.items():
        said.append(f"{', '.join(names)}: {task}" + (f" of {', '.join(targets)}" if targets else ""))
    return "; ".join(said)
