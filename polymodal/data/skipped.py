"""Files that ``data.on_error`` skipped: the record of each (:class:`Skipped`), the table runs and
commands write (:func:`skipped_frame`), the warning that names them (:func:`describe_skipped`),
and the refusal of a table that skipping left without a row (:func:`require_rows`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from polymodal.data.manifest import Manifest
from polymodal.errors import ManifestError

if TYPE_CHECKING:
    from polymodal.data.encode import EncodedTable


@dataclass
class Skipped:
    """A file (or inline value) that could not be decoded and was skipped.

    ``row`` indexes the encoded manifest; ``source_row`` is that row's number in the manifest
    file (they differ for a subset, e.g. the rows a validation split left for training).
    """

    modality: str
    row: int
    where: str
    path: str | None
    reason: str
    source_row: int


def skipped_frame(skipped: list[Skipped]) -> pd.DataFrame:
    """The skipped files as a table (written to ``skipped.csv`` in the run folder); ``row`` is the
    row's number in the manifest file."""
    records = [{"modality": s.modality, "row": s.source_row, "where": s.where, "path": s.path, "reason": s.reason}
               for s in sorted(skipped, key=lambda s: s.source_row)]  # by row, as the manifest reads
    return pd.DataFrame(records, columns=["modality", "row", "where", "path", "reason"])


def _kinds(skipped: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Which entries of ``skipped`` are rows with no modality present, and which inline values (a
    table's or a text's cells); the others are files."""
    whole = skipped["modality"].map(lambda m: not (isinstance(m, str) and m))
    inline = skipped["path"].map(lambda path: not (isinstance(path, str) and path)) & ~whole
    return whole, inline


def count_skipped(skipped: pd.DataFrame, on_error: str, emptied: str = "left out") -> str:
    """What ``data.on_error`` did with the files and inline values (a table's or a text's cells) of
    ``skipped`` (a :func:`skipped_frame`), counted by kind: under ``skip`` they are skipped
    (``2 unreadable or missing file(s) skipped``); under ``missing`` they are read as missing
    (``3 unreadable value(s) read as missing``) and a row left with no modality present is
    ``emptied`` (what that did to it: see :func:`describe_skipped`)."""
    whole, inline = _kinds(skipped)
    files, values, rows = len(skipped) - int(inline.sum()) - int(whole.sum()), int(inline.sum()), int(whole.sum())
    counted = [f"{n} {what}" for n, what in ((files, "unreadable or missing file(s)"), (values, "unreadable value(s)"))
               if n]
    rows_said = f"{rows} row(s) with no modality present" if rows else ""
    if on_error == "skip":
        return " and ".join([*counted, rows_said] if rows_said else counted) + " skipped"
    said = [f"{' and '.join(counted)} read as missing"] if counted else []
    return "; ".join(said + ([f"{rows_said} {emptied}"] if rows_said else []))


def describe_skipped(skipped: pd.DataFrame, on_error: str, shown: int = 5, emptied: str = "left out") -> str:
    """How many files (and inline values: a table's or a text's cells) ``data.on_error`` skipped
    or read as missing (:func:`count_skipped`) and what that did, with the first ``shown`` of them
    (``skipped``: a :func:`skipped_frame`); one line each.

    Args:
        emptied: what ``on_error: missing`` did to a row left with no modality present, as the
            predicate of "a row ... is" and "they are" (an anomaly detector's predictions keep such
            a row, flagged: see :attr:`~polymodal.estimator.Estimator.emptied_rows_predicted`).
    """
    whole, inline = _kinds(skipped)
    files = len(skipped) - int(inline.sum()) - int(whole.sum())
    if whole.all():  # no file or value to speak of: the count says what happened to them
        effect = ""
    elif on_error == "skip":
        effect = "; rows with one are left out"
    else:  # missing: a file's modality is missing in its row; a table's value is missing in its cell
        said = ["their modality counts as missing in those rows"] if files else []
        said += ["a value reads as missing in its cell (imputed, as a blank one is)"] if inline.any() else []
        effect = "; " + "; ".join(said) + f" (a row left with no modality present is {emptied})"
    lines = [f"{count_skipped(skipped, on_error, emptied)} (data.on_error: {on_error}){effect}:"]
    for record in skipped.head(shown).to_dict("records"):
        path = record["path"] if isinstance(record["path"], str) and record["path"] else None  # None: an inline value
        modality = record["modality"] if isinstance(record["modality"], str) and record["modality"] else None
        lines.append(f"  {record['where']}" + (f", modality '{modality}'" if modality else "") + ": "
                     + (f"{path} ({record['reason']})" if path else record["reason"]))
    if len(skipped) > shown:
        lines.append(f"  ... and {len(skipped) - shown} more")
    return "\n".join(lines)


def require_rows(table: EncodedTable, manifest: Manifest, on_error: str, purpose: str, rows: str = "row(s)") -> None:
    """Refuse a table that skipping unreadable files (``data.on_error``) left without a row.

    Args:
        purpose: what the rows were for (``train on``, ``evaluate``), as the message says it.
        rows: what the message calls the manifest's rows (``training row(s)``).

    Raises:
        ManifestError: ``table`` has no row, naming how many were skipped and the first file.
    """
    if len(table):
        return
    first = ""
    if table.skipped:
        s = min(table.skipped, key=lambda skipped: skipped.source_row)  # the first row, as the lists read
        first = (f"; first: {s.where}" + (f", modality '{s.modality}'" if s.modality else "") + ": "
                 + (f"{s.path} ({s.reason})" if s.path else s.reason))
    empty = sum(not s.modality for s in table.skipped)  # rows with no modality present
    files = len(table.skipped) - empty
    why = ("had an unreadable file" if not empty else "held no modality" if not files
           else "had an unreadable file or held no modality")
    counted = [f"{n} {what}" for n, what in ((files, "file(s)"), (empty, "row(s) with no modality present")) if n]
    raise ManifestError([f"{manifest.name}: no row is left to {purpose}: each of its {len(manifest)} {rows} {why}, "
                         f"skipped ({', '.join(counted) or 'none listed'}; data.on_error: {on_error}){first}"],
                        source=manifest.name)


def skipped_by_split(skipped: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The skipped-file tables of several manifests as one, with a ``split`` column naming each."""
    frames = [frame.assign(split=name) for name, frame in skipped.items() if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else skipped_frame([]).assign(split=[])

