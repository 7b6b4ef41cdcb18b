"""The manifest commands of ``polymodal`` (registered on the main app when ``polymodal.cli`` loads):

    polymodal manifest convert SOURCE OUT.arrow [--config CONFIG]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def convert(
    source: Annotated[Path, typer.Argument(help="Manifest to convert (Parquet, CSV, TSV or JSONL).")],
    out: Annotated[Path, typer.Argument(help="Arrow manifest to write (.arrow or .feather).")],
    config: Annotated[Path | None, typer.Option("--config", help="Read a CSV's columns as this config's training "
                                                "reads them (modality columns as text, class labels as labels).")]
    = None,
) -> None:
    """Write a manifest as an Arrow IPC file, which training and prediction read memory-mapped: its
    paths and texts cost no private memory however many rows it has. Parquet is converted row group
    by row group; relative paths keep resolving against SOURCE's folder."""
    from polymodal.cli import console
    from polymodal.config import load_config
    from polymodal.data.arrow_manifest import convert_manifest
    from polymodal.data.manifest import READERS
    from polymodal.data.pipeline import csv_columns
    from polymodal.errors import ManifestError

    if READERS.get(out.suffix.lower()) != "arrow":
        raise ManifestError([f"OUT must end in .arrow or .feather; got '{out.name}'"], source=str(out))
    columns = csv_columns(load_config(config)) if config is not None else {}
    rows = convert_manifest(source, out, **columns)
    console.print(f"wrote {rows:,} rows to [bold]{out}[/] (relative paths resolve against {source.parent.resolve()})")


def register(app: typer.Typer) -> None:
    """Add ``manifest convert`` to the ``polymodal`` app (called at the end of ``polymodal.cli``)."""
    from polymodal.cli import user_errors

    manifest_app = typer.Typer(help="Manifest files.", no_args_is_help=True)
    manifest_app.command("convert")(user_errors(convert))
    app.add_typer(manifest_app, name="manifest")
