"""Arrow IPC manifests (``.arrow``, ``.feather``): read memory-mapped, so the file paths and texts
of a manifest of many millions of rows cost no private memory; they are read from the mapped
file (the operating system's page cache) when a block of rows is used, not held in RAM.

:func:`convert_manifest` writes one from a Parquet file row group by row group (memory stays flat
however large the file) or from a CSV, TSV or JSONL manifest. The source's folder stays the root
that relative paths resolve against, wherever the ``.arrow`` file is written (recorded in its
schema metadata relative to it, so the two can move together). Buffers are written uncompressed and strings as large strings, the form pandas
wraps without a copy; other Arrow files (compressed Feather, 32-bit string offsets, the streaming
format) are read too, at the cost of decompressing or converting them into memory.

A subset of its rows (the validation share ``val_fraction`` holds out, a chunk of batch
prediction) is a view of the mapped table (:meth:`~polymodal.data.manifest.Manifest.subset`): the
data path copies only the block of cells it is reading.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT_KEY = b"polymodal.root"  # schema metadata: the source's folder, relative to the .arrow file's
BATCH_ROWS = 65_536


def _string_dtype() -> pd.StringDtype:
    """pandas' Arrow-backed string type with NaN for missing values (the default ``str`` of pandas
    3): it wraps Arrow's buffers, mapped ones included, without copying them."""
    try:
        return pd.StringDtype("pyarrow", na_value=np.nan)
    except TypeError:  # pandas 2.1-2.2
        return pd.StringDtype("pyarrow_numpy")


def read_arrow(path: Path) -> tuple[pd.DataFrame, Path | None]:
    """The manifest's rows (string columns memory-mapped) and the root recorded in it, if any.

    Raises:
        ValueError: not an Arrow IPC file (file or stream format), or one pandas cannot take.
    """
    import pyarrow as pa

    source = pa.memory_map(os.fspath(path))  # it lives as long as the buffers read from it
    try:
        try:
            table = pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:  # the streaming format (e.g. a Hugging Face datasets cache file)
            source.seek(0)
            table = pa.ipc.open_stream(source).read_all()
        strings = _string_dtype()
        frame = table.to_pandas(types_mapper=lambda t: strings if pa.types.is_string(t) or pa.types.is_large_string(t)
                                else None)
    except pa.ArrowException as err:
        raise ValueError(_not_arrow(path) or str(err)) from None
    root = (table.schema.metadata or {}).get(ROOT_KEY)
    return frame, path.parent / root.decode() if root else None


FILE_MAGIC = b"ARROW1"  # the IPC file format's first bytes
STREAM_START = b"\xff\xff\xff\xff"  # the streaming format's first message's continuation marker


def _not_arrow(path: Path) -> str | None:
    """Why a file pyarrow cannot read is no Arrow IPC file at all: it starts with neither the file
    format's signature nor a stream message, and what it looks like instead (CSV, JSON, Parquet,
    text). None when it starts as an Arrow file does (damaged: pyarrow's reason says how)."""
    with open(path, "rb") as file:
        head = file.read(4096)
    if head.startswith(FILE_MAGIC) or head.startswith(STREAM_START):
        return None
    message = (f"not an Arrow IPC file: it does not start with the Arrow file signature {FILE_MAGIC.decode()!r} "
               "or a stream message")
    looks = _looks_like(head)
    if looks is not None:
        kind, suffix = looks
        message += f"; it looks like {kind}: name it {suffix}" if suffix else f"; it looks like {kind}"
        message += " (or write an Arrow manifest from it with 'polymodal manifest convert')" if suffix else ""
    return message


def _looks_like(head: bytes) -> tuple[str, str | None] | None:
    """What a file's first bytes look like, with the extension its kind reads under: ``('CSV
    text', '.csv')``; None when they do not look like a manifest format or text."""
    if head.startswith(b"PAR1"):
        return "a Parquet file", ".parquet"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not only a character cut at the end of the head
            return None
        text = head[:err.start].decode("utf-8")
    text = text.lstrip("\ufeff")
    if not text.strip() or any(c < " " and c not in "\t\r\n" for c in text):
        return None
    start = text.lstrip()[:1]
    if start == "{":
        return "JSON-lines text", ".jsonl"
    if start == "[":
        return "JSON text", ".json"
    lines = text.splitlines()[:3]
    for sep, kind, suffix in ((",", "CSV text", ".csv"), ("\t", "tab-separated text", ".tsv")):
        if lines and lines[0].count(sep) > 0 and all(line.count(sep) >= lines[0].count(sep) for line in lines[1:2]):
            return kind, suffix
    return "text", None


