"""Which columns ``polymodal config init`` (:mod:`polymodal.data.infer_config`) leaves out as giving
the target away or as bookkeeping, and which it keeps but flags: a number or category column that
is a copy of an earlier one, or that determines the target in the rows looked at, alone or with one
other column (a fault's type and size spelling out its label: :func:`copies_and_leaks`); a number
column named as a row's place in a recording or sequence (a window's start sample, a frame index:
:func:`position`); a number column whose values alone separate the classes, each class in its own
range, or whose values follow a regression target almost exactly (both kept, and flagged:
:func:`flagged_numbers`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.cells import is_empty
from polymodal.data.manifest import Manifest
from polymodal.utils.io import python_scalar

MAX_CATEGORIES = 50  # distinct values of a category column, or classes of a target, at most
MIN_TARGET_ROWS = 5  # rows each target value needs before a column can be said to determine it
MAX_PAIRED = 30  # few-valued columns checked in pairs for a leak (435 pairs)
POSITION_WORDS = ("start", "end", "begin", "stop", "onset", "offset", "index", "idx", "position", "pos", "frame",
                  "sample", "row")  # a word naming where a row sits in a recording or sequence
SEQUENCE_WORDS = ("window", "segment", "chunk", "clip", "seq", "sequence", "recording", "time", "step", "sample",
                  "frame", "row")  # what a position is in: every word of such a name is one of these or a position word
MIN_POSITIONS = 20  # distinct whole numbers a position column takes (a code named 'frame', 1-4, takes few)
# |correlation| of a number column with a regression target from which the column is flagged: a straight line on
# it (Pearson's r) accounts for 98% of the target's variance (r^2 = 0.98), or its order gives the target's order
# nearly everywhere (Spearman's, on ranks: a log or other monotone rescaling of the target). A measurement taken
# apart from the target is seldom so close to it; the target rounded, rescaled or with a little noise added is.
# Unrelated columns do not reach it by chance on the MIN_FOLLOW_ROWS rows or more it needs (t > 19 at 10 rows).
MIN_FOLLOWING = 0.99
MIN_FOLLOW_ROWS = 10


def _name_words(column: str) -> list[str]:
    """A column name's words, lower case: ``startSample``, ``start_sample``, ``Start Sample`` ->
    ``['start', 'sample']``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])|([A-Z])([A-Z][a-z])", r"\1\3 \2\4", column)
    return [word.lower() for word in re.split(r"[^0-9A-Za-z]+", spaced) if word]


def position(manifest: Manifest, column: str) -> str | None:
    """Why a number column is left out as a row's place in a recording or sequence (a window's
    offset, a frame index), or None: named by a word of :data:`POSITION_WORDS` and otherwise only
    by words of :data:`SEQUENCE_WORDS` (a name that says something else, ``sample_rate``,
    ``end_diastolic_volume``, ``bbox_start_x``, is a feature's), holding whole numbers only, :data:`MIN_POSITIONS` of them or more (in
    every row). Such a column is bookkeeping: it says where a row was cut from, not what it holds,
    and a split by position puts every test row's value outside the training range."""
    words = _name_words(column)
    named = [w for w in words if w in POSITION_WORDS]
    if not named or any(w not in POSITION_WORDS and w not in SEQUENCE_WORDS for w in words):
        return None
    values = pd.to_numeric(manifest.column(column), errors="coerce").dropna()
    distinct = values.nunique()
    if distinct < MIN_POSITIONS or not bool((values == values.round()).all()):
        return None
    return (f"{distinct:,} whole numbers named as a position ('{named[0]}'): where a row sits in a recording or "
            "sequence (a window's start sample, a frame index), bookkeeping rather than a feature, and a split by "
            "position puts the test rows' values outside the training range; add it to the table's columns if it "
            "is a feature")


LEAK = ("{} in the rows looked at: left out as a likely leak (a recording's id, the label under another name); "
        "add it to the table's columns if it is known when predicting")


