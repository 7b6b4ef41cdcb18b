"""Signal CSV files read with the ``csv`` module and numpy, shared by training-time decoding and the
torch-free runtime: header detection, missing markers, channel columns by name or index, and where
a bad or non-finite sample sits (its CSV line).

A signal CSV has one column per channel and one row per sample, with or without a header row.
Its columns are separated by commas, or by semicolons or tabs when its first line holds one of
those and no comma (:func:`csv_delimiter`: spreadsheet exports where the comma is the decimal mark
separate columns with ';'). The rules are those the training pipeline followed when it read these
files with pandas:

- the first line is a header when one of its fields is a word (neither a number nor a missing
  marker such as ``n/a``) and its other fields are whole numbers (``time,volts``, ``time,1,2``),
  or when its fields are the column numbers ``0,1,...`` (what ``DataFrame(array).to_csv`` writes);
- blank lines (empty, or spaces and tabs only) are skipped; a UTF-8 byte-order mark is dropped;
- an empty cell and pandas' missing-value markers (``NA``, ``n/a``, ``NaN``, ``null``...) are NaN
  (the preprocessor then refuses the sample, naming its line); a row shorter than the first is
  padded with NaN, one longer is refused, and so is a file without a sample (a header alone);
- any other cell that is not a number (``abc``, ``?``, ``1_000``) is refused with its line and column
  (a decimal comma, ``0,13`` in a ';'-separated file, is named as one: samples need a decimal point).
"""

from __future__ import annotations

import csv
import io
import math
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polymodal.errors import DecodeError
from polymodal.utils.values import NA_VALUES  # the cells read as a missing sample (NaN)

# a number as pandas' CSV parser takes it: decimal or scientific, or an infinity; spaces and tabs around it
_NUMBER = re.compile(r"[ \t]*[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?)[ \t]*",
                     re.IGNORECASE | re.ASCII)
_WHOLE = re.compile(r"[+-]?\d+")
_FIRST_LINE = re.compile(r"[^\r\n]*")
# text made only of these characters holds no number that float() and pandas read differently
# (no underscores, letters other than exponents, or non-ASCII digits and spaces)
_PLAIN = re.compile(r"[0-9eE.+\-,\" \t\r\n]*")
_CR = re.compile(r"\r\n?")
_BLANK_LINE = re.compile(r"^[ \t]*$", re.MULTILINE)
# control characters a text file does not hold (binary formats such as NPY, WAV or ZIP do)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DECIMAL_COMMA = re.compile(r"[ \t]*[+-]?[0-9]*,[0-9]+(?:[eE][+-]?[0-9]+)?[ \t]*")


@dataclass(frozen=True)
class SignalCSV:
    """A signal CSV read into an array.

    Attributes:
        samples: float32 (channels, samples); NaN where a cell was empty or a missing marker.
        columns: the label of each channel kept: its header name, or its position (from 0).
        header: whether the first line named the columns.
        lines: the (1-based) line of the file that holds each sample.
    """

    samples: np.ndarray
    columns: list[str] | list[int]
    header: bool
    lines: np.ndarray


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def csv_delimiter(text: str) -> str:
    """The character that separates a signal CSV's columns: a comma, unless the first line holds
    none and holds a semicolon (an export where the comma is the decimal mark) or, spaces and
    tabs around it aside, a tab; then that."""
    first = _FIRST_LINE.match(text.removeprefix("\ufeff")).group()
    if "," in first:
        return ","
    if ";" in first:
        return ";"
    return "\t" if "\t" in first.strip(" \t") else ","


def has_header(text: str, delimiter: str | None = None) -> bool:
    """Whether a signal CSV's first line names its columns: it does when one of its fields is a word
    (neither a number nor text read as a missing value, :data:`NA_VALUES`, such as ``n/a``) and its
    other fields are whole numbers, as channel numbers are (``time,volts``, ``time,1,2``); and when
    two or more fields are the column numbers ``0,1,...`` (what ``pandas.DataFrame(array).to_csv``
    writes; a lone ``0`` is a sample). Any other line is
    the first sample: ``0.126,n/a`` has a missing value, ``0.5,abc`` a value that is not a number.
    ``delimiter``: what separates the fields (None: :func:`csv_delimiter`)."""
    delimiter = csv_delimiter(text) if delimiter is None else delimiter
    first = _FIRST_LINE.match(text.removeprefix("\ufeff")).group()
    fields = [f.strip().strip('"') for f in first.strip(" \t" if delimiter == "\t" else None).split(delimiter)]
    words = [f for f in fields if f and not _is_number(f) and f not in NA_VALUES]  # a missing value is no word
    numbers = [f for f in fields if f and _is_number(f)]
    if words and all(_WHOLE.fullmatch(f) for f in numbers):
        return True
    return len(fields) > 1 and fields == [str(i) for i in range(len(fields))]  # one column: "0" is a sample