def _arrow_schema(schema: Any, root: str) -> Any:
    """``schema`` with its strings (plain or dictionary-encoded) as large strings, the layout
    pandas wraps without a copy (its offsets are 64-bit; a dictionary would be decoded into
    memory), and the root recorded beside the pandas metadata."""
    import pyarrow as pa

    def text(t: Any) -> bool:
        return pa.types.is_string(t) or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type))

    fields = [field.with_type(pa.large_string()) if text(field.type) else field for field in schema]
    return pa.schema(fields, metadata={**(schema.metadata or {}), ROOT_KEY: root.encode()})


def _frame_table(frame: pd.DataFrame) -> Any:
    """An Arrow table of a manifest's frame; a column that mixes numbers and text (JSON, a large
    CSV pandas typed in chunks) is written as its cells' text."""
    import pyarrow as pa

    from polymodal.data.cells import cell_text, is_empty

    arrays = []
    for column in frame.columns:
        try:
            arrays.append(pa.array(frame[column], from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays.append(pa.array([None if is_empty(v) else cell_text(v) for v in frame[column]], pa.large_string()))
    return pa.Table.from_arrays(arrays, names=[str(c) for c in frame.columns])


def convert_manifest(source: str | os.PathLike, out: str | os.PathLike, *, text_columns: Iterable[str] = (),
                     label_columns: Iterable[str] = ()) -> int:
    """Write ``source`` (Parquet, CSV, TSV, JSONL) as an Arrow IPC manifest at ``out``; returns its
    rows. Parquet is streamed row group by row group; the other formats are read whole once (with
    ``text_columns`` / ``label_columns`` read as :func:`~polymodal.data.manifest.read_manifest`
    reads them, e.g. a config's modality columns). Written atomically.

    Raises:
        ManifestError: the source cannot be read or converted.
        OptionError: ``out`` cannot be written: a folder above it is a file, or cannot be written to.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from polymodal.data.manifest import READERS, check_table, read_manifest
    from polymodal.errors import ManifestError
    from polymodal.utils.io import atomic_write, check_folder_path

    source, out = Path(source), Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"the Arrow manifest to write is a folder: {out}")
    check_folder_path(out.parent, f"output {out}", writable=True)  # not blamed on the source when writing fails
    if READERS.get(source.suffix.lower()) == "arrow":
        raise ManifestError([f"{source.name} is already an Arrow manifest"], source=str(source))
    if not source.is_file():  # read_manifest says why (missing, a folder)
        read_manifest(source)
    root = os.path.relpath(source.parent.resolve(), out.parent.resolve())  # both may move together
    try:
        if READERS.get(source.suffix.lower()) == "parquet":
            parquet = pq.ParquetFile(source)
            check_table(list(parquet.schema_arrow.names), parquet.metadata.num_rows, source.name, str(source))
            schema = _arrow_schema(parquet.schema_arrow, root)
            parts = (pa.Table.from_batches([b]).cast(schema) for b in parquet.iter_batches(batch_size=BATCH_ROWS))
            rows = parquet.metadata.num_rows
        else:
            table = _frame_table(read_manifest(source, text_columns=text_columns, label_columns=label_columns).frame)
            schema = _arrow_schema(table.schema, root)
            parts = iter([table.cast(schema)])
            rows = table.num_rows

        def write(tmp: Path) -> None:
            with pa.ipc.new_file(os.fspath(tmp), schema) as writer:
                for part in parts:
                    writer.write_table(part, max_chunksize=BATCH_ROWS)

        atomic_write(out, write)
    except (pa.ArrowException, OSError) as err:
        raise ManifestError([f"cannot convert {source.name}: {err}"], source=str(source)) from None
    return rows
