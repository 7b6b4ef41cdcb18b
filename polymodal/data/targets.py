"""Targets: class labels <-> indices, multilabel 0/1 columns, standardised regression values; an
anomaly detector's ``anomaly.normal`` against a target column's labels."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.cells import is_empty
from polymodal.data.manifest import Manifest
from polymodal.errors import NotFittedError, SchemaMismatchError
from polymodal.utils.io import python_scalar
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.warn import warn_user

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


_LEADING_ZERO = re.compile(r"^[+-]?0\d")  # '007', '01': codes, not numbers
_INTEGER = re.compile(r"^[+-]?\d+$")


def label_key(value: Any) -> str:
    """The form class labels are matched by, whatever type a manifest reader gave the column:
    int ``0``, float ``0.0`` (Parquet, or a CSV column pandas read as floats) and the texts
    ``'0'`` and ``'0.0'`` (the same column read as text because another row holds a word) are all
    ``'0'``; ``0.5`` and ``'0.50'`` are ``'0.5'``. Other values are their text: ``'cat'``, and
    codes with leading zeros such as ``'007'``, are never read as numbers."""
    value = python_scalar(value)
    if isinstance(value, str):
        text = value.strip()
        if not _is_number(text) or _LEADING_ZERO.match(text):
            return value
        value = int(text) if _INTEGER.match(text) else float(text)  # int: exact past 2**53
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


UNSEEN_LABEL_CODES = 2**60  # a retrieval label training never saw is coded from here up (see unseen_label_code)


def unseen_label_code(key: str) -> int:
    """The code of a retrieval label that training never saw, from its :func:`label_key`: the same
    for every row and every call holding that label (so label-level hits match it as a value),
    never a fitted class's index (those are below :data:`UNSEEN_LABEL_CODES`), and distinct for
    distinct labels (a 56-bit digest: a collision is as likely as two random 56-bit numbers
    agreeing)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=7).digest()
    return UNSEEN_LABEL_CODES + int.from_bytes(digest, "big")


def _is_number(key: str) -> bool:
    return _NUMBER.match(key.strip()) is not None


def _class_order(key: str) -> tuple:
    """Numbers first, in numeric order, then text in alphabetical order."""
    return (0, float(key), key) if _is_number(key) else (1, 0.0, key)