def is_csv_text(data: bytes) -> bool:
    """Whether file content is text a CSV reader takes: UTF-8 (a byte-order mark allowed) without
    control characters other than tab, line feed and carriage return. Binary files (``.npy``,
    audio, archives) fail it, so content alone tells a CSV upload from them."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return _CONTROL.search(text) is None


def _blank(record: list[str]) -> bool:
    """Whether a parsed line is blank (empty, or spaces and tabs only): skipped, as pandas skips it.
    A quoted empty field (``""``) is not blank: it is a row with a missing value."""
    return not record or (len(record) == 1 and record[0] != "" and not record[0].strip(" \t"))


def _header_names(record: list[str]) -> list[str]:
    """Header fields as pandas names the columns: ``Unnamed: i`` for an empty one, ``a.1`` for the
    second ``a``."""
    names = [name if name else f"Unnamed: {i}" for i, name in enumerate(record)]
    counts: dict[str, int] = {}
    for i, name in enumerate(names):
        count = counts.get(name, 0)
        while count > 0:
            counts[name] = count + 1
            name = f"{name}.{count}"
            count = counts.get(name, 0)
        names[i] = name
        counts[name] = count + 1
    return names


def _picks(names: list[str], columns: Sequence[str] | None) -> list[int]:
    """The positions of the header's ``columns`` (all when None)."""
    if columns is None:
        return list(range(len(names)))
    absent = [c for c in columns if c not in names]
    if absent:
        raise DecodeError(f"columns {absent} (preprocess.channels) are not in the CSV; it has {names}")
    return [names.index(c) for c in columns]


def _read_plain(text: str, header: bool, delimiter: str = ",") -> tuple[list[str] | list[int], np.ndarray, int] | None:
    """The common case read in one call of numpy's parser: every row a complete list of numbers,
    no quotes, no blank line. Returns (column labels, (rows, columns) float64, the line of the
    first row), or None for anything else (the caller's cell-by-cell reading then decides)."""
    text = _CR.sub("\n", text) if "\r" in text else text
    first, _, body = text.partition("\n") if header else ("", "", text)
    body = body.removesuffix("\n")
    plain = body if delimiter == "," else body.replace(",", "?").replace(delimiter, ",")  # a ',' is no separator
    if not body or '"' in text or _PLAIN.fullmatch(plain) is None or _BLANK_LINE.search(body):
        return None
    try:
        table = np.loadtxt(io.StringIO(body), delimiter=delimiter, dtype=np.float64, ndmin=2, comments=None)
    except ValueError:  # an empty cell, a cell that is not a number, rows of different lengths
        return None
    if not header:
        return list(range(table.shape[1])), table, 1
    names = _header_names(next(csv.reader([first], delimiter=delimiter)))
    return (names, table, 2) if len(names) == table.shape[1] else None


