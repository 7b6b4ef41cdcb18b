"""Manifest validation against a config: every problem found at once (missing columns, file
cells that are not paths or name files that do not exist, rows without any modality, empty,
non-numeric or infinite targets), each with its row, so that a user fixes a manifest in one pass.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd

from polymodal.config import Config
from polymodal.config.modalities import ModalityConfig, modality_columns
from polymodal.data.arrays import split_row_ref
from polymodal.data.cells import BLOCK, Cells, is_empty
from polymodal.data.manifest import WHOLE_ROW, Manifest, check_table
from polymodal.errors import ManifestError, option
from polymodal.utils.io import python_scalar
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.values import decimal_comma, number
from polymodal.utils.warn import warn_user

NO_MODALITY = "no modality present (every modality's cell is empty)"
IN_MEMORY_HINT = (" (a file modality reads files: write in-memory images, arrays or bytes to files, e.g. with "
                  "PIL's Image.save or np.save, and put their paths in the column)")
# an audio cell held in memory: the files that read as Runtime.predict reads a (samples, sample_rate) pair
AUDIO_IN_MEMORY_HINT = (" (an audio modality reads files: write a (samples, sample_rate) pair to a WAV file with "
                        "soundfile.write('clip.wav', samples, sample_rate), resampled as any file is, or samples "
                        "already at the model's {rate:,} Hz with np.save('clip.npy', samples), and put their paths "
                        "in the column; the exported model's Runtime.predict takes (samples, sample_rate) as it is)")

def validate_manifest(
    manifest: Manifest,
    config: Config,
    *,
    require_target: bool = True,
    check_files: bool = True,
    modalities: Iterable[str] | None = None,
    allow_empty_rows: bool = False,
    allow_partial_columns: bool = False,
    training: bool = False,
) -> None:
    """Check a manifest against a config; raise one :class:`ManifestError` listing every problem.

    Checks: the manifest has rows, every modality column exists, file cells are paths (strings)
    naming existing files, at least one modality is present per row, a tabular modality's numeric
    columns hold numbers (every bad cell named; with ``data.on_error`` ``skip`` or ``missing``,
    encoding skips that row's modality instead), target columns exist and hold no empty (or, for
    regression/multilabel, non-numeric or infinite) values.

    With ``data.on_error`` ``skip`` or ``missing``, a file cell naming no file is not a problem:
    it is recorded on the manifest (:meth:`~polymodal.data.manifest.Manifest.mark_absent`), and
    encoding skips and lists it as it does a file it cannot read; so is a row with no modality
    present (recorded under :data:`~polymodal.data.manifest.WHOLE_ROW`).

    Args:
        require_target: check the target columns (off for prediction).
        check_files: stat every file cell.
        modalities: the modalities to check (default: all in the config). Columns of other
            modalities may be absent, e.g. when predicting with a subset of modalities.
        allow_empty_rows: accept rows with no modality present (when the caller chose a subset
            of modalities on purpose; the model then predicts from its missing-embeddings).
        allow_partial_columns: accept a multi-column modality (a table) with some of its columns
            absent, their cells missing in every row (prediction: imputed as missing values are).
        training: a manifest a model is fitted on (an anomaly detector's training or validation
            rows): an anomaly config's target column absent from it is said to be needless there.
    """
    columns = list(manifest.columns)
    check_table(columns, len(manifest), manifest.name)  # a Manifest built without read_manifest too
    names = list(modalities) if modalities is not None else config.modality_names
    problems: list[str] = []
    hints: list[str] = []  # advice on why files are missing: first, before the files it explains
    folded = 0  # problems counted in a 'N more ...' line
    missing_files = 0  # cells naming no file, refused (data.on_error: raise)
    columns_missing = False
    present_any = np.zeros(len(manifest), dtype=bool)
    checked: set[str] = set()  # file columns already reported (a video and its sound track share one)
    for name in names:
        modality = config.modalities[name]
        missing_cols = [c for c in modality_columns(modality) if c not in columns]
        if allow_partial_columns and len(missing_cols) < len(modality_columns(modality)):
            missing_cols = []  # the columns there are read; the others are missing values
        if missing_cols:
            columns_missing = True
            named = ", ".join(f"'{c}'{did_you_mean(str(c), columns)}" for c in missing_cols)
            problems.append(f"modality '{name}' reads column(s) {named}, not in {manifest.name} (columns: {columns})")
            continue
        cells = Cells(manifest, modality_columns(modality), modality.file_based)
        present = cells.present()
        present_any |= present
        rows = np.flatnonzero(present)
        said = modality.file_based and modality.column in checked
        if modality.file_based:
            checked.add(modality.column)
            mistyped = _non_path_rows(manifest.column(modality.column), rows)
            if not said:
                problems += _non_path_problems(manifest, modality.column, mistyped, _in_memory_hint(modality))
                folded += max(len(mistyped) - 21, 0)  # problems the 'N more' line stands for, beyond itself
            if mistyped:  # reported above, not again as missing files
                rows = np.setdiff1d(rows, np.array([row for row, _ in mistyped], np.int64))
        if check_files and modality.file_based:
            absent = _absent_files(cells, rows, folders=modality.folder_cells)
            files = [split_row_ref(p)[0] for _, p in absent]
            why = {file: absent_reason(file) for file in set(files)}  # once per file: a packed .npy's rows share one
            reasons = [why[file] for file in files]
            manifest.mark_absent(modality.column, np.array([row for row, _ in absent], np.int64), reasons)  # or clear
            hint = _absent_hint(manifest, name, modality, absent, len(rows)) if absent else None
            if config.data.on_error != "raise":  # skipped and listed when encoded, as an unreadable file is
                if hint and not said:
                    warn_user(hint)
                continue
            if said:  # another modality reading this column listed the same files
                continue
            shown = 3 if hint else 20  # a few examples of what the advice explains
            missing_files += len(absent)
            for (row, path), reason in zip(absent[:shown], reasons):
                problems.append(f"{manifest.where(row)}, column '{modality.column}': {reason}: {path}")
            if len(absent) > shown:
                problems.append(f"column '{modality.column}': {len(absent) - shown} more missing files")
                folded += len(absent) - shown - 1
            if hint:
                hints.append(hint)
    if not columns_missing and not allow_empty_rows:
        empty_rows = np.flatnonzero(~present_any)
        if config.data.on_error != "raise":  # skipped and listed when encoded, as a row of unreadable files is
            manifest.mark_absent(WHOLE_ROW, empty_rows, [NO_MODALITY] * len(empty_rows))
        elif len(empty_rows):
            problems.append(f"{manifest.name}: no modality present in {manifest.rows_text(empty_rows.tolist())}"
                            " (data.on_error: skip or missing leaves such rows out and lists them)")
    tables = [name for name in names if config.modalities[name].kind == "tabular"]
    if config.data.on_error == "raise":
        problems += [p for name in tables for p in _tabular_problems(manifest, name, config.modalities[name].columns)]
    elif config.data.on_error == "missing":  # the cell reads as missing, and is listed; skip: encoding drops the row
        for name in tables:
            _mark_bad_numbers(manifest, config.modalities[name].columns)
    if require_target:
        problems += _target_problems(manifest, config, training)
    if problems:
        hints = list(dict.fromkeys(hints))  # a DataFrame's root: one piece of advice for all its columns
        raise ManifestError(hints + problems, source=manifest.name, folded=folded - len(hints),  # advice: no problem
                            missing_files=missing_files)


def _in_memory_hint(modality: ModalityConfig) -> str:
    """How to give a modality's in-memory values as files, said after the first such cell."""
    if modality.kind == "audio":
        return AUDIO_IN_MEMORY_HINT.format(rate=modality.preprocess.sample_rate)
    return IN_MEMORY_HINT


