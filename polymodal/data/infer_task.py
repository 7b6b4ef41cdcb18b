"""The task a manifest's target column(s) ask for, for ``polymodal config init``
(:mod:`polymodal.data.infer_config`): inferred from the targets' values (:func:`inferred_task`: text
labels, or few whole numbers lying close together as class codes do, are classes; other numbers a
regression; one value, or no target, an anomaly detector; several targets: :func:`planned_tasks`,
0/1 columns multilabel, numbers one regression, targets of different kinds a task each, the first
the main one and the others under ``tasks:``) or asked for (``--task``: :func:`chosen_task`,
checked against the targets); an anomaly target's normal value(s) (:func:`normal_labels`), two
classes uneven enough to get a chosen decision threshold (:func:`uneven_classes`), what training
will refuse or struggle with in a target column (:func:`label_caveats`), and what looks like a
mistake (:func:`task_warnings`: a 0/1 label regressed; text labels that look like several labels
joined by a separator, :func:`joined_labels`).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pandas as pd

from polymodal.config.tasks import MAIN_TASK
from polymodal.data.cells import is_empty
from polymodal.data.infer_leaks import MAX_CATEGORIES
from polymodal.data.manifest import Manifest
from polymodal.errors import ManifestError, OptionError, option
from polymodal.utils.io import python_scalar

CODE_SPAN = 2  # whole-number class codes cover at most this many times as many values as they hold (0-3, 1-10)
TASK_CHOICES = ("classification", "regression", "multilabel", "anomaly")  # what --task can ask for
UNEVEN_SHARE = 0.4  # two classes with the rarer below this share of the rows get decision.threshold: auto
LABEL, CLASSES, NUMBERS = "0/1 labels", "classes", "numbers"  # the kinds of one of several targets
Plan = list[tuple[list[str], str, str]]  # (target columns, task, why) per task, the main task first


def asked(task: str | None = None) -> str:
    """How a message names the task asked for: ``--task regression`` on the command line,
    ``task='regression'`` in Python (``infer_config``); the option itself without ``task``."""
    return option("--task" + (f" {task}" if task else ""), "task=" + (repr(task) if task else ""))


def label_caveats(manifest: Manifest, target: str, task: str, *, further: bool = False) -> str:
    """What training will refuse or struggle with in a target column, in words: empty cells (of
    the main task: a further task's rows without a label still train the others), (classification)
    classes with a single row, and (multilabel, regression) one value in every row."""
    values = manifest.column(target)
    empty = int(values.map(is_empty).sum())
    said = ("" if not empty else
            f"; {empty} row(s) without one, which train the other tasks and not this one" if further else
            f"; {empty} row(s) without one, which train refuses: drop them (or give them as transfer.unlabeled)")
    if task == "classification":
        counts = values[~values.map(is_empty)].map(str).value_counts()
        single = counts.index[counts == 1].tolist()
        if single:
            shown = ", ".join(repr(c) for c in single[:5]) + (", ..." if len(single) > 5 else "")
            said += (f"; {len(single)} class(es) with a single row ({shown}): too few to learn, or to score once "
                     "split off for validation")
    distinct = values[~values.map(is_empty)].unique()
    if task in ("multilabel", "regression") and len(distinct) == 1:
        undefined = "AUROC" if task == "multilabel" else "R2"
        said += (f"; one value ({python_scalar(distinct[0])!r}) in every row: the model learns only to repeat it, "
                 f"and its {undefined} is undefined")
    return said


def inferred_task(manifest: Manifest, targets: list[str]) -> tuple[str, str]:
    """The task no target or one target asks for, and why (several: :func:`planned_tasks`).

    Raises:
        ManifestError: text labels nearly unique to their rows (numbers written as text, such as
            '$123,000', are no classes).
    """
    if not targets:
        return "anomaly", "no target: an anomaly detector learns what the rows look like"
    values = manifest.column(targets[0]).dropna()
    if values.nunique() == 1:
        return "anomaly", (f"one value ({python_scalar(values.iloc[0])!r}) in every row: the rows are normal, "
                           "an anomaly detector learns them (anomaly.normal)")
    number, distinct, rows = pd.to_numeric(values, errors="coerce"), values.nunique(), len(values)
    if not number.notna().all():
        if distinct * 2 > rows:
            joined = joined_labels(manifest, targets[0])
            raise ManifestError([f"target column '{targets[0]}' holds {distinct} distinct text values in {rows} rows: "
                                 "class labels repeat; numbers written as text ('$123,000') need cleaning to be a "
                                 "regression target" + (f"; {'; '.join(joined)}" if joined else "")],
                                source=manifest.name)
        return "classification", f"{distinct} text label(s)"
    if not bool((number == number.round()).all()):
        return "regression", "numbers"
    low, high = int(number.min()), int(number.max())
    if distinct * 2 > rows or distinct > MAX_CATEGORIES:
        return "regression", (f"{distinct} whole numbers in {rows} rows, too many to be classes ({asked('classification')} "
                              "for classes)")
    if distinct > 2 and high - low + 1 > CODE_SPAN * distinct:
        return "regression", (f"{distinct} whole numbers spread over {low}-{high}: a measurement, as class codes lie "
                              f"close together ({asked('classification')} for classes)")
    return "classification", (f"{distinct} whole-number labels ({low}-{high}), each on several rows: classes "
                               f"({asked('regression')} for a number)")


def planned_tasks(manifest: Manifest, targets: list[str], task: str | None = None) -> Plan:
    """The task(s) of the targets, each with its target columns and why, the main task first:
    ``task`` (``--task``) for them all, checked against them (:func:`chosen_task`); else
    inferred: no target's or one target's (:func:`inferred_task`); several 0/1 columns,
    multilabel; several columns of numbers (no 0/1 label or class codes among them), one
    regression; several of different kinds (a 0/1 label or classes beside numbers, or several
    class columns), a task per target, each the one it would be alone: the first the main task,
    the others further ones (``tasks:``). One regression of them all would fit a 0/1 label or
    class codes by squared error, as quantities.

    Raises:
        ManifestError, OptionError: see :func:`~polymodal.data.infer_config.infer_config`.
    """
    if task is not None:
        return [(targets, *chosen_task(manifest, targets, task))]
    if len(targets) < 2:
        return [(targets, *inferred_task(manifest, targets))]
    alone = {t: _alone(manifest, t) for t in targets}
    if all(kind == LABEL for kind, _, _ in alone.values()):
        return [(targets, "multilabel", "several 0/1 columns")]
    if all(kind == NUMBERS for kind, _, _ in alone.values()):
        return [(targets, "regression", "several columns of numbers (none a 0/1 label or class codes)")]
    return [([t], each, why) for t, (_, each, why) in alone.items()]


def _alone(manifest: Manifest, target: str) -> tuple[str, str, str]:
    """(kind, task, why) of one of several targets, judged alone: a :data:`LABEL` (0 and 1),
    :data:`CLASSES` (text labels, class codes) or :data:`NUMBERS`; one value in every row is a
    number's (the target line says it has nothing to learn), and refused as text."""
    values = manifest.column(target).dropna()
    numbers = pd.to_numeric(values, errors="coerce")
    task, why = inferred_task(manifest, [target])
    if task == "anomaly" and not numbers.notna().all():
        raise ManifestError([f"target column '{target}' holds one value ({python_scalar(values.iloc[0])!r}) in every "
                             "row: as one of several targets it has nothing to learn; leave it out of the targets"],
                            source=manifest.name)
    if task == "anomaly":  # one number: nothing to learn, as the target's line says; no class of one value
        task, why = "regression", "numbers"
    if numbers.notna().all() and set(numbers.unique()) <= {0, 1}:
        return LABEL, task, why
    return (CLASSES if task == "classification" else NUMBERS), task, why


def further_tasks(plan: Plan) -> dict[str, dict[str, Any]]:
    """The config's ``tasks:`` section for a plan's further tasks (all but the first), each named
    for its target column (an identifier: ``tasks.value``)."""
    named: dict[str, dict[str, Any]] = {}
    for targets, task, _ in plan[1:]:
        named[free_name(targets[0], {MAIN_TASK: None, **named})] = {
            "task": task, "target": targets[0] if len(targets) == 1 else targets}
    return named


def target_lines(manifest: Manifest, plan: Plan) -> list[tuple[str, str, str]]:
    """The table's line of each target column (its task, why, and what training will refuse or
    struggle with in it) and, with further tasks, a ``(tasks)`` line that says why."""
    names = list(further_tasks(plan))
    lines = [(t, f"target ({task})" if i == 0 else f"target ({task}, tasks.{names[i - 1]})",
              why + label_caveats(manifest, t, task, further=i > 0)
              + (f"; {joined[0]}" if task == "classification" and (joined := joined_labels(manifest, t)) else ""))
             for i, (targets, task, why) in enumerate(plan) for t in targets]
    if len(plan) > 1:
        kinds: dict[str, list[str]] = {}
        for targets, _, _ in plan:
            kinds.setdefault(_alone(manifest, targets[0])[0], []).append(repr(targets[0]))
        said = "; ".join(f"{kind}: {', '.join(columns)}" for kind, columns in kinds.items())
        lines.append(("(tasks)", ", ".join(f"{name}: {task}" for name, (_, task, _) in zip(names, plan[1:], strict=True)),
                      f"the targets are of different kinds ({said}), which no one task learns together (a regression "
                      "would fit 0/1 labels and class codes as numbers, by squared error): a multi-task config, the first "
                      f"target '{plan[0][0][0]}' its main task (early stopping and the model kept follow it), each "
                      "other target a task of its own under tasks:, with its own head and loss (list another target "
                      "first to make it the main one)"))
    return lines


def task_warnings(manifest: Manifest, plan: Plan) -> list[str]:
    """What looks like a mistake in the targets' tasks: a 0/1 label regressed (``--task
    regression``), text labels that look like several labels joined by a separator, classified."""
    warnings = []
    several = sum(len(targets) for targets, _, _ in plan) > 1
    for targets, task, _ in plan:
        for target in targets:
            values = pd.to_numeric(manifest.column(target).dropna(), errors="coerce")
            if task == "regression" and values.notna().all() and set(values.unique()) == {0, 1}:
                warnings.append(f"target column '{target}' holds only 0 and 1, a label, but is a regression target "
                                f"({asked('regression')}): it is fit as a number, by squared error, not as a label; "
                                f"{option('leave --task out', 'give task=None')} to learn it as "
                                f"{'a class' if several else 'classes'}")
            joined = joined_labels(manifest, target) if task == "classification" else None
            if joined is not None:
                warnings.append(f"target column '{target}' is a classifier's, each combination of labels a class "
                                f"of its own, but {joined[0]}; {joined[1]}")
    return warnings


SEPARATORS = (";", "|", ",")  # what joins several labels in one cell, in the order tried
DIGIT_COMMA = re.compile(r"\d,\d")  # a number's comma (1,000), which no label list holds


def joined_labels(manifest: Manifest, target: str) -> tuple[str, str] | None:
    """(what it looks like, how to make a multilabel target of it: a line of pandas) where a text
    column's cells look like several labels joined by a separator (``even;round``, ``even``); else
    None.

    A separator of :data:`SEPARATORS` looks so where it is in 2 distinct values or more, on 10%
    of the labelled rows or more, and 90% of the rows or more split into known labels only (each
    in 2 rows or more), at most :data:`MAX_CATEGORIES` of them and no more than the distinct
    values (the combinations of a few labels). A comma between digits (``1,000-2,000``) is a
    number's: no comma then joins labels. Where spaces surround a separator (``even ; round``),
    the line of pandas removes them first, as ``str.get_dummies`` keeps them in the labels; it reads
    blank text cells as missing, which ``str.get_dummies`` would make a label ``''`` of."""
    column = manifest.column(target)
    cells = [v for v in column if isinstance(v, str) and not is_empty(v)]
    text = [v.strip() for v in cells]
    for sep in SEPARATORS:
        if sep == "," and any(DIGIT_COMMA.search(t) for t in text):
            continue
        raw = [t.split(sep) for t in cells]
        split = [[p.strip() for p in parts if p.strip()] for parts in raw]
        joined = [tuple(parts) for parts in split if len(parts) > 1]
        if len(set(joined)) < 2 or len(joined) < 0.1 * len(text):
            continue
        rows = Counter(p for parts in split for p in set(parts))  # the rows each label is in
        labels = sorted(p for p, n in rows.items() if n >= 2)
        known = sum(all(rows[p] >= 2 for p in parts) for parts in split)
        if len(labels) > MAX_CATEGORIES or len(labels) > len(set(text)) or known < 0.9 * len(text):
            continue
        shown = ", ".join(repr(p) for p in labels[:5]) + (", ..." if len(labels) > 5 else "")
        more = " ..." if len(labels) > 3 else ""
        named = [f"{target}_{p}" for p in labels[:3]]
        columns = option(" ".join(f"--target {n}" for n in named) + more, f"target=[{', '.join(map(repr, named))}{more}]")
        spaced = any(p != p.strip() for parts in raw for p in parts)  # 'even ; round': get_dummies keeps spaces
        tidy = rf".str.replace(r'\s*{re.escape(sep)}\s*', {sep!r}, regex=True).str.strip()" if spaced else ""
        source = f"df[{target!r}]"
        if any(isinstance(v, str) and not v.strip() for v in column):  # '' -> missing: no label
            source = f"{source}.where({source}.str.strip() != '')"
        return (f"its values look like several labels joined by {sep!r} ({len(labels)} labels: {shown}): several "
                "labels a row are a multilabel task, which needs one 0/1 column per label",
                f"pandas writes them with df = df.join({source}{tidy}.str.get_dummies(sep={sep!r})"
                f".add_prefix({target + '_'!r})), to give as the targets ({columns}; a row without a label is 0 in "
                "each)")
    return None


def normal_labels(manifest: Manifest, target: str) -> tuple[list[Any], str]:
    """An anomaly target's normal value(s) and why: those of ``anomaly.normal``'s defaults the
    column holds, else its only value, else its most frequent one (an anomaly detector's rows are
    mostly normal; the reason says it was guessed, for the user to check)."""
    from polymodal.config.anomaly import AnomalyConfig
    from polymodal.data.targets import label_key

    column = manifest.column(target)
    counts = column[~column.map(is_empty)].map(python_scalar).value_counts()
    defaults = {label_key(v) for v in AnomalyConfig().normal}
    found = [value for value in counts.index if label_key(value) in defaults]
    if found:
        normal, why = found, f"{_examples(pd.Series(found))}: anomaly.normal's default"
    elif len(counts) == 1:
        normal, why = [counts.index[0]], "the column's one value: every row is normal"
    else:
        top, share = counts.index[0], counts.iloc[0] / counts.sum()
        tied = " (tied with another: check it)" if counts.iloc[1] == counts.iloc[0] else ""
        normal, why = [top], (f"guessed: {top!r}, the most frequent label ({share:.0%} of the rows){tied}, as an "
                              f"anomaly detector's rows are mostly normal (no label is one of anomaly.normal's "
                              f"defaults {AnomalyConfig().normal})")
    others = [value for value in counts.index if value not in normal]
    why += f"; the other labels ({_examples(pd.Series(others))}) are anomalies" if others else ""
    return normal, why + ("; edit anomaly.normal if another label means normal" if why.startswith("guessed") else "")


def uneven_classes(manifest: Manifest, target: str) -> str | None:
    """``'a' (74% of the rows) and 'b' (26%)`` when the target holds two classes and the rarer one
    is under :data:`UNEVEN_SHARE` of the labelled rows, else None."""
    counts = manifest.column(target)[~manifest.column(target).map(is_empty)].map(python_scalar).value_counts()
    if len(counts) != 2 or counts.iloc[-1] / counts.sum() >= UNEVEN_SHARE:
        return None
    (common, n_common), (rare, n_rare) = counts.items()
    return f"{common!r} ({n_common / counts.sum():.0%} of the rows) and {rare!r} ({n_rare / counts.sum():.0%})"


def chosen_task(manifest: Manifest, targets: list[str], task: str) -> tuple[str, str]:
    """``task`` (``--task``), checked against the targets, and why (with the task inferred, where
    it differs).

    Raises:
        OptionError: see :func:`~polymodal.data.infer_config.infer_config`.
    """
    if task not in TASK_CHOICES:
        raise OptionError([f"{asked()}: one of {', '.join(TASK_CHOICES)}; got '{task}'"])
    if task == "anomaly":  # with a target: its anomaly labels, normal value(s) read by normal_labels
        if len(targets) > 1:
            raise OptionError([f"{asked('anomaly')}: takes at most one target column, the anomaly labels; got {targets}"])
        try:
            inferred = inferred_task(manifest, targets)[0] if targets else "anomaly"
        except ManifestError:  # near-unique text labels: no task inferred
            inferred = None
        return task, asked("anomaly") + (": its labels tell normal rows from anomalies" if targets else "") + (
            "" if inferred in (task, None) else f" (inferred: {inferred})")
    if not targets:
        raise OptionError([f"{asked(task)}: needs {option('--target COLUMN', 'target=COLUMN')} (without a target the "
                           "rows make an anomaly detector)"])
    values = {t: manifest.column(t)[~manifest.column(t).map(is_empty)] for t in targets}
    numbers = {t: pd.to_numeric(v, errors="coerce") for t, v in values.items()}
    if task == "classification":
        if len(targets) != 1:
            raise OptionError([f"{asked('classification')}: takes one target column; got {targets} (several 0/1 "
                               f"columns: {asked('multilabel')}; several numbers: {asked('regression')}; without "
                               f"{asked()}, targets of different kinds make a multi-task config)"])
        if values[targets[0]].nunique() < 2:
            raise OptionError([f"{asked('classification')}: target column '{targets[0]}' holds one value; classification "
                               "needs at least 2 classes"])
    for column in targets:
        text = values[column][numbers[column].isna()]
        if task in ("regression", "multilabel") and len(text):
            joined = joined_labels(manifest, column) if task == "multilabel" else None
            raise OptionError([f"{asked(task)}: target column '{column}' holds text ({_examples(text)}); task '{task}' "
                               f"needs {'numbers' if task == 'regression' else '0 or 1 in every row'}"
                               + (f"; {'; '.join(joined)}" if joined else "")])
        other = numbers[column][~numbers[column].isin([0, 1])]
        if task == "multilabel" and len(other):
            raise OptionError([f"{asked('multilabel')}: target column '{column}' holds values other than 0 and 1 "
                               f"({_examples(other)}); each multilabel column is one label, 0 or 1"])
    try:
        plan = planned_tasks(manifest, targets)
        inferred = plan[0][1] if len(plan) == 1 else "a task per target: " + ", ".join(
            f"{each} for '{t[0]}'" for t, each, _ in plan)
    except ManifestError:  # near-unique text labels: refused as inferred, taken when asked for
        inferred = None
    return task, f"--task {task}" + ("" if inferred in (task, None) else f" (inferred: {inferred})")


def _examples(values: pd.Series) -> str:
    """The first few distinct values of ``values``, quoted."""
    distinct = list(dict.fromkeys(python_scalar(v) for v in values))
    return ", ".join(repr(v) for v in distinct[:3]) + (", ..." if len(distinct) > 3 else "")


def free_name(base: str, taken: dict[str, Any]) -> str:
    """A name (an identifier) from a column name, not yet taken: a modality's, a further task's."""
    name = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "_") else "_" for ch in base.strip()) or "m"
    name = f"m_{name}" if name[0].isdigit() else name
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate
