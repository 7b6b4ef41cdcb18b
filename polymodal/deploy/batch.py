"""Batch prediction of large manifests: chunk by chunk, with a progress bar, resumable.

``predict_to_file(predictor, data, out)`` predicts ``chunk_rows`` rows at a time (only one chunk's
files are decoded and held in memory), writes each finished chunk to ``.<out name>.parts/`` next
to ``out``, and at the end joins the parts into ``out`` (``.csv`` or ``.parquet``, atomically)
and removes the folder. After an interruption, ``resume=True`` skips the chunks already written,
provided the manifest, chunk size, support set and model are the ones the parts were made from;
``overwrite=True`` discards them and starts over; with neither, the call is refused rather than
deleting finished work.

Every row gets its manifest row number (column ``row``), then the manifest columns named in
``keep`` (an id to join on), then the predictions; rows dropped for an unreadable file
(``data.on_error: skip``) are missing from ``out``; with ``missing``, a row left with no modality
present keeps its place, every modality ``absent`` and no prediction (an anomaly detector's:
flagged, with a NaN score), as ``predict_frame`` gives it, and the output's columns have the same
types however the rows fall into chunks; every skipped file is listed, with the reason, in
``<out stem>.skipped.csv`` beside it (removed when nothing was skipped).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.config.columns import csv_columns
from polymodal.data.content_keys import manifest_key
from polymodal.data.manifest import Manifest, manifest_file, read_manifest
from polymodal.data.pipeline import DataSource
from polymodal.errors import OptionError, SchemaMismatchError, option
from polymodal.estimator import PREDICT
from polymodal.runfolder import write_skipped
from polymodal.utils.io import (
    atomic_write,
    atomic_write_json,
    check_folder_path,
    check_table_out,
    check_table_path,
    exclusive_lock,
)
from polymodal.utils.progress import progress_bar
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.warn import warn_user

STATE_FILE = "progress.json"
# the parts' columns; 2: anomaly parts hold `absent`, 3: every part does, 4: a manifest file's fingerprint is
# its content's, however its columns are read, 5: a predictor's parts under data.on_error: missing keep the
# rows left with no modality (parts of another format never mix)
PARTS_FORMAT = 5


@dataclass
class BatchReport:
    """Rows written, chunks computed now and chunks reused from an interrupted run, the files
    skipped (written to ``skipped_file`` when there are any), and ``unpredicted``: the rows written
    without a prediction (their first prediction column empty: under ``data.on_error: missing`` a
    row left with no modality present; a detector's row its scorer could not score)."""

    out: Path
    rows: int
    chunks_done: int
    chunks_resumed: int
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped_file: Path | None = None
    unpredicted: int = 0


def skipped_path(out: Path) -> Path:
    """Where the files skipped while predicting into ``out`` are listed: ``<stem>.skipped.csv``."""
    return out.with_name(f"{out.stem}.skipped.csv")


def parts_folder(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"


def chunks_done(parts: Path) -> int:
    """How many finished chunks an interrupted call left in ``parts`` (0 when there is no folder)."""
    return len(list(parts.glob("part-*.parquet"))) if parts.is_dir() else 0


def predict_to_file(predictor: Any, data: DataSource, out: str | os.PathLike, *, chunk_rows: int = 1024,
                    resume: bool = False, overwrite: bool = False, progress: bool = True,
                    support: DataSource | None = None, keep: Sequence[str] = (),
                    on_chunk: Callable[[int], None] | None = None) -> BatchReport:
    """Predict every row of ``data`` into ``out`` (see the module docstring).

    Args:
        predictor: a fitted :class:`~polymodal.predictor.MultimodalPredictor`.
        chunk_rows: rows decoded and predicted at a time.
        resume: continue from the parts an interrupted call left.
        overwrite: replace a file already at ``out`` (refused otherwise, unless ``resume`` finishes
            an interrupted call into it), and without ``resume`` discard the chunks an interrupted
            call left (refused otherwise); the manifest being predicted is never replaced.
        support: few-shot models: labelled rows whose classes' prototypes classify ``data``
            (see :mod:`polymodal.fewshot`).
        keep: manifest columns copied into ``out`` after ``row`` (ids, file names), as the manifest
            holds them.
        on_chunk: called with each chunk's index after it is written (progress hooks, tests).

    Raises:
        OptionError: ``out`` is not a ``.csv`` / ``.parquet`` file name in a folder that can be
            written, or is taken: a file there, or finished chunks of an interrupted call, without
            ``overwrite`` (or ``resume``); ``resume`` of a finished prediction (a file at ``out``
            and no parts), without ``overwrite``.
        SchemaMismatchError: bad chunk size, parts from another manifest,
            or a support set for a model that takes none (refused, like a bad support manifest,
            before any file is written).
        ManifestError: the manifest does not fit the model (checked before any prediction).
        OptionError: a ``keep`` column the manifest lacks, or one named as an output column.
    """
    out = check_table_path(out, option("--out"))  # found now, not after every row is predicted
    check_folder_path(out.parent, option("--out"), writable=True)  # where the parts folder and the table go
    def busy(held: Path) -> OptionError:
        return OptionError([f"{out} ({option('--out')}) is being written by another prediction (it holds {held}); "
                            f"wait for it to end, or give another {option('--out')}"])

    with exclusive_lock(out, busy):  # two predictions into one file would mix their chunks
        return _predict_to_file(predictor, data, out, chunk_rows=chunk_rows, resume=resume, overwrite=overwrite,
                                progress=progress, support=support, keep=keep, on_chunk=on_chunk)


def _predict_to_file(predictor: Any, data: DataSource, out: Path, *, chunk_rows: int, resume: bool, overwrite: bool,
                     progress: bool, support: DataSource | None, keep: Sequence[str],
                     on_chunk: Callable[[int], None] | None) -> BatchReport:
    """:func:`predict_to_file` once ``out`` is checked and locked."""
    if chunk_rows < 1:
        raise SchemaMismatchError(f"chunk_rows must be at least 1; got {chunk_rows}")
    # the manifest itself always refused; an existing out without overwrite, unless resumed (below)
    check_table_out(out, overwrite=overwrite or resume, inputs={"the manifest being predicted": data})
    if resume and out.exists() and not overwrite and not parts_folder(out).is_dir():
        # the parts folder goes only once the table is joined: out is a finished prediction
        raise OptionError([f"{option('--resume')}: {out} is finished (every row predicted); nothing to resume: "
                           f"give {option('--overwrite')} to predict again"])
    finished = chunks_done(parts_folder(out))
    if finished and not resume and not overwrite:
        raise OptionError([f"{out} ({option('--out')}): {finished} chunk(s) of an interrupted prediction into it are "
                           f"already done (in {parts_folder(out)}): {option('--resume')} to continue, "
                           f"{option('--overwrite')} to start over"])
    pipeline, _ = predictor.require_fitted()
    predictor.require(PREDICT, "predict")  # a model that makes no predictions: refused before any file is written
    # a file's content, not the table read from it (a kept column is read as text: the same file)
    source_key = manifest_key(manifest_file(data)) if isinstance(data, str | os.PathLike) else None
    if keep and isinstance(data, str | os.PathLike):  # kept as written: an id 00123 stays 00123, not 123.0
        columns = csv_columns(predictor.config)
        data = read_manifest(data, text_columns=[*columns["text_columns"], *(c for c in keep if c not in
                                                                           columns["label_columns"])],
                             label_columns=columns["label_columns"])
    manifest = pipeline.read(data, require_target=False)  # every problem reported before work starts
    manifest = replace(manifest, labels=None)  # the output's `row` is the row number, a DataFrame's too
    keep = list(keep)
    _check_keep(keep, manifest)
    state = {"source": manifest.name, "rows": len(manifest), "chunk_rows": chunk_rows,
             "fingerprint": source_key or manifest_key(manifest.frame), "model": predictor.model_fingerprint(),
             "on_error": predictor.config.data.on_error,  # skip drops rows, missing keeps them: not mixed
             "keep": keep, "format": PARTS_FORMAT}
    if support is not None:
        state["support"] = manifest_key(read_manifest(support).frame)
    parts = parts_folder(out)
    reuse = resume and parts.is_dir()
    if reuse:
        _check_resumable(parts, state)
    elif resume:
        warn_user(f"{option('--resume')}: no interrupted prediction into {out} to continue; predicting every row")
    starts = list(range(0, len(manifest), chunk_rows))
    done = resumed = 0
    shown = predictor.config.train.progress
    predictor.config.train.progress = False  # one bar for the whole manifest, not one per chunk
    try:  # skipped files are warned once, for every chunk, below
        # a bad support set: refused before any file; embedded with the modalities the manifest has, as predict_frame's
        with predictor.using_support(support, queries=manifest), predictor.quiet_skips():
            if parts.is_dir() and not reuse:
                shutil.rmtree(parts)
            parts.mkdir(parents=True, exist_ok=True)
            atomic_write_json(parts / STATE_FILE, state)
            with progress_bar(len(manifest), f"predicting {manifest.name}", enabled=progress, min_total=1) as advance:
                for index, start in enumerate(starts):
                    rows = range(start, min(start + chunk_rows, len(manifest)))
                    if (parts / f"part-{index:06d}.parquet").is_file():
                        resumed += 1
                    else:
                        _predict_chunk(predictor, manifest, rows, parts, index, keep)
                        done += 1
                        if on_chunk is not None:
                            on_chunk(index)
                    advance(len(rows))
    finally:
        predictor.config.train.progress = shown
    files = [parts / f"part-{i:06d}.parquet" for i in range(len(starts))]
    written = join_parts(files, out)
    unpredicted = _unpredicted(files, 1 + len(keep))  # before the parts go
    lists = [pd.read_parquet(f) for f in sorted(parts.glob("skipped-*.parquet"))]
    skipped = pd.concat(lists, ignore_index=True) if lists else pd.DataFrame()
    write_skipped(skipped_path(out), skipped)
    shutil.rmtree(parts)
    predictor.warn_skipped(skipped, str(skipped_path(out)), predicting=True)
    return BatchReport(out, written, done, resumed, skipped, None if skipped.empty else skipped_path(out),
                       unpredicted)


def _check_resumable(parts: Path, state: dict[str, Any]) -> None:
    """Refuse to resume from parts made from another manifest, chunk size, support set or model."""
    found = json.loads((parts / STATE_FILE).read_text(encoding="utf-8")) if (parts / STATE_FILE).is_file() else {}
    found.setdefault("keep", [])  # parts written before --keep kept no column
    if found != state:
        raise SchemaMismatchError(
            f"cannot resume: the partial predictions in {parts} were made from {found.get('source')} "
            f"({found.get('rows')} rows, chunk_rows {found.get('chunk_rows')}); this call has {state['source']} "
            f"({state['rows']} rows, chunk_rows {state['chunk_rows']})"
            + (", content changed since (a cell edited, rows reordered)"
               if found.get("fingerprint") != state["fingerprint"] and found.get("rows") == state["rows"] else "")
            + (", another support set" if found.get("support") != state.get("support") else "")
            + (f", {option('--keep', 'keep')} {found['keep']} (now {state['keep']})" if found["keep"] != state["keep"] else "")
            + (", another model" if found.get("model") != state.get("model") else "")
            + (f", data.on_error {found.get('on_error')} (now {state.get('on_error')})"
               if found.get("on_error") != state.get("on_error") else "")
            + (", written by another polymodal version (its columns or rows differ)"
               if found.get("format") != state["format"] else "")
            + f". Give {option('--overwrite')} instead of {option('--resume')} to start over")


def _check_keep(keep: list[str], manifest: Manifest) -> None:
    """Refuse ``keep`` columns that ``manifest`` lacks, and any named twice (one named as an output
    column is refused with the first chunk, before it is written)."""
    problems = [f"{option('--keep', 'keep')} {c}: not a column of {manifest.name}{did_you_mean(c, manifest.columns)} "
                f"(columns: {list(manifest.columns)})" for c in keep if c not in manifest.columns]
    problems += [f"{option('--keep', 'keep')} {c}: named twice" for c in sorted({c for c in keep if keep.count(c) > 1})]
    if problems:
        raise OptionError(problems)


def _predict_chunk(predictor: Any, manifest: Manifest, rows: range, parts: Path, index: int,
                   keep: list[str]) -> None:
    """Predict ``rows`` of ``manifest`` into ``part-<index>.parquet``, their skipped files into
    ``skipped-<index>.parquet`` (written first: a resumed run finds both or the list alone, and
    recomputes the chunk), or remove a stale list of an interrupted run when nothing is skipped."""
    frame = predictor.predict_frame(manifest.subset(rows))
    frame.index = frame.index + rows.start  # manifest row numbers
    frame = frame.reset_index()
    taken = [c for c in keep if c in frame.columns]
    if taken:
        raise OptionError([f"{option('--keep', 'keep')} {c}: the predictions have a column of that name ({list(frame.columns)})"
                           for c in taken])
    for position, column in enumerate(keep, start=1):  # after `row`, for the rows kept (skip drops some)
        frame.insert(position, column, manifest.select([column], frame["row"].to_numpy())[column].array)
    listed = parts / f"skipped-{index:06d}.parquet"
    skipped = predictor.eval_skipped  # rows already named by their manifest row (the subset keeps them)
    if skipped.empty:
        listed.unlink(missing_ok=True)
    else:
        atomic_write(listed, lambda tmp: skipped.to_parquet(tmp, index=False))
    atomic_write(parts / f"part-{index:06d}.parquet", lambda tmp: frame.to_parquet(tmp, index=False))


def join_parts(files: list[Path], out: Path) -> int:
    """Concatenate parquet parts into ``out`` (CSV or Parquet), streaming one part at a time.

    Every part is cast to one schema (:func:`_joined_schema`), so that a column's type, and a CSV's
    spelling of its values, do not depend on how the rows fell into chunks: a column all null in
    some parts (every row of a chunk skipped, or left with no modality and no prediction) takes its
    type from the parts with values; one whose NaN made it float in some parts (a multilabel
    ``pred_`` column) is float in all. With no rows at all, ``out`` has the columns alone.
    """
    import pyarrow.parquet as pq

    total = 0
    schema = _joined_schema(files)

    def write(tmp: Path) -> None:
        nonlocal total
        if out.suffix.lower() == ".parquet":
            with pq.ParquetWriter(str(tmp), schema) as writer:
                for file in files:
                    table = pq.read_table(file).cast(schema)
                    writer.write_table(table)
                    total += table.num_rows
            return
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            for i, file in enumerate(files):
                # integers stay integers where a row has none (a class label 2 is not 2.0 in some chunks)
                frame = pq.read_table(file).cast(schema).to_pandas(types_mapper=_integers_with_nulls)
                frame.to_csv(handle, index=False, header=i == 0)
                total += len(frame)

    atomic_write(out, write)
    return total


def _integers_with_nulls(kind: Any) -> Any:
    """pandas' type for an Arrow integer column that keeps its nulls without turning into floats
    (None for every other type: pandas' default)."""
    import pyarrow as pa

    return pd.ArrowDtype(kind) if pa.types.is_integer(kind) else None


def _joined_schema(files: list[Path]) -> Any:
    """One schema for all ``files``: a null-typed column takes the type the others give it, an
    integer column another part holds as floats (NaN where a row has no prediction) becomes float,
    and text pandas writes as ``string`` in one part and ``large_string`` in another (an object
    column beside a ``str`` one) ``large_string``; the (pandas) metadata comes from a part with rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not files:
        return pa.schema([pa.field("row", pa.int64())])
    with_rows = [pq.read_metadata(f).num_rows > 0 for f in files]
    schemas = [pq.read_schema(f) for f, rows in zip(files, with_rows, strict=True) if rows]
    schemas += [pq.read_schema(f) for f, rows in zip(files, with_rows, strict=True) if not rows]
    return pa.unify_schemas(schemas, promote_options="permissive")  # widening only: text and numbers never mix


def _unpredicted(files: list[Path], position: int) -> int:
    """How many rows of the parts ``files`` have no prediction: their column at ``position`` (the
    first prediction column, after ``row`` and the kept ones) is null. One column read per part."""
    import pyarrow.parquet as pq

    if not files:
        return 0
    names = pq.read_schema(files[0]).names
    if len(names) <= position:
        return 0
    return sum(pq.read_table(f, columns=[names[position]]).column(0).null_count for f in files)