def _non_path_problems(manifest: Manifest, column: str, mistyped: list[tuple[int, object]],
                       hint: str = IN_MEMORY_HINT) -> list[str]:
    """One line per file cell that holds no path (the first 20, then a count); an in-memory value
    is given ``hint`` once."""
    in_memory = next((i for i, (_, value) in enumerate(mistyped[:20])  # an image, array or bytes
                      if not isinstance(value, int | float | np.number)), None)
    problems = [f"{manifest.where(row)}, column '{column}': expected a file path (string), got "
                f"{_describe(value)}" + (hint if i == in_memory else "")
                for i, (row, value) in enumerate(mistyped[:20])]
    if len(mistyped) > 20:
        problems.append(f"column '{column}': {len(mistyped) - 20} more cells that are not file paths")
    return problems


def _absent_files(cells: Cells, rows: np.ndarray, *, folders: bool) -> list[tuple[int, str]]:
    """``(row, cell)`` for each of ``rows`` whose file does not exist (``folders``: a folder counts as a file)."""
    shards: dict[str, bool] = {}  # rows of a packed .npy share one file: stat it once
    absent = []
    for start in range(0, len(rows), BLOCK):
        block = rows[start:start + BLOCK]
        for row, path in zip(block.tolist(), cells[block]):
            file, packed = split_row_ref(path)
            if packed is None:  # a file of its own: nothing to remember (a million paths would be)
                found = os.path.isfile(file) or (folders and os.path.isdir(file))
            else:
                found = shards.get(file)
                if found is None:
                    found = shards[file] = os.path.isfile(file)
            if not found:
                absent.append((row, path))
    return absent