def copies_and_leaks(manifest: Manifest, columns: list[str], targets: list[str], rows: np.ndarray) -> dict[str, str]:
    """Why each of ``columns`` (numbers and categories) is left out, for those that are: a copy of
    an earlier column (equal in every row looked at); a column that determines any one of the
    targets alone, or together with one other column of few values (a fault's type and size
    spelling out its label), the reason naming which. Each target is judged alone: with several
    (``digit`` beside ``value``), a column that spells out one of them gives that one away, however
    little it says of the others. Only the first :data:`MAX_PAIRED` few-valued columns are paired."""
    selected = manifest.select([*columns, *targets], rows)
    frame = selected.astype(str).where(selected.notna())  # 1 and 1.0 alike within a column; missing stays missing
    found: dict[str, str] = {}
    first_with: dict[tuple[Any, ...], str] = {}  # a column's values (missing as one marker) -> the first column
    for column in columns:
        same = first_with.setdefault(tuple(frame[column].fillna("\0missing")), column)
        if same != column:
            found[column] = (f"the same as '{same}' in every row looked at: left out (a copy adds nothing, and an "
                             "anomaly detector would learn that the two agree: a give-away where they name the "
                             "content)")
    codes = {c: pd.factorize(frame[c])[0] for c in frame.columns}  # each column's values as 0, 1, ...; missing -1
    targets = [t for t in targets if frame[t].nunique() >= 2]  # a constant target is determined by anything
    few = [c for c in columns if c not in found and 2 <= frame[c].nunique() <= MAX_CATEGORIES]  # others cannot
    alone = {c: [t for t in targets if _determines([codes[c]], codes[t])] for c in few}
    found |= {c: LEAK.format(f"it determines {_targets_named(given)}") for c, given in alone.items() if given}
    few = [c for c in few if c not in found][:MAX_PAIRED]
    partners: dict[str, dict[str, list[str]]] = {}  # column -> target -> the columns it determines it with
    for i, first in enumerate(few):
        for second in few[i + 1:]:
            for target in targets:
                if _determines([codes[first], codes[second]], codes[target]):
                    partners.setdefault(first, {}).setdefault(target, []).append(second)
                    partners.setdefault(second, {}).setdefault(target, []).append(first)
    return found | {c: LEAK.format("; ".join(f"with {' or '.join(repr(o) for o in others)} it determines "
                                             f"{_targets_named([target])}" for target, others in each.items()))
                    for c, each in partners.items()}


def _targets_named(targets: list[str]) -> str:
    """``the target 'digit'``, ``the targets 'digit' and 'even'``."""
    if len(targets) == 1:
        return f"the target '{targets[0]}'"
    named = [f"'{t}'" for t in targets]
    return f"the targets {', '.join(named[:-1])} and {named[-1]}"


def _determines(columns: list[np.ndarray], target: np.ndarray) -> bool:
    """Whether, in the rows where all are given (codes from :func:`pandas.factorize`, -1 where
    missing), ``columns`` take several values together and each combination goes with one target
    value (as an identifier of a recording, or the target under another name, would).
    Combinations seen about once prove nothing, nor do rows where a target value is rare (a column
    filled in a few rows of the majority class, a 3% class falling into combinations of its own by
    chance): each value needs :data:`MIN_TARGET_ROWS` rows there."""
    given = (target >= 0) & np.logical_and.reduce([c >= 0 for c in columns])
    labels = target[given]
    counts = np.bincount(labels)
    counts = counts[counts > 0]  # rows of each target value
    if len(counts) < 2 or counts.min() < MIN_TARGET_ROWS:
        return False
    key = np.zeros(len(labels), np.int64)
    for column in columns:  # one code per combination of the columns' values
        key = key * (int(column.max()) + 1) + column[given]
    distinct = len(np.unique(key))
    if distinct < 2 or distinct > MAX_CATEGORIES or distinct * 2 > len(labels):
        return False
    return len(np.unique(key * (int(labels.max()) + 1) + labels)) == distinct  # each combination: one target value