def read_csv_signal(data: bytes, columns: Sequence[str] | None = None) -> SignalCSV:
    """Read signal CSV file content (see the module docstring).

    Args:
        data: the file's bytes.
        columns: the header names of the channels to keep, in this order (default: every column).

    Raises:
        DecodeError: (with no path: the caller adds it) the content is not UTF-8 or not a table
            (a row longer than the first), holds no sample, names no such column, or holds a cell
            that is neither a number nor a missing marker.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DecodeError(f"unreadable or corrupt signal ({err})") from None
    delimiter = csv_delimiter(text)
    header = has_header(text, delimiter)
    if columns is not None and not header:
        raise DecodeError(f"preprocess.channels names columns {list(columns)}, but the CSV has no header row "
                          "(its first row is numbers); give channel indices instead")
    plain = _read_plain(text, header, delimiter)
    if plain is not None:
        names, table, first_line = plain
        picks = _picks(names, columns) if header else list(range(len(names)))  # type: ignore[arg-type]
        with np.errstate(over="ignore"):  # past float32's range: infinite, refused as any infinity is
            samples = np.ascontiguousarray(table[:, picks].T, dtype=np.float32)
        lines = np.arange(first_line, first_line + len(table), dtype=np.int64)
        return SignalCSV(samples, [names[i] for i in picks], header, lines)
    return _read_cells(text, header, columns, delimiter)


def _read_cells(text: str, header: bool, columns: Sequence[str] | None, delimiter: str = ",") -> SignalCSV:
    """:func:`read_csv_signal` cell by cell: what :func:`_read_plain` leaves (missing values, bad
    cells, quotes, blank lines, short or long rows), with the line of every problem."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    names: list[str] | list[int] | None = None
    picks: list[int] = []
    values, lines = array("d"), array("q")
    bad: tuple[int, str | int, str] | None = None
    nan = math.nan
    try:
        for record in reader:
            if _blank(record):
                continue
            if names is None:
                if header:
                    names = _header_names(record)
                    picks = _picks(names, columns)
                    continue
                names = list(range(len(record)))
                picks = list(names)
            if len(record) > len(names):
                first = "its header row" if header else "its first row"
                raise DecodeError(f"CSV line {reader.line_num} has {len(record)} fields, more than the {len(names)} "
                                  f"of {first}")
            width = len(record)
            for index in picks:
                field = record[index] if index < width else ""  # a short row: missing values, as pandas pads it
                if field in NA_VALUES:
                    values.append(nan)
                elif _NUMBER.fullmatch(field):
                    values.append(float(field))
                else:
                    if bad is None:
                        bad = (reader.line_num, names[index], field)
                    values.append(nan)
            lines.append(reader.line_num)
    except csv.Error as err:
        raise DecodeError(f"unreadable or corrupt signal (CSV line {reader.line_num}: {err})") from None
    if names is None:
        raise DecodeError("the signal holds no samples: the CSV file has no rows")
    if not lines:
        raise DecodeError(f"the signal holds no samples: the CSV has a header row {names} and no rows below it")
    if bad is not None:
        line, label, value = bad
        column = f"'{label}'" if header else f"{label} (counting from 0)"
        hint = ""
        if delimiter != "," and _DECIMAL_COMMA.fullmatch(value):
            hint = (f" (the file separates its columns with {'a tab' if delimiter == chr(9) else repr(delimiter)} "
                    "and seems to write ',' as the decimal mark: write samples with a decimal point, such as 0.13)")
        raise DecodeError(f"CSV line {line}, column {column} holds {value!r}; signal samples must be numbers{hint}")
    with np.errstate(over="ignore"):  # past float32's range: infinite, refused as any infinity is
        samples = np.frombuffer(values, np.float64).reshape(len(lines), len(picks)).T.astype(np.float32)
    return SignalCSV(np.ascontiguousarray(samples), [names[i] for i in picks], header,
                     np.frombuffer(lines, np.int64).copy())


def pick_channels(samples: np.ndarray, channels: Sequence[int]) -> np.ndarray:
    """The channels (rows) of a (C, L) signal at ``channels`` (``preprocess.channels`` indices,
    negative ones from the end).

    Raises:
        DecodeError: an index out of range.
    """
    bad = [c for c in channels if not -samples.shape[0] <= c < samples.shape[0]]
    if bad:
        raise DecodeError(f"channels {bad} (preprocess.channels) out of range; the signal has {samples.shape[0]}")
    return samples[list(channels)]


def non_finite_reason(samples: np.ndarray, lines: np.ndarray | None = None) -> str:
    """The message for a (C, L) signal that holds NaN or an infinity: where the first is (the
    earliest sample, the lowest channel among ties; with ``lines``, a CSV's, also its line)."""
    sample, channel = np.argwhere(~np.isfinite(samples.T))[0]
    where = f"channel {channel}, sample {sample}"
    if lines is not None and sample < len(lines):
        where += f" (CSV line {lines[sample]})"
    count = int((~np.isfinite(samples)).sum())
    return (f"signal holds {count} NaN or infinite value(s), the first ({samples[channel, sample]}) at {where}; "
            "samples must be finite")