def bad_numbers(manifest: Manifest, numeric: Iterable[str]) -> dict[str, dict[str, list[int]]]:
    """The cells of the numeric tabular columns ``numeric`` that are no finite number (read as
    :func:`~polymodal.utils.values.number` reads them): column -> reason (``must be numeric``) ->
    rows; a column the manifest lacks (left out on purpose, at prediction: imputed) has none."""
    found: dict[str, dict[str, list[int]]] = {}
    for column in numeric:
        if column not in manifest.columns:
            continue
        values = manifest.column(column)
        empty = values.map(is_empty).to_numpy(dtype=bool)
        try:
            as_float = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        except (OverflowError, TypeError, ValueError):  # an integer past float range: every cell by number()
            as_float = np.full(len(values), np.nan)
        if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_timedelta64_dtype(values):
            as_float[:] = np.nan  # nanoseconds to pandas; no number to the encoding
        suspects = np.flatnonzero((np.isnan(as_float) & ~empty) | np.isinf(as_float))
        bad: dict[str, list[int]] = {}
        verdicts: dict[Any, str | None] = {}  # each distinct cell judged once (a column of text repeats a few)
        for row, value in zip(suspects.tolist(), values.iloc[suspects].tolist()):
            try:
                reason = verdicts[value]
            except (KeyError, TypeError):  # not judged yet, or unhashable
                reason = _number_problem(value)
                with contextlib.suppress(TypeError):
                    verdicts[value] = reason
            if reason is not None:
                bad.setdefault(reason, []).append(row)
        if bad:
            found[column] = bad
    return found


def _tabular_problems(manifest: Manifest, name: str, numeric: Iterable[str]) -> list[str]:
    """Every cell of tabular modality ``name``'s numeric columns that is no finite number
    (:func:`bad_numbers`), a line per column and reason with the rows and the first values; a
    column of mostly text gets the advice to list it under ``categorical``."""
    problems = []
    for column, bad in bad_numbers(manifest, numeric).items():
        values = manifest.column(column)
        filled = int((~values.map(is_empty).to_numpy(dtype=bool)).sum())
        for reason, rows in bad.items():
            shown = ", ".join(_shown(values.iloc[r])[:40] for r in rows[:3]) + (", ..." if len(rows) > 3 else "")
            line = (f"tabular modality '{name}', column '{column}' {reason}: "
                    f"{manifest.rows_text(rows)} {'holds' if len(rows) == 1 else 'hold'} {shown}")
            comma = _decimal_comma_hint(manifest, values, rows) if reason == "must be numeric" else None
            if comma is not None:
                line += comma
            elif reason == "must be numeric" and len(rows) > filled / 2:
                line += f" (categories? list '{column}' under the modality's 'categorical', not 'columns')"
            problems.append(line)
    return problems


