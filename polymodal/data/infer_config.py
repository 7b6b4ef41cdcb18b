"""A starting config from a manifest: ``polymodal config init --data train.csv --target label``.

Each column becomes what its cells hold, judged on a sample of the rows (:data:`SAMPLE_ROWS`,
spread across the manifest); a column judged to hold numbers or categories is then read whole,
which is cheap (a vectorised parse: about 0.3 s per million rows), so that its cells that are no
number, or its categories, are counted in every row:

- paths to image files (``.png``, ``.jpg``...) -> an ``image`` modality, its size and colour from
  the sampled files; audio files (``.wav``, ``.flac``, ``.ogg``, ``.mp3``) -> ``audio`` at the
  files' sample rate (at most 16 kHz) and the longest duration in the headers of every sampled
  row (at most 10 s); videos -> ``video``; arrays (``.npy``, ``.npz``, ``.mat``) -> ``signal`` of
  the longest length found (a log power spectrogram from 1,024 samples on: n_fft 128, 256 from
  2,048), or ``image`` for a ``.npy`` that holds a picture ((H, W) both above 16, or
  (H, W, 1|3|4)); a video column named for its sound (``audio``, ``speech``...) -> ``audio`` read
  from the sound tracks; any other video column whose sampled files hold sound tracks (some of them
  will do: a video without one reads as absent) also -> ``audio`` on the same column, named
  ``<column>_sound``, at the tracks' highest rate (at most 16 kHz) and longest length (at most 10 s);
- numbers -> one ``tabular`` modality (``columns``); true / false values and short text labels
  repeated across rows (at most 50 distinct values, each seen twice on average) -> its
  ``categorical`` columns (categories that differ only in case or surrounding whitespace, such
  as ``M`` and ``m``, set ``normalize_categories: strip_lower``); numbers written with leading
  zeros in :data:`MIN_PADDED_SHARE` of the cells or more (zip codes ``02139``, ``007``) are codes:
  categories, as written (a CSV's whole-number columns are read again as text to see the zeros);
  a number or category that determines the target in the rows looked at, alone or with one other
  column (a fault's type and size), is left out as a likely leak (a recording's id, the label
  under another name), and so is a copy of an earlier column (with several targets, a column that
  determines any one of them); a number column whose values alone separate the classes (each
  class in its own range) or follow a regression target almost exactly (a correlation of 0.99)
  is kept, and flagged (a warning);
- other text -> a ``text`` modality;
- identifiers (a column named ``id`` / ``*_id``, or text unique to every row that is no sentence),
  columns that are empty in every row, who a row comes from (``speaker``, ``patient``...), a
  row's place in a recording or sequence (whole numbers taking
  :data:`~polymodal.data.infer_leaks.MIN_POSITIONS` values or more, named only by words of
  :data:`~polymodal.data.infer_leaks.POSITION_WORDS` and :data:`~polymodal.data.infer_leaks.SEQUENCE_WORDS`,
  such as a window's ``start``, a ``window_offset`` or a ``frame_index``, unlike a ``sample_rate``
  or an ``end_diastolic_volume``) and, with no target given, a column named like one (``label``,
  ``class``...) are left out, and said so.

The task follows the target: text labels, or at most 50 distinct whole numbers each on two
rows or more on average that lie close together as class codes do (0-3, 1-10: their range at
most :data:`~polymodal.data.infer_task.CODE_SPAN` times their count, or at most two values) ->
classification; other numbers (decimals; whole numbers spread like a measurement, such as a speed of 1730-1797 rpm)
-> regression; several 0/1 targets -> multilabel; several targets of different kinds (a class or a
0/1 label beside a number) -> a task each, the first the main one and the others under ``tasks:``;
one value, or no target, -> anomaly
detection (one value, inferred: a warning, as a manifest filtered to one class by mistake reads
so). ``task`` (``config init --task``) overrides it; ``--task anomaly`` with a target makes
it the anomaly labels, whose normal value(s) ``anomaly.normal`` names: those of its defaults the
column holds (``normal``, ``0``), else its one value, else its most frequent label (an anomaly
detector's manifest is mostly normal rows), said so in the table for the user to check. Two classes whose rarer one holds under
40% of the rows also get ``decision: {threshold: auto}`` (chosen on the validation rows by
balanced accuracy: :mod:`polymodal.config.decision`). Two modalities or more with a task other
than anomaly, some of which the rows lack, get ``loss: {subset_weight: 1.0}``, each trained
alone too, for rows that arrive without some. Every decision comes back with its reason (:class:`Inference`), what looks like a
mistake as a warning, and the config is validated before it is returned.

A file column's settings are judged in :mod:`polymodal.data.infer_config_files`, the leaks and
positions left out in :mod:`polymodal.data.infer_leaks`, the task in :mod:`polymodal.data.infer_task`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.cells import cell_text, is_empty
from polymodal.data.infer_config_files import FILE_KINDS, judge_files, judge_sound
from polymodal.data.infer_leaks import MAX_CATEGORIES, copies_and_leaks, flagged_numbers, position
from polymodal.data.infer_task import (
    free_name,
    further_tasks,
    normal_labels,
    planned_tasks,
    target_lines,
    task_warnings,
    uneven_classes,
)
from polymodal.data.manifest import READERS, Manifest, read_manifest
from polymodal.errors import ManifestError
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.values import spelling_variants

SAMPLE_ROWS = 200  # rows whose cells are judged
IDENTIFIER_ENDINGS = ("_id", "_index", "_idx", "_no", "_number", "_uuid")
TARGET_NAMES = ("label", "labels", "target", "class", "y", "outcome", "diagnosis")  # left out without a target
GROUP_WORDS = ("speaker", "voice", "subject", "patient", "participant", "user", "session")  # who a row is from


@dataclass
class Inference:
    """The inferred config (a dict, as a YAML file holds it, validated but not a
    :class:`~polymodal.config.Config`) and, per column, what it became and why; ``warnings``: what
    was kept or chosen but looks like a mistake, for the user to check (``config init`` prints
    each on stderr)."""

    config: dict[str, Any]
    columns: list[tuple[str, str, str]] = field(default_factory=list)  # (column, became, why)
    rows: int = 0  # the manifest's rows
    sampled: int = 0  # the rows whose cells were judged (numbers and categories are then counted in all rows)
    warnings: list[str] = field(default_factory=list)


def infer_config(data: str | os.PathLike | pd.DataFrame | Manifest, target: str | Sequence[str] | None,
                 task: str | None = None) -> Inference:
    """A config for ``data`` (a manifest file, DataFrame or Manifest) predicting ``target`` (None: an
    anomaly detector's unlabelled rows are not guessed; give the target column(s)).

    Args:
        task: ``classification``, ``regression``, ``multilabel`` or ``anomaly`` in place of the
            task the targets suggest (whole numbers such as a load of 0-3 read as classes;
            ``regression`` makes them a number; ``anomaly``: the target holds anomaly labels);
            None: inferred.

    Raises:
        ManifestError: a target column the manifest does not have, a target of text labels nearly
            unique to their rows, one of several targets holding one text value, or no column left to
            learn from (a file column none of whose sampled files can be read is left out, with the
            reader's reason, not raised).
        OptionError: a ``task`` (``--task``) that is none of those, given without a target, or that
            the targets cannot be (text for regression, values other than 0/1 for multilabel,
            several columns or one value for classification).
    """
    manifest = read_manifest(data)
    targets = [target] if isinstance(target, str) else list(target or [])
    missing = [t for t in targets if t not in manifest.columns]
    if missing:
        raise ManifestError([f"target column '{t}' is not in {manifest.name}{did_you_mean(t, manifest.columns)}; "
                             f"it has {list(manifest.columns)}" for t in missing], source=manifest.name)
    asked = task
    plan = planned_tasks(manifest, targets, task)  # the main task first, then further ones (targets of different kinds)
    task = plan[0][1]
    rows = np.unique(np.linspace(0, len(manifest) - 1, min(len(manifest), SAMPLE_ROWS)).astype(np.int64))  # spread
    manifest = _as_written(manifest, data, targets, rows)
    result = Inference({}, rows=len(manifest), sampled=len(rows))
    absent_files = odd_numbers = False
    modalities: dict[str, Any] = {}
    numbers: list[str] = []
    categories: list[str] = []
    judged = [(str(column), *_judge(manifest, str(column), rows, targeted=bool(targets)))
              for column in manifest.columns if column not in targets]
    judged = [(column, "skipped", placed, {}) if kind == "number" and (placed := position(manifest, column))
              else (column, kind, why, settings) for column, kind, why, settings in judged]
    left_out = copies_and_leaks(manifest, [column for column, kind, _, _ in judged if kind in ("number", "category")],
                                targets, rows)
    variants = False
    flagged, result.warnings = flagged_numbers(  # an easy feature, or a target in disguise: kept, and said
        manifest, [c for c, kind, _, _ in judged if kind == "number" and c not in left_out],
        {t: each for columns, each, _ in plan for t in columns}, rows)
    for column, kind, why, settings in judged:
        if column in left_out:
            kind, why = "skipped", f"{why}; {left_out[column]}"
        elif kind == "number":
            settings = {"not_numbers": _count_not_numbers(manifest, column)}
            why = _numbers_why(manifest, column, settings["not_numbers"]) + flagged.get(column, "")
        elif kind == "category":
            said, found = _categories_why(manifest, column, settings.get("codes", why))
            why = f"{why}; {said}" if "codes" in settings else said
            variants = variants or found
        result.columns.append((column, kind, why))
        absent_files = absent_files or "not found" in why and kind not in ("skipped",)
        if kind == "number":
            numbers.append(column)
            odd_numbers = odd_numbers or bool(settings.get("not_numbers"))
        elif kind == "category":
            categories.append(column)
        elif kind in ("image", "audio", "video", "signal", "text"):
            modalities[free_name(_stem(column), modalities)] = {"kind": kind, "column": column, **settings}
            sound = judge_sound(manifest, column, rows, _suffixes(manifest, column, rows)) if kind == "video" else None
            if sound is not None:  # the same files' sound tracks: an audio modality on the column
                name = free_name(f"{_stem(column)}_sound", modalities)
                modalities[name] = {"kind": "audio", "column": column, **sound[1]}
                result.columns.append((column, f"audio ({name})", sound[0]))
    if numbers or categories:
        table = free_name("table", modalities)
        modalities[table] = {"kind": "tabular", "columns": numbers, "categorical": categories}
        if variants:  # 'M' and 'm': one category, in training and when predicting
            modalities[table]["preprocess"] = {"normalize_categories": "strip_lower"}
            result.columns.append((f"({table})", "normalize_categories: strip_lower",
                                   "some categories differ only in case or surrounding whitespace: read as one"))
    if not modalities:
        raise ManifestError([f"{manifest.name}: no column to learn from (each was a target, an identifier or empty): "
                             + "; ".join(f"'{c}': {why}" for c, _, why in result.columns)], source=manifest.name)
    result.columns.extend(target_lines(manifest, plan))
    result.warnings.extend(task_warnings(manifest, plan))
    config: dict[str, Any] = {"task": task}
    if targets:
        config["target"] = plan[0][0][0] if len(plan[0][0]) == 1 else plan[0][0]
    if len(plan) > 1:
        config["tasks"] = further_tasks(plan)
    config["modalities"] = modalities
    config["fusion"] = {"name": "attention" if len(modalities) > 1 else "concat"}
    lacking = _lacking(manifest, modalities, rows) if len(modalities) > 1 and task != "anomaly" else []
    if lacking:  # rows arrive without some modality: train for them
        config["loss"] = {"subset_weight": 1.0}
        result.columns.append(("(loss)", "subset_weight: 1.0", f"some rows lack {', '.join(map(repr, lacking))}: "
                               "each modality is also trained alone, so rows without some of them are predicted by a "
                               "model trained on such rows (at the default 0, predict and explain warn that it was "
                               "not)"))
    uneven = uneven_classes(manifest, targets[0]) if task == "classification" else None
    if uneven is not None:  # two classes, one rare: the more probable class under-calls it
        config["decision"] = {"threshold": "auto"}
        result.columns.append(("(decision)", "threshold: auto", f"two classes, {uneven}: the threshold is chosen "
                               "on the validation rows by balanced accuracy, where the more probable class would call "
                               "the rare one too seldom"))
    if task == "anomaly" and targets:  # the labels' normal value(s); every other value is an anomaly
        normal, normal_why = normal_labels(manifest, targets[0])
        config["anomaly"] = {"normal": normal}
        result.columns.append(("(anomaly)", f"normal: {normal}", normal_why))
        if asked is None:  # one value in every row: most often a manifest filtered to one class
            result.warnings.append(
                f"target column '{targets[0]}' holds one value ({normal[0]!r}) in every row: the config is an "
                "anomaly detector of those rows (task: anomaly), not a classifier, which needs two classes or more; "
                "check the manifest was not filtered to one class, or give --task anomaly (task='anomaly' in "
                "Python) if a detector is what you want")
    if absent_files or odd_numbers:  # files missing, or a '?' among numbers: read as missing, not refused
        config["data"] = {"on_error": "missing"}
        why = [*(["some files were not found: rows without them train with that modality missing"] if absent_files
                 else []),
               *(["some number columns hold cells that are no number: each reads as missing"] if odd_numbers else [])]
        result.columns.append(("(data)", "on_error: missing", "; ".join(why) + " (on_error: raise would refuse the "
                               "manifest)"))
    from polymodal.config import load_config

    load_config(config)  # what is returned is a valid config
    result.config = config
    return result


PADDED = re.compile(r"0[0-9]+")  # a number written with leading zeros: '007', '02139' (not '0', '0.5')
MIN_PADDED_SHARE = 0.05  # of a number column's cells written so, or more, make it codes


def _as_written(manifest: Manifest, data: Any, targets: list[str], rows: np.ndarray) -> Manifest:
    """``manifest`` with each whole-number column of a CSV file that holds a cell written with
    leading zeros at ``rows`` put back as the text the file holds: pandas reads ``02139`` as 2139,
    and :func:`_judge` needs the zero to see codes. Other sources keep their own types (a
    DataFrame's or JSON file's ``'02139'`` is a string already)."""
    if not isinstance(data, str | os.PathLike) or READERS.get(Path(data).suffix.lower()) != "csv":
        return manifest
    whole = [str(c) for c in manifest.columns if c not in targets and _whole_numbers(manifest.column(c))]
    if not whole:
        return manifest
    written = read_manifest(data, text_columns=whole)
    padded = [c for c in whole if any(isinstance(v, str) and PADDED.fullmatch(v.strip())
                                      for v in written.take(c, rows))]
    if not padded:
        return manifest
    frame = manifest.data.copy(deep=False)
    for column in padded:
        frame[column] = written.data[column]
    return dataclasses.replace(manifest, data=frame)


def _whole_numbers(values: pd.Series) -> bool:
    """Whether a column read as numbers holds whole numbers only (a blank cell makes pandas read
    them as floats: 2139.0)."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    given = values.dropna()
    return len(given) > 0 and bool((given == given.round()).all())


def _codes(text: list[str], padded: list[str]) -> tuple[str, str, dict[str, Any]]:
    """What a column of numbers some written with leading zeros (``padded``, among the cells
    ``text``) is: codes (a zip code, a product code), whose zeros a number would drop and whose
    order means nothing: an identifier where each is unique to its row, else categories, kept as
    written."""
    said = (f"numbers written with leading zeros ({len(padded)} of the {len(text)} cells looked at, such as "
            f"{padded[0]!r}): codes, not quantities")
    distinct = len(set(text))
    if distinct == len(text):
        return "skipped", f"{said}; unique to every row: an identifier", {}
    return "category", f"{said}: read as categories, as written", {"codes": f"{distinct} values"}


def _lacking(manifest: Manifest, modalities: dict[str, Any], rows: np.ndarray) -> list[str]:
    """The modalities some of the rows looked at lack: an empty cell (a table: every one of its
    columns empty). Where every row has every modality the subset loss is not written: on
    cwru_faults' manifest it made a table of operating conditions (``load``, ``rpm``) lead the
    model at loads training never saw (41.7% against 100%)."""
    lacking = []
    for name, modality in modalities.items():
        columns = ([*modality["columns"], *modality["categorical"]] if modality["kind"] == "tabular"
                   else [modality["column"]])
        if manifest.select(columns, rows).map(is_empty).all(axis=1).any():
            lacking.append(name)
    return lacking


def _count_not_numbers(manifest: Manifest, column: str) -> dict[str, list[int]]:
    """The cells of a number column, in every row, that are no finite number, as training reads
    them (:func:`~polymodal.data.validation.bad_numbers`): reason -> rows."""
    from polymodal.data.validation import bad_numbers

    return bad_numbers(manifest, [column]).get(column, {})


def _numbers_why(manifest: Manifest, column: str, bad: dict[str, list[int]]) -> str:
    """Why a column is numbers, with its cells that are not (in every row: a few first values)."""
    rows = sorted(r for found in bad.values() for r in found)
    if not rows:
        return "numbers"
    distinct = list(dict.fromkeys(str(v) for v in manifest.take(column, np.asarray(rows[:100], np.int64))))
    shown = ", ".join(repr(v)[:40] for v in distinct[:3]) + (", ..." if len(distinct) > 3 else "")
    return f"numbers ({len(rows)} cell(s) of {len(manifest):,} rows that are not: {shown}; read as missing)"


def _categories_why(manifest: Manifest, column: str, why: str) -> tuple[str, bool]:
    """Why a column is categories, counted in every row (a value the sample missed, spelling
    variants), and whether some differ only in case or surrounding whitespace."""
    counts: dict[str, int] = {}
    for value, count in manifest.column(column).value_counts(dropna=True).items():  # each distinct cell once
        if not is_empty(value):
            counts[cell_text(value)] = counts.get(cell_text(value), 0) + int(count)  # 1 and 1.0 alike, as training keys them
    groups = spelling_variants(counts)
    said = f"{len(counts)} values repeated across rows"
    if len(counts) > MAX_CATEGORIES:
        said = f"{len(counts)} values in all rows ({why} in the rows looked at)"
    if groups:
        shown = "; ".join(" / ".join(f"{k!r} ({n})" for k, n in group) for group in groups[:3])
        said += f"; differing only in case or whitespace: {shown}{'; ...' if len(groups) > 3 else ''}"
    return said, bool(groups)


def _stem(column: str) -> str:
    """A file column's name without a ``_path`` / ``_file`` ending (``de_path`` -> ``de``)."""
    for ending in ("_path", "_file", "_filename", "_files", "_paths"):
        if column.lower().endswith(ending) and len(column) > len(ending):
            return column[: -len(ending)]
    return column


def _suffixes(manifest: Manifest, column: str, rows: np.ndarray) -> list[str]:
    """The file suffixes among a column's cells at ``rows`` (``.mp4``, ``.webm``), sorted."""
    return sorted({Path(str(c).strip()).suffix.lower() for c in manifest.take(column, rows) if not is_empty(c)})


def _judge(manifest: Manifest, column: str, rows: np.ndarray, *, targeted: bool) -> tuple[str, str, dict[str, Any]]:
    """(what the column is, why, the modality's settings) from the cells at ``rows``
    (``targeted``: a target was given; without one, a column named like one is no feature)."""
    cells = [c for c in manifest.take(column, rows) if not is_empty(c)]
    if not cells:
        return "skipped", "empty in the rows looked at", {}
    lowered = column.strip().lower()
    if not targeted and lowered in TARGET_NAMES:
        return "skipped", ("named like a target, and no target was given: left out, as an answer column would give "
                           "anomalies away (give it as the target to learn it or evaluate against it)"), {}
    if lowered in ("id", "index", "row", "uuid") or lowered.endswith(IDENTIFIER_ENDINGS):
        return "skipped", "an identifier, by its name", {}
    if any(word in lowered.replace("-", "_").split("_") for word in GROUP_WORDS):
        return "skipped", ("who or where a row comes from, by its name: new ones at test time would all read as "
                           "unknown; split the data by it instead of learning from it"), {}
    text = [str(c) for c in cells]
    if len(set(text)) == 1:
        return "skipped", f"the same value ({text[0]!r}) in every row looked at", {}
    if all(isinstance(c, bool | np.bool_) or t.strip().lower() in ("true", "false") for c, t in zip(cells, text)):
        return "category", "true / false values", {}
    numeric = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce")
    if numeric.notna().mean() >= 0.9:  # a few '?' or 'n/a' among numbers: missing, imputed
        padded = [t.strip() for t in text if PADDED.fullmatch(t.strip())]
        if padded and len(padded) >= MIN_PADDED_SHARE * len(text):  # '02139', '007': codes
            return _codes(text, padded)
        whole = bool((numeric.dropna() == numeric.dropna().round()).all())
        counting = bool(numeric.is_monotonic_increasing) or len(cells) >= 100  # a row number, or too many to repeat by chance
        if whole and numeric.nunique() == len(cells) and len(cells) >= 20 and counting:
            return "skipped", "whole numbers unique to every row: an identifier", {}
        odd = int(numeric.isna().sum())
        return "number", "numbers" + (f" ({odd} cell(s) that are not, read as missing)" if odd else ""), \
            {"not_numbers": odd}
    suffixes = [Path(t.strip()).suffix.lower() for t in text]
    kind = file_kind(suffixes)
    if kind is not None:  # paths of one kind of file (.jpg beside .png is fine)
        return judge_files(manifest, column, rows, kind, sorted(set(suffixes)))
    mixed = mixed_files(suffixes, text)
    if mixed is not None:
        return "skipped", mixed, {}
    distinct = len(set(text))
    words = np.mean([len(t.split()) for t in text])
    if distinct <= MAX_CATEGORIES and distinct * 2 <= len(text) and words < 4:
        return "category", f"{distinct} values repeated across rows", {}
    if distinct == len(text) and words < 2:
        return "skipped", "text unique to every row, no sentences: an identifier", {}
    lengths = sorted(len(t.split()) for t in text)
    tokens = int(min(512, max(16, 2 ** math.ceil(math.log2(max(1, lengths[int(0.95 * (len(lengths) - 1))]))))))
    return "text", f"free text (about {int(np.median(lengths))} word(s) a row; max_tokens {tokens})", \
        {"preprocess": {"max_tokens": tokens}}


def file_kind(suffixes: Sequence[str]) -> str | None:
    """The kind of file every one of ``suffixes`` names (``audio``, ``image``, ``video``, ``array``),
    a ``.npy`` among audio files counting as audio (an array of samples, which the audio
    modality reads); None where some name no known kind or the kinds differ."""
    kinds = {FILE_KINDS.get(suffix) for suffix in suffixes}
    if kinds == {"audio", "array"} and {s for s in suffixes if FILE_KINDS[s] == "array"} == {".npy"}:
        return "audio"
    return kinds.pop() if len(kinds) == 1 and None not in kinds else None


def mixed_files(suffixes: Sequence[str], cells: Sequence[str]) -> str | None:
    """Why a column whose cells are mostly paths of known kinds of file, of more than one kind (or
    beside other values), is left out, counting each: ``file paths of mixed kinds: 30 .wav (audio),
    1 .png (image)``; None where fewer than half of ``cells`` name a known kind of file."""
    known = [s for s in suffixes if s in FILE_KINDS]
    if not known or 2 * len(known) < len(suffixes):
        return None
    counts = pd.Series(known).value_counts()
    parts = [f"{n} {suffix} ({FILE_KINDS[suffix]})" for suffix, n in counts.items()]
    others = [cell for cell, suffix in zip(cells, suffixes, strict=True) if suffix not in FILE_KINDS]
    if others:
        parts.append(f"{len(others)} of no known kind, such as {others[0]!r}")
    return (f"file paths of mixed kinds: {', '.join(parts)}; a column holds one kind of file (audio files may "
            "include .npy arrays of samples): split it into one column per kind")


