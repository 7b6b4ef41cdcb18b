"""Manifests: one row per sample, one column per modality input, target column(s).

A manifest is a CSV, Parquet or JSON-lines file, or a pandas DataFrame. Relative file paths
resolve against the manifest's folder (a DataFrame's against ``root``, default the working
directory). An empty cell means the modality is missing for that row.

A manifest without rows, or whose column names repeat, is refused when read; checking it against
a config is :mod:`polymodal.data.validation`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from polymodal.data.cells import cell_text, is_empty
from polymodal.errors import ManifestError
from polymodal.utils.io import python_scalar
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.values import normalize_category
from polymodal.utils.warn import warn_user

READERS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "json",
           ".arrow": "arrow", ".feather": "arrow"}


WHOLE_ROW = ""  # the key of ``Manifest.absent_files`` for rows that hold no modality at all


@dataclass(repr=False)
class Manifest:
    """A table of samples plus where it came from.

    A :meth:`subset` is a view: it shares the table it was taken from and names its rows there, so
    holding out a validation share of a memory-mapped manifest of millions of rows copies none of
    its paths or texts. The data path reads a view through :meth:`select` and :meth:`take`, which
    copy only the columns and rows asked for; :attr:`frame` builds the view's own DataFrame.

    Attributes:
        data: the table as read, all its rows (index 0..N-1).
        root: the folder relative paths resolve against.
        name: how messages refer to it (the file name, or ``DataFrame``).
        line_offset: file line of row 0 (2 for CSV with a header), or None when lines mean nothing.
        source_rows: for a :meth:`subset`, each row's position in ``data``, which is its number in
            the manifest as read (None: every row of ``data``, in order); messages name that row.
        checked: the config and settings it was validated for (set by ``DataPipeline.read``, which
            does not validate it again for the same ones); None: not validated.
        labels: a DataFrame's own index, when it is not 0..N-1: predictions are indexed by it and
            messages name it (None: rows are numbered 0..N-1).
        absent_files: per file column, the rows of ``data`` (sorted) whose cell names a file that
            does not exist (or a folder where a file is needed), and the reason of each: validation
            records them (under ``data.on_error`` ``raise`` it refuses them instead), and encoding
            skips and lists them as it does unreadable files (:meth:`absent`). Under the key
            :data:`WHOLE_ROW`, the rows with no modality's cell filled in, skipped and listed alike.
    """

    data: pd.DataFrame
    root: Path
    name: str
    line_offset: int | None = None
    source_rows: np.ndarray | None = None
    checked: tuple | None = None
    labels: pd.Index | None = None
    absent_files: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self.data) if self.source_rows is None else len(self.source_rows)

    def __repr__(self) -> str:  # the table itself is `.data`: a notebook shows it on demand
        columns = list(self.columns)
        shown = ", ".join(map(repr, columns[:8])) + (f", ... ({len(columns)} in all)" if len(columns) > 8 else "")
        return f"Manifest({self.name!r}, {len(self)} rows, columns=[{shown}], root={str(self.root)!r})"

    @property
    def columns(self) -> pd.Index:
        return self.data.columns

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame indexed 0..N-1: ``data`` itself, or a subset's rows copied once."""
        return self.data if self.source_rows is None else self.select(list(self.data.columns))

    def select(self, columns: Sequence[str], rows: np.ndarray | None = None) -> pd.DataFrame:
        """``columns`` at ``rows`` (positions in this manifest; None: all), indexed 0..n-1: a copy of
        just those cells."""
        picked = self.data[list(columns)]
        if rows is None and self.source_rows is None:
            return picked
        return picked.iloc[self._data_rows(rows)].reset_index(drop=True)

    def column(self, name: str) -> pd.Series:
        """One column's values, indexed 0..N-1."""
        return self.select([name])[name]

    def take(self, column: str, rows: np.ndarray) -> list:
        """The cells of ``column`` at ``rows`` (positions in this manifest) as Python objects."""
        return self.data[column].iloc[self._data_rows(rows)].tolist()

    def require_column(self, column: str, purpose: str) -> None:
        """Raise :class:`ManifestError` unless ``column`` is one of this manifest's columns."""
        if column not in self.columns:
            raise ManifestError([f"column '{column}' ({purpose}) is not in {self.name}"
                                 f"{did_you_mean(column, self.columns)}; it has {list(self.columns)}"],
                                source=self.name)

    def groups(self, column: str, rows: np.ndarray, normalize: str | None = None) -> dict[str, np.ndarray]:
        """Boolean masks over ``rows`` (positions in this manifest), one per distinct value of
        ``column`` at those rows, keyed by the value as text (an empty cell: ``(empty)``), numbers
        in numeric order before text. ``normalize``: the column is a category a model keys as
        ``normalize_categories`` says (``strip_lower``: ``'F '`` and ``'f'`` are one group, ``f``),
        with :func:`~polymodal.utils.values.normalize_category` as the tabular preprocessor keys it;
        None: the text as written."""
        self.require_column(column, "to group rows by")
        cells = pd.Series(self.take(column, rows), dtype=object)
        keyed = cell_text if normalize is None else (lambda v: normalize_category(cell_text(v), normalize))
        keys = cells.map(lambda v: "(empty)" if is_empty(v) else keyed(v)).to_numpy()
        order = sorted(set(keys), key=lambda k: (1, 0.0, k) if _number(k) is None else (0, _number(k), k))
        return {key: keys == key for key in order}

    def _data_rows(self, rows: np.ndarray | None) -> np.ndarray:
        """Positions in ``data`` of this manifest's ``rows`` (None: all of them)."""
        if rows is None:
            return np.arange(len(self.data)) if self.source_rows is None else self.source_rows
        return rows if self.source_rows is None else self.source_rows[rows]

    def source_row(self, row: int) -> int:
        """The number of ``row`` in the manifest this one was read as (itself unless a subset)."""
        return int(row if self.source_rows is None else self.source_rows[row])

    def where(self, row: int) -> str:
        """Human location of a row, e.g. ``train.csv row 4 (line 6)``; a subset's row is named by
        its place in the file."""
        return f"{self.name} row {self.row_text(row)}"

    def row_text(self, row: int) -> str:
        """A row as :meth:`where` names it, without the manifest: ``4 (line 6)``, ``4`` (no lines),
        ``4 (index 'a')`` (a DataFrame's own index)."""
        row = self.source_row(row)
        line = f" (line {row + self.line_offset})" if self.line_offset is not None else ""
        label = f" (index {python_scalar(self.labels[row])!r})" if self.labels is not None else ""
        return f"{row}{line}{label}"

    def rows_text(self, rows: Sequence[int] | np.ndarray, limit: int = 10) -> str:
        """Rows (positions in this manifest) as messages name them: ``row 4 (line 6)``, ``rows 4
        (line 6), 9 (line 11)``, the first ``limit`` then the count: ``... (25 rows)``."""
        rows = np.asarray(rows, dtype=np.int64)
        shown = ", ".join(self.row_text(int(r)) for r in rows[:limit])
        more = f" ... ({len(rows)} rows)" if len(rows) > limit else ""
        return f"{'row' if len(rows) == 1 else 'rows'} {shown}{more}"

    def row_index(self, rows: np.ndarray) -> pd.Index:
        """How results name ``rows``: the DataFrame's own index labels when it had some, else the
        row numbers (``row``) in the manifest this one was read as."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.labels is None:
            return pd.Index(rows, name="row")
        return self.labels[self._data_rows(rows)]

    def subset(self, rows: Iterable[int] | np.ndarray) -> Manifest:
        """A view of the given rows (numbered from 0), same table, root and name; messages about
        its rows still name their rows (and lines) in the source manifest. Every check is of a row
        or a column, so a validated manifest's subset counts as validated (``checked``): a chunk
        of batch prediction is not checked (or warned about) again."""
        rows = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64)
        return Manifest(self.data, self.root, self.name, self.line_offset, self._data_rows(rows), self.checked,
                        self.labels, self.absent_files)

    def mark_absent(self, column: str, rows: np.ndarray, reasons: Sequence[str]) -> None:
        """Record that ``column``'s cells at ``rows`` (positions in this manifest) name no file,
        and why (``file not found``); replaces what was recorded for ``column`` (no rows: clears it)."""
        data_rows = self._data_rows(np.asarray(rows, dtype=np.int64))
        order = np.argsort(data_rows, kind="stable")
        self.absent_files = {**(self.absent_files or {}),
                             column: (data_rows[order], np.asarray(list(reasons), dtype=object)[order])}

    def absent(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """The positions in this manifest whose ``column`` cell names no file, and the reasons, as
        validation recorded them (:meth:`mark_absent`); empty when none were."""
        rows, reasons = (self.absent_files or {}).get(column, (np.zeros(0, np.int64), np.zeros(0, object)))
        if self.source_rows is None or not len(rows):
            return rows, reasons
        at = np.minimum(np.searchsorted(rows, self.source_rows), len(rows) - 1)  # sorted: one search per row
        hit = rows[at] == self.source_rows
        return np.flatnonzero(hit), reasons[at[hit]]

    def without_columns(self, columns: Iterable[str]) -> Manifest:
        """The same rows without ``columns`` (those it has), e.g. the files of modalities left out."""
        return replace(self, data=self.data.drop(columns=list(columns), errors="ignore"))

    def resolve(self, value: object) -> str | None:
        """The absolute path of a file cell, or None when the cell is empty."""
        if is_empty(value):
            return None
        path = os.path.expanduser(str(value))  # string ops: this runs once per cell of large manifests
        return path if os.path.isabs(path) else os.path.join(self.root, path)

    def resolve_all(self, values: Iterable[object]) -> list[str | None]:
        """:meth:`resolve` of each value; a relative path string (the common cell) is joined to the
        root by concatenation, which is what ``os.path.join`` does with it on POSIX, at a sixth of
        the cost."""
        if os.name != "posix":
            return [self.resolve(v) for v in values]
        root = os.fspath(self.root)
        prefix = root if root.endswith("/") or not root else root + "/"
        return [prefix + v if type(v) is str and v[:1] not in ("/", "~", "") and not v.isspace()
                else self.resolve(v) for v in values]


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def manifest_file(source: str | os.PathLike) -> Path:
    """``source`` as the path of a manifest file that is there.

    Raises:
        ManifestError: no such file, or a folder.
    """
    path = Path(source)
    if not path.is_file():
        what = "is a folder, not a manifest file" if path.is_dir() else "manifest file not found"
        raise ManifestError([f"{what}: {path}"], source=str(path))
    return path


def read_manifest(source: str | os.PathLike | pd.DataFrame | Manifest, root: str | os.PathLike | None = None,
                  text_columns: Iterable[str] = (), label_columns: Iterable[str] = ()) -> Manifest:
    """Read a manifest file or wrap a DataFrame.

    Args:
        source: a ``.csv``/``.tsv``/``.parquet``/``.jsonl``/``.arrow`` path, a DataFrame or a
            Manifest. An Arrow IPC file is memory-mapped (:mod:`polymodal.data.arrow_manifest`).
        root: folder for relative paths; defaults to the file's folder (an Arrow manifest's
            recorded one), or the working directory for a DataFrame.
        text_columns: CSV columns read as the text they hold, not as the numbers pandas would
            guess from one file (a zip code ``02139`` stays ``02139``, a code column stays ``12``
            where a blank cell would make it ``12.0``): file paths, texts and categories
            (:meth:`DataPipeline.read_raw` names them). Parquet and JSON keep their own types.
        label_columns: CSV columns of class labels: numbers where pandas reads them as numbers
            without changing a label (7, 7.5), their text where it would (codes ``01``, ``007``).

    Raises:
        ManifestError: the file does not exist, has an unsupported extension or cannot be parsed.
    """
    if isinstance(source, Manifest):
        return source
    if isinstance(source, pd.DataFrame):
        check_table(list(source.columns), len(source), "DataFrame")
        base = Path(root) if root is not None else Path.cwd()
        labels = None if source.index.equals(pd.RangeIndex(len(source))) else source.index
        if labels is not None and not labels.is_unique:
            repeated = labels[labels.duplicated()].unique()[:3].tolist()
            warn_user(f"the DataFrame's index repeats labels ({', '.join(map(repr, repeated))}...): predictions and "
                      "messages are named by it, so df.join(pred.predict_proba(df)) would pair every copy with "
                      "every other; df.reset_index(drop=True) (or a unique index) first")
        return Manifest(source.reset_index(drop=True), base.resolve(), "DataFrame", None, labels=labels)
    if not isinstance(source, str | os.PathLike):
        raise ManifestError([f"expected a manifest file path (CSV, TSV, Parquet, JSONL) or a pandas DataFrame, got "
                             f"{type(source).__name__}" + (" (wrap rows in pd.DataFrame(...))"
                                                           if isinstance(source, list | dict) else "")])
    path = manifest_file(source)
    fmt = READERS.get(path.suffix.lower())
    if fmt is None:
        raise ManifestError(
            [f"unsupported manifest extension '{path.suffix}'; use one of {sorted(READERS)}"], source=str(path)
        )
    try:
        if fmt == "csv":  # only empty cells are missing: the words NA, None, null stay text
            sep = _separator(path)
            decimal = "," if sep == ";" else "."  # a semicolon file's numbers are written 38,2
            header = _csv_header(path, sep)  # as written: pandas renames a repeated name ('image.1')
            with warnings.catch_warnings():  # mixed types in a large file's column: the columns that
                warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # matter are read as text below
                frame = pd.read_csv(path, sep=sep, decimal=decimal, keep_default_na=False, na_values=[""])
            index_col: bool | None = None
            if _first_row_longer(path, sep, len(header)):  # pandas made the extra leading fields an index and
                _check_trailing_delimiters(path, sep, header)  # shifted every column (a RangeIndex when numbers)
                index_col = False  # only empty fields past the header (a spreadsheet's trailing commas): dropped
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", pd.errors.DtypeWarning)
                    warnings.simplefilter("ignore", pd.errors.ParserWarning)
                    frame = pd.read_csv(path, sep=sep, decimal=decimal, keep_default_na=False, na_values=[""],
                                        index_col=False)
            # typed by this file: numbers, or (a large file, read in chunks) numbers in some rows only
            typed = [c for c in frame.columns if header.count(c) == 1 and not isinstance(frame[c].dtype, pd.StringDtype)]
            guessed = [c for c in dict.fromkeys(text_columns) if c in typed]
            labels = [c for c in dict.fromkeys(label_columns) if c in typed and c not in guessed]
            if guessed or labels:  # read those columns again as text (passing dtype up front would build
                # every text column through Python objects, twice the memory)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", pd.errors.ParserWarning)  # trailing delimiters, checked above
                    again = pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[""], usecols=guessed + labels,
                                        dtype=str, index_col=index_col)
                frame[guessed] = again[guessed]
                for column in labels:  # text unless all numbers, and numbers that keep every label
                    numeric = pd.api.types.is_numeric_dtype(frame[column])
                    if not numeric or _numbers_change_labels(again[column], frame[column]):
                        frame[column] = again[column]
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        elif fmt == "arrow":
            from polymodal.data.arrow_manifest import read_arrow

            frame, recorded = read_arrow(path)
            root = root if root is not None else recorded
        else:  # JSON strings stay strings ("007"); .json is an array of records, .jsonl one per line
            dates = {"convert_dates": False} if int(pd.__version__.split(".")[0]) < 3 else {}  # pandas 3: dtype=False
            frame = pd.read_json(path, lines=fmt == "jsonl", orient=None if fmt == "jsonl" else "records",
                                 dtype=False, **dates)
    except pd.errors.EmptyDataError:  # not even a header row
        raise ManifestError([f"{path.name} has no rows (the file is empty); a manifest needs a header row and "
                             "at least one sample"], source=str(path)) from None
    except ManifestError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as err:
        where = _parse_problem(path, fmt) if fmt in ("csv", "json", "jsonl") else None
        raise ManifestError([where or f"cannot parse {path.name}: {err}"], source=str(path)) from None
    check_table(header if fmt == "csv" else list(frame.columns), len(frame), path.name, str(path))
    base = Path(root) if root is not None else path.parent
    return Manifest(frame.reset_index(drop=True), base.resolve(), path.name, 2 if fmt == "csv" else None)


def _parse_problem(path: Path, fmt: str) -> str | None:
    """Where a text manifest that could not be parsed goes wrong, by line: the first line that is
    not UTF-8, or (JSON) the first record that is not valid JSON. None when neither is found, or
    the file cannot be read again (the parser's own message says what is wrong)."""
    try:
        return _first_bad_line(path, fmt)
    except OSError:
        return None


def _first_bad_line(path: Path, fmt: str) -> str | None:
    with path.open("rb") as file:
        for number, line in enumerate(file, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                return (f"{path.name} is not UTF-8: line {number} holds byte 0x{line[err.start]:02x} (byte "
                        f"{err.start + 1} of the line), which is not UTF-8 text; re-save it as UTF-8")
    if fmt == "json":
        try:
            json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as err:
            return f"{path.name} line {err.lineno}: not valid JSON: {_json_reason(err)}"
        return None
    if fmt == "jsonl":
        with path.open(encoding="utf-8-sig") as file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as err:
                    return (f"{path.name} line {number}: not a valid JSON record: {_json_reason(err)} (a JSON-lines "
                            "manifest holds one JSON object per line)")
    return None


def _json_reason(err: json.JSONDecodeError) -> str:
    """A JSON decoder's reason with its column: ``Expecting ',' delimiter at column 12``."""
    return f"{err.msg}{'' if err.msg.endswith(' at') else ' at'} column {err.colno}"


def _numbers_change_labels(text: pd.Series, numbers: pd.Series) -> bool:
    """Whether reading a label column as numbers changes a label (``007`` -> 7), judged by
    :func:`~polymodal.data.targets.label_key`, the form labels are matched by."""
    from polymodal.data.targets import label_key  # targets reads manifests

    pairs = pd.DataFrame({"text": text, "number": numbers}).dropna().drop_duplicates()
    return any(label_key(t) != label_key(n) for t, n in zip(pairs["text"], pairs["number"]))


def _separator(path: Path) -> str:
    """A ``.tsv`` file's tab; a ``.csv`` file's comma, or its semicolon when the header row holds
    semicolons and no comma (what spreadsheets write where the comma is the decimal mark: such a
    file's numbers are read with a decimal comma)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    with open(path, encoding="utf-8-sig", errors="replace") as file:
        first = file.readline()
    return ";" if ";" in first and "," not in first else ","


def _csv_header(path: Path, sep: str) -> list[str]:
    """The column names of a CSV/TSV file as its header row spells them.

    Raises:
        pandas.errors.EmptyDataError: the file is empty.
    """
    names = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
    return [str(name) for name in names.iloc[0].tolist()]


def _first_row_longer(path: Path, sep: str, columns: int) -> bool:
    """Whether the first data record has more fields than the header (what makes pandas read its
    leading fields as an index)."""
    import csv

    with path.open(newline="", encoding="utf-8-sig") as file:
        rows = csv.reader(file, delimiter=sep)
        next(rows, None)
        return len(next(rows, [])) > columns


def _check_trailing_delimiters(path: Path, sep: str, header: list[str]) -> None:
    """Allow data rows longer than the header only by empty fields (``a,b,c,``: the trailing
    delimiters spreadsheets write); a row with more values is refused with its line.

    Raises:
        ManifestError: the first line holding a value past the header's columns.
    """
    import csv

    with path.open(newline="", encoding="utf-8-sig") as file:
        rows = csv.reader(file, delimiter=sep)
        for i, row in enumerate(rows):
            extra = row[len(header):]
            if i > 0 and any(field.strip() for field in extra):
                raise ManifestError([f"{path.name} line {rows.line_num} has {len(row)} fields, but the header names "
                                     f"{len(header)} columns {header}: fields {extra[:3]} belong to no column. A "
                                     "delimiter inside a value must be quoted; row names (R's write.table) need a "
                                     "column name in the header, or write the file without them"], source=str(path))


def check_table(columns: list, n_rows: int, name: str, source: str | None = None) -> None:
    """Refuse a manifest whose column names repeat, or that has no rows."""
    named = [str(c) for c in columns if str(c).strip()]  # blank names (a spreadsheet's stray columns) are not repeats
    counts = pd.Series(named, dtype=object).value_counts(sort=False)
    repeated = [f"'{column}' ({count} times)" for column, count in counts.items() if count > 1]
    if repeated:
        raise ManifestError([f"{name}: column names must be distinct; repeated: {', '.join(repeated)} "
                             f"(columns: {[str(c) for c in columns]})"], source=source or name)
    if n_rows == 0:
        raise ManifestError([f"{name} has no rows (columns: {[str(c) for c in columns]}); a manifest needs "
                             "at least one sample"], source=source or name)
