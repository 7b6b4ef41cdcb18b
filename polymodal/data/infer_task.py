"""The task a manifest's target column(s) ask for, for ``polymodal config init``
(:mod:`polymodal.data.infer_config`): inferred from the targets' values (:func:`inferred_task`: text
labels, or few whole numbers lying close together as class codes do, are classes; other numbers a
regression; several 0/1 columns multilabel; one value, or no target, an anomaly detector) or asked
for (``--task``: :func:`chosen_task`, checked against the targets); an anomaly target's normal
value(s) (:func:`normal_labels`), two classes uneven enough to get a chosen decision threshold
(:func:`uneven_classes`), and what training will refuse or struggle with in a target column
(:func:`label_caveats`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from polymodal.data.cells import is_empty
from polymodal.data.infer_leaks import MAX_CATEGORIES
from polymodal.data.manifest import Manifest
from polymodal.errors import ManifestError, OptionError
from polymodal.utils.io import python_scalar

CODE_SPAN = 2  # whole-number class codes cover at most this many times as many values as they hold (0-3, 1-10)
TASK_CHOICES = ("classification", "regression", "multilabel", "anomaly")  # what --task can ask for
UNEVEN_SHARE = 0.4  # two classes with the rarer below this share of the rows get decision.threshold: auto


def label_caveats(manifest: Manifest, target: str, task: str) -> str:
    """What training will refuse or struggle with in a target column, in words: empty cells,
    (classification) classes with a single row, and (multilabel, regression) one value in every
    row."""
    values = manifest.column(target)
    empty = int(values.map(is_empty).sum())
    said = (f"; {empty} row(s) without one, which train refuses: drop them (or give them as transfer.unlabeled)"
            if empty else "")
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
    """The task the targets ask for, and why.

    Raises:
        ManifestError: text labels nearly unique to their rows (numbers written as text, such as
            '$123,000', are no classes), or several targets holding text.
    """
    if not targets:
        return "anomaly", "no target: an anomaly detector learns what the rows look like"
    values = [manifest.column(t).dropna() for t in targets]
    if len(targets) == 1 and values[0].nunique() == 1:
        return "anomaly", (f"one value ({python_scalar(values[0].iloc[0])!r}) in every row: the rows are normal, "
                           "an anomaly detector learns them (anomaly.normal)")
    numbers = [pd.to_numeric(v, errors="coerce") for v in values]
    if len(targets) > 1:
        if all(n.notna().all() and set(n.unique()) <= {0, 1} for n in numbers):
            return "multilabel", "several 0/1 columns"
        text = [t for t, n in zip(targets, numbers, strict=True) if not n.notna().all()]
        if text:
            raise ManifestError([f"target columns {text} hold text: several targets are 0/1 labels (multilabel) or "
                                 "numbers (regression); give one text target, and add the others as tasks: in the "
                                 "config"], source=manifest.name)
        return "regression", "several target columns"
    number, distinct, rows = numbers[0], values[0].nunique(), len(values[0])
    if not number.notna().all():
        if distinct * 2 > rows:
            raise ManifestError([f"target column '{targets[0]}' holds {distinct} distinct text values in {rows} rows: "
                                 "class labels repeat; numbers written as text ('$123,000') need cleaning to be a "
                                 "regression target"], source=manifest.name)
        return "classification", f"{distinct} text label(s)"
    if not bool((number == number.round()).all()):
        return "regression", "numbers"
    low, high = int(number.min()), int(number.max())
    if distinct * 2 > rows or distinct > MAX_CATEGORIES:
        return "regression", (f"{distinct} whole numbers in {rows} rows, too many to be classes (--task classification "
                              "for classes)")
    if distinct > 2 and high - low + 1 > CODE_SPAN * distinct:
        return "regression", (f"{distinct} whole numbers spread over {low}-{high}: a measurement, as class codes lie "
                              "close together (--task classification for classes)")
    return "classification", (f"{distinct} whole-number labels ({low}-{high}), each on several rows: classes "
                               "(--task regression for a number)")


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
        raise OptionError([f"--task: one of {', '.join(TASK_CHOICES)}; got '{task}'"])
    if task == "anomaly":  # with a target: its anomaly labels, normal value(s) read by normal_labels
        if len(targets) > 1:
            raise OptionError([f"--task anomaly: takes at most one target column, the anomaly labels; got {targets}"])
        try:
            inferred = inferred_task(manifest, targets)[0] if targets else "anomaly"
        except ManifestError:  # near-unique text labels: no task inferred
            inferred = None
        return task, "--task anomaly" + (": its labels tell normal rows from anomalies" if targets else "") + (
            "" if inferred in (task, None) else f" (inferred: {inferred})")
    if not targets:
        raise OptionError([f"--task {task}: needs --target COLUMN (without a target the rows make an anomaly detector)"])
    values = {t: manifest.column(t)[~manifest.column(t).map(is_empty)] for t in targets}
    numbers = {t: pd.to_numeric(v, errors="coerce") for t, v in values.items()}
    if task == "classification":
        if len(targets) != 1:
            raise OptionError([f"--task classification: takes one target column; got {targets} (several 0/1 columns: "
                               "--task multilabel; several numbers: --task regression)"])
        if values[targets[0]].nunique() < 2:
            raise OptionError([f"--task classification: target column '{targets[0]}' holds one value; classification "
                               "needs at least 2 classes"])
    for column in targets:
        text = values[column][numbers[column].isna()]
        if task in ("regression", "multilabel") and len(text):
            raise OptionError([f"--task {task}: target column '{column}' holds text ({_examples(text)}); task '{task}' "
                               f"needs {'numbers' if task == 'regression' else '0 or 1 in every row'}"])
        other = numbers[column][~numbers[column].isin([0, 1])]
        if task == "multilabel" and len(other):
            raise OptionError([f"--task multilabel: target column '{column}' holds values other than 0 and 1 "
                               f"({_examples(other)}); each multilabel column is one label, 0 or 1"])
    try:
        inferred = inferred_task(manifest, targets)[0]
    except ManifestError:  # near-unique text labels: refused as inferred, taken when asked for
        inferred = None
    return task, f"--task {task}" + ("" if inferred in (task, None) else f" (inferred: {inferred})")


def _examples(values: pd.Series) -> str:
    """The first few distinct values of ``values``, quoted."""
    distinct = list(dict.fromkeys(python_scalar(v) for v in values))
    return ", ".join(repr(v) for v in distinct[:3]) + (", ..." if len(distinct) > 3 else "")