def _decimal_comma_hint(manifest: Manifest, values: pd.Series, rows: list[int]) -> str | None:
    """Advice for cells that are no number because a decimal comma separates their decimals
    (``12,50``, a spreadsheet's locale), said of the first such of ``rows``; None when none is."""
    hint = next((h for h in map(decimal_comma, values.iloc[rows[:1000]].tolist()) if h is not None), None)
    if hint is None:
        return None
    if hint.startswith("thousands"):  # 1,234,567: no decimal comma, commas between thousands
        reader = " (or read the CSV with pd.read_csv(..., thousands=','))" if manifest.name == "DataFrame" else ""
        return f" ({hint}{reader}; data.on_error: missing reads such cells as missing)"
    reader = ("or read the CSV with pd.read_csv(..., decimal=',')" if manifest.name == "DataFrame"
              else "or write the CSV with ';' between fields, which polymodal reads with decimal commas")
    return f" ({hint} with a decimal point, {reader}; data.on_error: missing reads such cells as missing)"


def _mark_bad_numbers(manifest: Manifest, numeric: Iterable[str]) -> None:
    """Record the numeric cells that are no number (:func:`bad_numbers`) on the manifest, by
    column (:meth:`~polymodal.data.manifest.Manifest.mark_absent`), for ``data.on_error:
    missing``: such a cell reads as missing (imputed), and encoding lists it."""
    for column, bad in bad_numbers(manifest, numeric).items():
        values = manifest.column(column)
        pairs = sorted((row, f"column '{column}' {reason}; got {_shown(values.iloc[row])[:40]}"
                        + (f" ({hint})" if (hint := decimal_comma(values.iloc[row])) else "") + ": read as missing")
                       for reason, rows in bad.items() for row in rows)
        manifest.mark_absent(column, np.array([r for r, _ in pairs], np.int64), [why for _, why in pairs])


def _number_problem(value: object) -> str | None:
    """Why a tabular cell is no finite number, as encoding words it (``must be numeric``), or None."""
    try:
        number(value)
    except ValueError as err:
        return str(err).split(";")[0]
    return None


def absent_reason(file: str) -> str:
    """Why a file cell naming ``file`` (its path, a packed array's ``#row`` left out), which is no
    file, is refused or skipped: ``file not found`` (with what the path looks like when that says
    why: a URL, a Windows path) or ``a folder, not a file``."""
    if os.path.isdir(file):
        return "a folder, not a file"
    if URL.search(file):
        return ("file not found: a URL, and polymodal reads local files only (no download at run time); download the "
                "files and put their paths in the column")
    posix = file.replace("\\", "/")
    if posix != file and os.sep != "\\" and os.path.exists(posix):
        return f"file not found: a Windows path ('\\' between folders), and {posix} exists; write / between folders"
    return "file not found"


URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://")  # https://, s3://...
FILE_SUFFIX = re.compile(r"\.[A-Za-z0-9_]{1,8}")


def _absent_hint(manifest: Manifest, name: str, modality: ModalityConfig, absent: list[tuple[int, str]],
                 present: int) -> str | None:
    """Advice on missing files: a column none of whose ``present`` cells names an existing file and
    whose cells do not look like file names (text, most likely) is probably not the modality's;
    else :func:`_working_folder_hint`."""
    if (len(absent) == present and not modality.folder_cells  # a folder needs no suffix
            and not any(os.path.exists(split_row_ref(path)[0]) for _, path in absent[:20])):  # not a folder either
        cells = manifest.take(modality.column, np.array([row for row, _ in absent[:20]], np.int64))
        if not any(isinstance(c, str) and FILE_SUFFIX.fullmatch(PurePath(split_row_ref(c)[0]).suffix) for c in cells):
            return (f"column '{modality.column}' names no file that exists, and its cells do not look like file "
                    f"names (e.g. {str(cells[0])[:60]!r}): is it the column {modality.kind} modality '{name}' "
                    "should read?")
    return _working_folder_hint(manifest, modality.column, absent[0][0])


