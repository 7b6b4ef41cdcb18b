"""Which columns ``polymodal config init`` (:mod:`polymodal.data.infer_config`) leaves out as giving
the target away or as bookkeeping, and which it keeps but flags: a number or category column that
is a copy of an earlier one, or that determines the target in the rows looked at, alone or with one
other column (a fault's type and size spelling out its label: :func:`copies_and_leaks`); a number
column named as a row's place in a recording or sequence (a window's start sample, a frame index:
:func:`position`); a number column whose values alone separate the classes, each class in its own
range (kept, and flagged: :func:`class_ranges`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

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


LEAK = ("{} the target in the rows looked at: left out as a likely leak (a recording's id, the label under "
        "another name); add it to the table's columns if it is known when predicting")


def copies_and_leaks(manifest: Manifest, columns: list[str], targets: list[str], rows: np.ndarray) -> dict[str, str]:
    """Why each of ``columns`` (numbers and categories) is left out, for those that are: a copy of
    an earlier column (equal in every row looked at); a column that determines the target alone,
    or together with one other column of few values (a fault's type and size spelling out its
    label). Only the first :data:`MAX_PAIRED` few-valued columns are paired."""
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
    if not targets or any(frame[t].nunique() < 2 for t in targets):  # a constant target is determined by anything
        return found
    few = [c for c in columns if c not in found and 2 <= frame[c].nunique() <= MAX_CATEGORIES]  # others cannot
    found |= {c: LEAK.format("it determines") for c in few if _determines(frame, [c], targets)}
    few = [c for c in few if c not in found][:MAX_PAIRED]
    partners: dict[str, list[str]] = {}
    for i, first in enumerate(few):
        for second in few[i + 1:]:
            if _determines(frame, [first, second], targets):
                partners.setdefault(first, []).append(second)
                partners.setdefault(second, []).append(first)
    return found | {c: LEAK.format(f"with {' or '.join(repr(o) for o in others)} it determines")
                    for c, others in partners.items()}


def _determines(frame: pd.DataFrame, columns: list[str], targets: list[str]) -> bool:
    """Whether, in the rows of ``frame`` where all are given, ``columns`` take several values
    together and each combination goes with one target value (as an identifier of a recording,
    or the target under another name, would). Combinations seen about once prove nothing, nor do
    rows where a target value is rare (a column filled in a few rows of the majority class, a
    3% class falling into combinations of its own by chance): each value needs
    :data:`MIN_TARGET_ROWS` rows there."""
    rows = frame[[*columns, *targets]].dropna()
    counts = rows.value_counts(targets)
    if len(counts) < 2 or counts.min() < MIN_TARGET_ROWS:
        return False
    distinct = len(rows.drop_duplicates(columns))
    if distinct < 2 or distinct > MAX_CATEGORIES or distinct * 2 > len(rows):
        return False
    return bool((rows.groupby(columns)[targets].nunique() <= 1).all().all())


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
