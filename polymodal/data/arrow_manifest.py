"""Arrow IPC manifests (``.arrow``, ``.feather``): read memory-mapped, so a manifest of many
millions of rows costs next to no private memory; its file paths and texts are read from the
mapped file (the operating system's page cache) when a block of rows is used, not held in RAM.

:func:`convert_manifest` writes one from a Parquet file row group by row group (memory stays flat
however large the file) or from a CSV, TSV or JSONL manifest. The file's folder, recorded in its
schema metadata, stays the root that relative paths resolve against, wherever the ``.arrow``
file is written. Buffers are written uncompressed and strings as large strings, the form
pandas wraps without a copy; other Arrow files (compressed Feather, 32-bit string offsets) are
read too, at the cost of decompressing or converting into memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT_KEY = b"polymodal.root"  # schema metadata: the folder relative paths resolve against
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
        pyarrow.ArrowInvalid: not an Arrow IPC file.
    """
    import pyarrow as pa

    table = pa.ipc.open_file(pa.memory_map(os.fspath(path))).read_all()  # the map lives as long as its buffers
    strings = _string_dtype()
    frame = table.to_pandas(types_mapper=lambda t: strings if pa.types.is_string(t) or pa.types.is_large_string(t)
                            else None)
    root = (table.schema.metadata or {}).get(ROOT_KEY)
    return frame, Path(root.decode()) if root else None


def _large_strings(schema: Any) -> Any:
    """``schema`` with its strings as Arrow's large strings (64-bit offsets), the layout pandas
    wraps without converting the offsets (an 8-byte copy per row otherwise)."""
    import pyarrow as pa

    return pa.schema([field.with_type(pa.large_string()) if pa.types.is_string(field.type) else field
                      for field in schema], metadata=schema.metadata)


def convert_manifest(source: str | os.PathLike, out: str | os.PathLike, *, text_columns: Iterable[str] = (),
                     label_columns: Iterable[str] = ()) -> int:
    """Write ``source`` (Parquet, CSV, TSV, JSONL) as an Arrow IPC manifest at ``out``; returns its
    rows. Parquet is streamed row group by row group; the other formats are read whole once (with
    ``text_columns`` / ``label_columns`` read as :func:`~polymodal.data.manifest.read_manifest`
    reads them, e.g. a config's modality columns). Written atomically.

    Raises:
        ManifestError: the source cannot be read.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from polymodal.data.manifest import READERS, read_manifest
    from polymodal.errors import ManifestError
    from polymodal.utils.io import atomic_write

    source, out = Path(source), Path(out)
    if READERS.get(source.suffix.lower()) == "arrow":
        raise ManifestError([f"{source.name} is already an Arrow manifest"], source=str(source))
    if not source.is_file():  # read_manifest says why (missing, a folder)
        read_manifest(source)
    root = {ROOT_KEY: os.fspath(source.parent.resolve()).encode()}
    if READERS.get(source.suffix.lower()) == "parquet":
        try:
            parquet = pq.ParquetFile(source)
        except (OSError, pa.ArrowInvalid) as err:
            raise ManifestError([f"cannot parse {source.name}: {err}"], source=str(source)) from None
        schema = _large_strings(parquet.schema_arrow).with_metadata(root)
        tables = (pa.Table.from_batches([b]).cast(schema) for b in parquet.iter_batches(batch_size=BATCH_ROWS))
        rows = parquet.metadata.num_rows
    else:
        manifest = read_manifest(source, text_columns=text_columns, label_columns=label_columns)
        table = pa.Table.from_pandas(manifest.frame, preserve_index=False)
        schema = _large_strings(table.schema).with_metadata(root)
        tables = iter([table.cast(schema)])
        rows = table.num_rows

    def write(tmp: Path) -> None:
        with pa.ipc.new_file(os.fspath(tmp), schema) as writer:
            for part in tables:
                writer.write_table(part, max_chunksize=BATCH_ROWS)

    atomic_write(out, write)
    return rows