def _working_folder_hint(manifest: Manifest, column: str, row: int) -> str | None:
    """Advice when a missing file's relative path names a file relative to the working folder: the
    manifest was written from there, but its paths resolve against its own folder; and for a
    DataFrame, whose relative paths resolve against the working folder, how to give its own."""
    cell = manifest.take(column, np.array([row]))[0]
    if not isinstance(cell, str) or os.path.isabs(os.path.expanduser(cell)):
        return None
    if manifest.name == "DataFrame":  # read from a CSV elsewhere with pandas, most likely
        if manifest.root.resolve() != Path.cwd().resolve():
            return None  # a root was given
        return (f"a DataFrame's relative paths resolve against {manifest.root} (the working folder), where its "
                "files are not; for paths relative to the file the frame was read from, pass "
                "read_manifest(frame, root=ITS_FOLDER), or the file's path itself")
    file = split_row_ref(cell)[0]
    if Path.cwd().resolve() == manifest.root.resolve() or not os.path.exists(file):
        return None
    return (f"column '{column}': relative paths resolve against the manifest's folder {manifest.root}, but "
            f"{file!r} is a file relative to the working folder {Path.cwd()}: write the paths relative to the "
            "manifest's folder, or absolute")


def _non_path_rows(column: pd.Series, rows: np.ndarray) -> list[tuple[int, object]]:
    """(row, cell) of the cells at ``rows`` that are not a path (a string or ``os.PathLike``)."""
    dtype = column.dtype
    if isinstance(dtype, pd.StringDtype):
        return []  # every present cell is a string
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return list(zip(rows.tolist(), column.iloc[rows].tolist()))  # no present cell is a path
    if pd.api.types.infer_dtype(column.iloc[rows], skipna=True) in ("string", "empty"):
        return []  # every cell text (one pass in C): the usual case
    bad = []
    for start in range(0, len(rows), BLOCK):
        block = rows[start:start + BLOCK]
        bad += [(row, value) for row, value in zip(block.tolist(), column.iloc[block].tolist())
                if not isinstance(value, (str, os.PathLike))]
    return bad