def class_ranges(values: pd.Series, labels: pd.Series) -> str | None:
    """``'a' 0.1-0.4, 'b' 0.6-0.9`` where a number column's ``values`` alone separate the classes of
    ``labels`` in every row: sorted by value, each class holds an interval of its own, overlapping
    no other, and each has :data:`MIN_TARGET_ROWS` rows with a value (fewer prove little); else
    None."""
    rows = pd.DataFrame({"value": pd.to_numeric(values, errors="coerce"), "label": labels}).dropna()
    spans = rows.groupby("label", sort=False)["value"].agg(["min", "max", "size"]).sort_values("min")
    if len(spans) < 2 or spans["size"].min() < MIN_TARGET_ROWS:
        return None
    if not bool((spans["max"].to_numpy()[:-1] < spans["min"].to_numpy()[1:]).all()):
        return None
    bounds = zip(spans.index, spans["min"], spans["max"], strict=True)
    shown = [f"{python_scalar(label)!r} {low:g}-{high:g}" for label, low, high in bounds]
    return ", ".join(shown[:3]) + (", ..." if len(shown) > 3 else "")


def flagged_numbers(manifest: Manifest, columns: list[str], tasks: dict[str, str], rows: np.ndarray
                    ) -> tuple[dict[str, str], list[str]]:
    """What to add to the reason of each of ``columns`` (number columns kept as features) that
    nearly gives a target away, and a warning for each: its values alone separate the classes of a
    classification target, in every row (:func:`class_ranges`), or follow a regression target
    almost exactly in the rows looked at (:func:`follows`). Either can be a legitimately strong
    feature (a threshold, a measurement that tracks the target), so the column is kept.

    Args:
        tasks: target column -> its task (the main one's and further tasks').
    """
    said: dict[str, str] = {}
    warnings = []
    named = len(tasks) > 1  # several targets: the reason names which
    for target, task in tasks.items():
        labels = _labels(manifest, target) if task == "classification" else None
        for column in columns if task in ("classification", "regression") else []:
            if labels is not None and (ranges := class_ranges(manifest.column(column), labels)) is not None:
                said[column] = said.get(column, "") + (
                    f"; its values alone separate the classes{f' of {target!r}' if named else ''}, each in its own "
                    f"range ({ranges}): kept, as a threshold can be an easy feature; check it is not derived from the "
                    "target")
                warnings.append(f"column '{column}' alone separates the classes of '{target}', each in its own range "
                                f"of values ({ranges}): it is kept as a feature; check it is not derived from the "
                                "target (a score computed from the label, a measurement taken after it) and remove it "
                                "from the table's columns if it is")
            elif labels is None and (figure := follows(manifest.take(column, rows), manifest.take(target, rows))):
                said[column] = said.get(column, "") + (
                    f"; it follows the target '{target}' almost exactly ({figure}): kept, as a strong feature can be "
                    "real; check it is not derived from the target")
                warnings.append(f"column '{column}' follows the regression target '{target}' almost exactly "
                                f"({figure}): it is kept as a feature; check it is not derived from the target (the "
                                "target rounded, rescaled or with noise added, a part of a total) and remove it from "
                                "the table's columns if it is")
    return said, warnings


def follows(values: pd.Series, target: pd.Series) -> str | None:
    r"""``Pearson r = 0.995 on 200 rows`` where a number column's ``values`` follow a regression
    ``target`` almost exactly: \|r\| at least :data:`MIN_FOLLOWING`, by Pearson's r or, failing
    that, Spearman's (the ranks'), on :data:`MIN_FOLLOW_ROWS` rows or more where both are finite
    numbers; else None."""
    pair = pd.DataFrame({"x": pd.to_numeric(values, errors="coerce"), "y": pd.to_numeric(target, errors="coerce")})
    pair = pair[np.isfinite(pair).all(axis=1)]
    if len(pair) < MIN_FOLLOW_ROWS or pair["x"].nunique() < 2 or pair["y"].nunique() < 2:
        return None
    for name, r in (("Pearson r", pair["x"].corr(pair["y"])), ("Spearman's rank r", pair["x"].rank().corr(pair["y"].rank()))):
        if abs(r) >= MIN_FOLLOWING:
            return f"{name} = {r:.4g} on {len(pair)} rows"
    return None


def _labels(manifest: Manifest, target: str) -> pd.Series:
    """A classification target's labels, an empty cell as missing (a blank text cell too)."""
    column = manifest.column(target)
    return column if pd.api.types.is_numeric_dtype(column) else column.where(~column.map(is_empty))