def distinct_labels(values: pd.Series) -> tuple[np.ndarray, list[Any], list[str]]:
    """``(codes, uniques, keys)``: each row's index into its column's distinct values (in order of
    first appearance; -1 for an empty cell), those values, and their :func:`label_key`. Labels are
    keyed once per distinct value, not per row."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    uniques = [python_scalar(u) for u in uniques]
    empty = [i for i, u in enumerate(uniques) if is_empty(u)]  # blank text (NaN is already -1)
    if empty:
        codes = np.where(np.isin(codes, empty), -1, codes)
    return codes, uniques, [label_key(u) for u in uniques]


CONTINUOUS_MIN_ROWS = 10  # fewer labelled rows are never judged a continuous target


def warn_if_continuous(manifest: Manifest, column: str) -> None:
    """Warn about a classification target that looks like a regression one (a warning, not a
    refusal: codes such as ``1.1, 1.2, 2.1`` may be classes on purpose).

    The rule: every label is a number, some label has a fractional part (``0.6169``; integer codes
    such as ``7`` never count), at least :data:`CONTINUOUS_MIN_ROWS` rows are labelled, and more
    than half of them are the only row of their class. A classification set like that cannot be
    learned or validated (a held-out row's class is, more often than not, one training never
    sees), while legitimate ones (integer or text classes, decimal classes such as shoe sizes
    that repeat, a handful of rows) never meet all four conditions. The warning names the column,
    its distinct values and rows, and suggests ``task: regression``.
    """
    if column not in manifest.columns:
        return  # validation names it
    codes, _, keys = distinct_labels(manifest.column(column))
    filled = codes[codes >= 0]
    if len(filled) < CONTINUOUS_MIN_ROWS:
        return
    used = pd.unique(filled)  # in order of first appearance
    if not all(_is_number(keys[c]) for c in used) or all(float(keys[c]).is_integer() for c in used):
        return
    rows_of = np.bincount(filled, minlength=len(keys))[used]  # per distinct value, then per label (7 and 7.0: one)
    counts = pd.Series(rows_of, index=[keys[c] for c in used]).groupby(level=0, sort=False).sum()
    singles = counts.index[counts == 1]
    if 2 * len(singles) <= len(filled):
        return
    warn_user(f"target column '{column}' of {manifest.name} holds {len(counts)} distinct values in {len(filled)} "
              f"rows ({len(singles)} of them the only row of their class, e.g. {', '.join(singles[:3])}): is it a "
              "regression target (task: regression)? A classification target needs several rows of each class, "
              "and a held-out row of a class training never saw cannot be scored")


def warn_if_constant(manifest: Manifest, task: str, column: str, key: str = "target") -> None:
    """Warn about a multilabel label column or a regression target column that holds one value in
    every row of ``manifest`` (the training rows: the model can learn nothing from it but that
    value). A multilabel label's AUROC is then undefined; a regression target's standard deviation
    is 0 (it standardises by nothing) and its R2 undefined. Empty cells (a further task's rows
    without its target) are not counted; a column without any value is left to validation.
    ``key``: the config key that lists the column (``target``, ``tasks.<name>.target``)."""
    if column not in manifest.columns:
        return  # validation names it
    values = pd.to_numeric(manifest.column(column), errors="coerce").dropna()
    distinct = values.unique()
    if len(distinct) != 1:
        return
    value = float(distinct[0])
    rows = f"{len(values)} row{'s' if len(values) > 1 else ''}"
    if task == "multilabel":
        shown = f"{value:g}"
        warn_user(f"label column '{column}' of {manifest.name} is {shown} in every one of its {rows}: its AUROC is "
                  f"undefined and the model learns only to repeat {shown}; add rows where it is "
                  f"{'0' if value else '1'}, or leave the column out of {key}")
    else:
        warn_user(f"regression target column '{column}' of {manifest.name} is {value:.6g} in every one of its {rows}: "
                  "with no spread to learn, the model learns only to repeat that value (and its R2 is undefined); add "
                  f"rows where it varies, or leave the column out of {key}")


def _warn_mixed(manifest: Manifest, column: str, codes: np.ndarray, keys: list[str]) -> None:
    """Warn when a label column mixes numbers with text (``0, 1, ..., 'seven'``): likely a typo, and
    each distinct text is its own class. Names the rows of the smaller group."""
    values = manifest.column(column)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return
    numeric = np.array([_is_number(k) for k in keys] + [False], bool)  # the last entry: empty cells (-1)
    filled = codes >= 0
    number, text = np.flatnonzero(filled & numeric[codes]), np.flatnonzero(filled & ~numeric[codes])
    if not len(number) or not len(text):
        return
    odd = text if len(text) <= len(number) else number
    shown = "; ".join(f"{python_scalar(values.iloc[r])!r} in {manifest.where(r)}" for r in odd[:5])
    more = f" and {len(odd) - 5} more rows" if len(odd) > 5 else ""
    warn_user(f"target column '{column}' of {manifest.name} mixes numbers ({len(number)} rows) with text "
              f"({len(text)} rows): {shown}{more}; each distinct value is its own class; fix the column if that "
              "is a typo")


def _warn_lookalike(manifest: Manifest, column: str, codes: np.ndarray, keys: list[str]) -> None:
    """Warn when text classes differ only in case or surrounding spaces (``'cat'`` and ``'Cat '``,
    ``'007'`` and ``' 007'``): each is its own class, most likely by mistake. Names each group, its
    rows per spelling, and where the rarest spelling first occurs. Classes are told apart by their
    label key (see :func:`label_key`): ``True`` and ``'True'`` are one class, not two spellings."""
    filled = codes[codes >= 0]
    rows_per_key = pd.Series(np.bincount(filled, minlength=len(keys)), index=keys).groupby(level=0, sort=False).sum()
    rows_per_key = rows_per_key[rows_per_key > 0]
    groups: dict[str, list[str]] = {}
    for key in rows_per_key.index:
        if not _is_number(key) or _LEADING_ZERO.match(key.strip()):  # numbers are matched by value already
            groups.setdefault(key.strip().casefold(), []).append(key)
    found = [sorted(group, key=lambda k: -rows_per_key[k]) for group in groups.values() if len(group) > 1]
    if not found:
        return
    described = []
    for group in found[:3]:
        rare = group[-1]
        rows = np.flatnonzero(np.isin(codes, [c for c, k in enumerate(keys) if k == rare]))
        spellings = " and ".join(f"{k!r} ({rows_per_key[k]} row{'s' if rows_per_key[k] > 1 else ''})" for k in group)
        described.append(f"{spellings}, e.g. {rare!r} in {manifest.where(int(rows[0]))}")
    more = f" (and {len(found) - 3} more such groups)" if len(found) > 3 else ""
    warn_user(f"target column '{column}' of {manifest.name} holds classes that differ only in case or surrounding "
              f"spaces: {'; '.join(described)}{more}; each spelling is its own class: fix the column if they are the "
              "same class")


class TargetEncoder:
    """Encodes the target column(s) of a manifest for one task.

    Classification labels keep their original values (ints or strings) in ``classes``, numbers
    first in numeric order, then text; labels are matched by :func:`label_key`, so a column read
    as ints, as text or as floats names the same classes. Regression targets are standardised
    with training mean/std and de-standardised on output.

    Attributes:
        fitted_on: what the classes were fitted on, as a label it did not see is reported
            (``training``; a few-shot support set's encoder: ``the support set <name>``).
        threshold: a two-class classifier's decision threshold on the second class's probability
            (``decision.threshold``, as a number once chosen); None: the more probable class.
    """

    def __init__(self, task: str, columns: list[str], fitted_on: str = "training"):
        self.task = task
        self.columns = columns
        self.fitted_on = fitted_on
        self.classes: list[Any] | None = None
        self.threshold: float | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @property
    def categorical(self) -> bool:
        """Class labels: task classification, or task retrieval with a target column."""
        return self.task == "classification" or (self.task == "retrieval" and bool(self.columns))

    @property
    def n_outputs(self) -> int:
        if self.categorical:
            if self.classes is None:
                raise NotFittedError("target encoder is not fitted")
            return len(self.classes)
        return len(self.columns)

    @property
    def task_outputs(self) -> dict[str, int] | None:
        """Outputs per task of a multi-task model (see :mod:`polymodal.data.multitarget`); None: one task."""
        return None

    def fit(self, manifest: Manifest) -> TargetEncoder:
        if self.categorical:
            codes, uniques, keys = distinct_labels(manifest.column(self.columns[0]))
            first: dict[str, Any] = {}  # label key -> the first value spelling it, kept for outputs
            for code in pd.unique(codes[codes >= 0]):  # in order of first appearance
                first.setdefault(keys[code], uniques[code])
            self.classes = [first[key] for key in sorted(first, key=_class_order)]
            _warn_mixed(manifest, self.columns[0], codes, keys)
            _warn_lookalike(manifest, self.columns[0], codes, keys)
            if len(self.classes) < 2:
                raise SchemaMismatchError(
                    f"classification needs at least 2 classes in target column '{self.columns[0]}' of "
                    f"{manifest.name}; found {self.classes}"
                )
        elif self.task == "regression":  # a further task's empty cells (rows without its label) left out
            values = manifest.select(self.columns).apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
            # float64: a target far from 0 (a Unix time, 1.7e9) has float32 steps wider than its spread
            self.mean = np.nanmean(values, axis=0)
            self.std = np.maximum(np.nanstd(values, axis=0), 1e-8)
        return self

    @property
    def open_labels(self) -> bool:
        """Labels training never saw are accepted (task retrieval: a label only decides which rows
        are label-level hits, compared as values, so unseen-class retrieval can be scored), where a
        classifier refuses them (it has no output for them)."""
        return self.task == "retrieval"

    def encode(self, manifest: Manifest, rows: np.ndarray | None = None) -> np.ndarray:
        """(N,) int64 class indices, or (N, K) float32 for multilabel/regression. A retrieval
        label training never saw is coded by :func:`unseen_label_code` (-1: an empty label).

        Args:
            rows: encode only these manifest rows (errors still name the manifest's own rows).

        Raises:
            SchemaMismatchError: a label not seen in training (``fitted_on``), except for task
                retrieval (:attr:`open_labels`).
        """
        rows = np.arange(len(manifest)) if rows is None else np.asarray(rows)
        if self.categorical:
            out, unseen = self.encode_classes(manifest, rows)
            if unseen:
                raise SchemaMismatchError(self.unseen_message(manifest, unseen))
            return out
        frame = manifest.select([c for c in self.columns if c in manifest.columns], rows)  # not every column
        if self.task == "retrieval":  # no target column: no labels (-1), each row is its own pair
            return np.full(len(frame), -1, np.int64)
        values = frame[self.columns].apply(pd.to_numeric).to_numpy(np.float64)
        if self.task == "regression":  # standardised in float64, then narrowed: the offset is gone first
            values = (values - self.mean) / self.std
        return values.astype(np.float32)

    def encode_classes(self, manifest: Manifest, rows: np.ndarray) -> tuple[np.ndarray, list[tuple[int, Any]]]:
        """A class column's (N,) int64 indices at ``rows`` and the ``(row, cell)`` of each row left
        at -1: an empty cell, or a label training never saw (a retrieval label training never saw
        is coded by :func:`unseen_label_code` instead)."""
        column = manifest.select([self.columns[0]], rows)[self.columns[0]]
        index = self._class_index()
        codes, _, keys = distinct_labels(column)
        code_unseen = unseen_label_code if self.open_labels else lambda key: -1
        positions = np.array([index[k] if k in index else code_unseen(k) for k in keys] + [-1], np.int64)  # last: empty
        out = positions[codes]
        return out, [(int(rows[i]), python_scalar(column.iloc[i])) for i in np.flatnonzero(out < 0)]

    def _class_index(self) -> dict[str, int]:
        """:func:`label_key` of each class -> its index. Classes fitted apart that match as one
        (a run saved before labels were matched by key, e.g. ``[1, "1"]``) are refused: rows of
        either would all be given the last."""
        index: dict[str, int] = {}
        for i, c in enumerate(self.classes or []):
            first = index.setdefault(label_key(c), i)
            if first != i:
                raise SchemaMismatchError(
                    f"classes {self.classes[first]!r} and {c!r} of this model match as one label "
                    f"({label_key(c)!r}): labels are matched by value whatever their type; retrain the model")
        return index

    def unseen_message(self, manifest: Manifest, unseen: list[tuple[int, Any]]) -> str:
        """The first unseen label with its row, then (a few of) the other rows holding one."""
        (row, value), others = unseen[0], unseen[1:]
        meant = did_you_mean(value, self.classes) if isinstance(value, str) and not _is_number(value) else ""
        message = (f"{manifest.where(row)}: label {value!r} in column '{self.columns[0]}' was not seen in "
                   f"{self.fitted_on}{meant}")
        if others:
            shown = "; ".join(f"{v!r} in {manifest.where(r)}" for r, v in others[:4])
            message += f"; {len(others)} more rows hold unseen labels: {shown}{' ...' if len(others) > 4 else ''}"
        return f"{message}; known labels: {self.classes}"

    def main_targets(self, encoded: np.ndarray) -> np.ndarray:
        """The main task's encoded targets: all of them (a multi-task encoder picks its main task's)."""
        return encoded

    def decode_values(self, outputs: np.ndarray) -> np.ndarray:
        """Regression outputs back on the original scale (float64: see :meth:`fit`)."""
        return np.asarray(outputs, np.float64) * self.std + self.mean

    def get_state(self) -> dict[str, Any]:
        state = {
            "task": self.task,
            "columns": self.columns,
            "classes": self.classes,
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }
        return state if self.threshold is None else {**state, "threshold": self.threshold}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TargetEncoder:
        encoder = cls(state["task"], list(state["columns"]))
        encoder.classes = state.get("classes")
        encoder.threshold = state.get("threshold")
        if state.get("mean") is not None:
            encoder.mean = np.asarray(state["mean"], np.float64)
            encoder.std = np.asarray(state["std"], np.float64)
        return encoder


MAX_LABELS_SHOWN = 20  # labels a message about anomaly.normal lists


def normal_value_problems(manifest: Manifest, column: str, normal: Sequence[Any], *, every: bool,
                          key: str = "anomaly.normal") -> list[str]:
    """What is wrong with ``anomaly.normal`` against the target ``column`` of ``manifest`` (matched
    as training matches them, by :func:`label_key`: ``0``, ``0.0`` and ``'0'`` alike; ``'normal'`` is
    not ``'Normal'``), naming the column's labels and, for each value absent, the close one meant.

    Args:
        every: each value must be a label of the column (``config check --data``, for a
            ``normal`` the config sets: one that no row holds is a misspelling, or names nothing);
            False: at least one must (``fit``: otherwise every training row is an anomaly).
        key: how messages name ``normal`` (``evaluate``'s ``normal``, given in its place).

    Returns:
        One problem per value absent (``every``), or one when none is present; none when the
        column is not in the manifest (the target's own check names that).
    """
    if column not in manifest.columns:
        return []
    labels = _labels(manifest, column)
    absent = [value for value in normal if label_key(value) not in labels]
    if not absent or (not every and len(absent) < len(normal)):
        return []
    shown = sorted(labels.values(), key=str)
    where = f"target column '{column}' of {manifest.name} (its labels: {_listed(shown)})"
    meant = {value: did_you_mean(str(value), [str(v) for v in shown]) for value in absent}
    if not every:
        named = "".join(f"; {value!r}{meant[value]}" for value in absent if meant[value])
        return [f"{key} {list(normal)} matches no label of {where}, so no row is normal{named}"]
    return [f"{key} value {value!r} is no label of {where}{meant[value]}: labels match exactly, case "
            "included" for value in absent]


def no_normal_row(manifest: Manifest, column: str, normal: Sequence[Any], where: str | None = None) -> str:
    """Why ``manifest``, every row of which is labelled anomalous, has no normal row: its target
    ``column``'s labels, none in ``normal``, with the close one meant for each value
    (``'normal'`` for ``'Normal'``).

    Args:
        where: how to name the rows (None: the manifest's name).
    """
    shown = sorted(_labels(manifest, column).values(), key=str)
    meant = "".join(f"; {value!r}{hint}" for value in normal
                    if (hint := did_you_mean(str(value), [str(v) for v in shown])))
    return (f"{manifest.name if where is None else where} has no normal row: no '{column}' value is in "
            f"anomaly.normal {list(normal)} (it holds {_listed(shown)}){meant}")


def _labels(manifest: Manifest, column: str) -> dict[Hashable, Any]:
    """The distinct non-empty labels of ``column``, keyed as training matches them (:func:`label_key`)."""
    _, uniques, keys = distinct_labels(manifest.column(column))
    return {key: value for key, value in zip(keys, uniques, strict=True) if not is_empty(value)}


def _listed(shown: Sequence[Any]) -> str:
    """``shown`` as a list, cut at ``MAX_LABELS_SHOWN``."""
    return repr(list(shown[:MAX_LABELS_SHOWN]))[:-1] + (", ...]" if len(shown) > MAX_LABELS_SHOWN else "]")