def _describe(value: object, limit: int = 60) -> str:
    """``int 1``, ``bytes b'a.wav'``, ``ndarray array([1, 2])``: a cell's type and (shortened) value."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= limit else text[:limit] + '...'}"


def _shown(value: object) -> str:
    """A cell as messages quote it: ``'heavy'``, ``inf`` (numpy scalars as Python's)."""
    return repr(python_scalar(value))


def _number(value: float) -> str:
    """``2``, ``0.5``, ``1.0000001``: a number as short as it is exact."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def anomaly_no_target() -> str:
    """What a manifest without an anomaly config's target column may mean."""
    unset = option("--set target=null", "overrides={'target': None}")
    return f"an anomaly detector trained on normal rows alone needs no target: set target: null ({unset})"


def _target_problems(manifest: Manifest, config: Config, training: bool) -> list[str]:
    """The target columns' problems (:func:`target_problems`); a manifest read for anything but
    training (an evaluation, a fit's test rows) is advised as one whose rows are scored."""
    problems = [p for column in config.targets
                for p in target_problems(manifest, column, config.task, scored=not training)]
    if training and config.task == "anomaly" and config.targets and config.targets[0] not in manifest.columns:
        problems[0] += f"; {anomaly_no_target()}"
    return problems


def target_problems(manifest: Manifest, column: str, task: str, what: str | None = None, *,
                    scored: bool = False, optional: bool = False) -> list[str]:
    """The problems of one target column: not in the manifest, empty cells and, for regression
    and multilabel, values that are not numbers, infinite or (multilabel) not 0/1. Rows are named
    as the manifest file numbers them (a subset's too), with their lines (``row 3 (line 5)``), and
    the first values found there are shown.

    Args:
        what: how messages name the column (default ``target column '<column>'``).
        scored: the rows are evaluated, not trained on: empty cells are advised as rows to leave
            out or predict instead (a fit's advice, learning from them semi-supervised, is no
            evaluation's).
        optional: an empty cell is a row without this label (a further task's), not a problem.
    """
    what = what or f"target column '{column}'"
    if column not in manifest.columns:
        return [f"{what} is not in {manifest.name}{did_you_mean(column, manifest.columns)} "
                f"(columns: {list(manifest.columns)})"]
    values = manifest.column(column)
    cells = target_cells(values, task)

    def held(bad: np.ndarray, numbers: np.ndarray | None = None) -> str:
        """``row 3 (line 5) holds 'x'``, ``rows 3 (line 5), 7 (line 9) hold 2, 0.5``: the first
        values, as the cells hold them or (``numbers``) as the numbers they read as."""
        shown = [_shown(values.iloc[r]) if numbers is None else _number(numbers[r]) for r in bad[:3]]
        examples = ", ".join(shown) + (", ..." if len(bad) > 3 else "")
        return f"{manifest.rows_text(bad)} {'holds' if len(bad) == 1 else 'hold'} {examples}"

    empty = np.flatnonzero(cells.empty)
    if scored:
        fix = (f"evaluating scores each row's prediction against its label, so every row needs one: remove those rows "
               f"(e.g. df.dropna(subset=['{column}'])), or predict unlabelled rows with 'polymodal predict' "
               "(predict_frame in Python)")
    else:
        fix = (f"every row needs one here: drop the others, e.g. df.dropna(subset=['{column}']); a semi-supervised "
               "fit learns from them as transfer.unlabeled rows")
    problems = [f"{what} is empty in {manifest.rows_text(empty)} ({fix})"] if len(empty) and not optional else []
    for bad, must in ((cells.not_numeric, "be numeric"), (cells.infinite, "hold finite numbers")):
        if bad.any():
            problems.append(f"{what} must {must} for task '{task}'; {held(np.flatnonzero(bad))}")
    if cells.not_binary.any():
        problems.append(f"{what} must hold 0 or 1 for task 'multilabel'; "
                        f"{held(np.flatnonzero(cells.not_binary), cells.numbers)}")
    return problems


@dataclass(frozen=True)
class TargetCells:
    """What the cells of one target column hold, as (N,) masks over its rows.

    Attributes:
        empty: no value (None, NaN, blank text).
        not_numeric: a value that does not read as a number (regression, multilabel).
        infinite: ``inf`` or ``-inf`` (regression, multilabel).
        not_binary: a finite number other than 0 and 1 (multilabel).
        numbers: the cells as numbers (NaN where not one); None for a class column.
    """

    empty: np.ndarray
    not_numeric: np.ndarray
    infinite: np.ndarray
    not_binary: np.ndarray
    numbers: np.ndarray | None

    @property
    def invalid(self) -> np.ndarray:
        """A value the task cannot use (empty cells are not counted)."""
        return self.not_numeric | self.infinite | self.not_binary


def target_cells(values: pd.Series, task: str) -> TargetCells:
    """The masks of :class:`TargetCells` for the cells ``values`` of a ``task`` target column
    (class columns: only ``empty``; a class training never saw is the target encoder's to find)."""
    empty = values.map(is_empty).to_numpy(dtype=bool)
    none = np.zeros(len(values), bool)
    if task not in ("regression", "multilabel"):
        return TargetCells(empty, none, none, none, None)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    not_binary = np.isfinite(numbers) & (numbers != 0) & (numbers != 1) if task == "multilabel" else none
    return TargetCells(empty, np.isnan(numbers) & ~empty, np.isinf(numbers), not_binary, numbers)
