"""The data commands of ``polymodal``: ``datasets list``, ``datasets prepare`` and ``manifest convert``.

Usage:

    polymodal datasets list
    polymodal datasets prepare NAME --out DIR [--overwrite] [--source DIR] [--seed N] [--split S] [--size N]
        [--window N] [--hop N] [--load L ...] [--max-windows N] [--max-rows N]
        [--n-train N] [--n-valid N] [--test-normal N] [--test-per-anomaly N]
    polymodal manifest convert SOURCE OUT.arrow [--config CONFIG]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from polymodal.cli.common import console, user_errors


def datasets_list() -> None:
    """List the built-in datasets and what each needs."""
    from rich.table import Table

    from polymodal.data.datasets import DATASETS
    from polymodal.utils.tables import print_table

    table = Table(title="built-in datasets")
    table.add_column("name")
    table.add_column("description")
    table.add_column("--source must hold")
    for spec in DATASETS.values():
        table.add_row(spec.name, spec.description, spec.source or "(embedded: nothing)")
    print_table(console, table)


def datasets_prepare(
    name: Annotated[str, typer.Argument(help="Dataset name (see 'datasets list').")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write files and manifests into: a new or empty "
                                                    "one, or with --overwrite one an earlier preparation wrote.")],
    source: Annotated[Path | None, typer.Option(
        "--source", help="The folder the dataset is read from, laid out as 'datasets list' says (../shared/data "
                         "for the real-data sets, /usr/share/openclipart for openclipart).")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed for splits and pairing.")] = 0,
    split: Annotated[str | None, typer.Option(help="fsdd-mnist: 'speaker' (default) or 'official'.")] = None,
    test_speaker: Annotated[list[str] | None, typer.Option(
        "--test-speaker", metavar="SPEAKER", help="fsdd-mnist --split speaker: a speaker held out for test (repeatable; default "
                               "theo and yweweler).")] = None,
    size: Annotated[int | None, typer.Option("--size", min=1, help="av-digits: rows in total (at most 5000; fewer "
                                             "for a quick try); moving-digits: frame side; openclipart: image "
                                             "side, in pixels.")] = None,
    window: Annotated[int | None, typer.Option("--window", min=2, help="cwru: samples per window (default "
                                               "2048: 0.17 s at 12 kHz).")] = None,
    hop: Annotated[int | None, typer.Option("--hop", min=1, help="cwru: samples between window starts (default "
                                            "1024: windows overlap by half).")] = None,
    load: Annotated[list[int] | None, typer.Option("--load", min=0, help="cwru: keep the recordings at this "
                                                   "motor load in hp (repeatable; default all, 0-3).")] = None,
    max_windows: Annotated[int | None, typer.Option("--max-windows", min=1, help="cwru: at most this many "
                                                    "windows per recording, evenly spaced.")] = None,
    max_rows: Annotated[int | None, typer.Option("--max-rows", min=20, help="openclipart: render a seeded sample "
                                                 "of at most this many drawings (test a fifth, valid a tenth).")]
    = None,
    n_train: Annotated[int | None, typer.Option("--n-train", min=1, help="moving-digits: normal training clips "
                                                "(default 2000; a few hundred for a quick try).")] = None,
    n_valid: Annotated[int | None, typer.Option("--n-valid", min=1, help="moving-digits: normal validation clips "
                                                "(default 200).")] = None,
    test_normal: Annotated[int | None, typer.Option("--test-normal", min=1, help="moving-digits: normal test clips "
                                                    "(default 150).")] = None,
    test_per_anomaly: Annotated[int | None, typer.Option("--test-per-anomaly", min=1, help="moving-digits: test "
                                                         "clips of each of the 3 anomalies (default 150).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the dataset an earlier preparation wrote "
                                            "into --out (all its files: none of a larger one stays); a folder "
                                            "holding other files is refused even so.")] = False,
) -> None:
    """Write a dataset's files plus train.csv, valid.csv and test.csv."""
    from polymodal.data.datasets import DATASETS, prepare, summarise
    from polymodal.errors import DatasetOptionError

    flags = {"split": "--split", "test_speakers": "--test-speaker", "size": "--size", "source": "--source",
             "window": "--window", "hop": "--hop", "loads": "--load", "max_windows": "--max-windows",
             "max_rows": "--max-rows", "n_train": "--n-train", "n_valid": "--n-valid", "test_normal": "--test-normal",
             "test_per_anomaly": "--test-per-anomaly"}
    options: dict[str, Any] = {"split": split, "test_speakers": test_speaker, "size": size, "window": window,
                               "hop": hop, "loads": load, "max_windows": max_windows, "max_rows": max_rows,
                               "n_train": n_train, "n_valid": n_valid, "test_normal": test_normal,
                               "test_per_anomaly": test_per_anomaly}
    try:
        prepare(name, out, source, seed, overwrite=overwrite,
                **{k: v for k, v in options.items() if v is not None})  # None: not given
    except DatasetOptionError as err:
        if err.option in DATASETS[err.dataset].options:  # a value it does not allow: the message says which
            raise
        takes = ", ".join(flags[o] for o in DATASETS[err.dataset].options if o in flags) or "none"
        raise DatasetOptionError(f"dataset '{err.dataset}' does not take {flags[err.option]} (options it takes: "
                                 f"{takes})", dataset=err.dataset, option=err.option) from None
    console.print(summarise(out))


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
    from polymodal.config import load_config
    from polymodal.config.columns import csv_columns
    from polymodal.data.arrow_manifest import convert_manifest
    from polymodal.data.manifest import READERS
    from polymodal.errors import OptionError

    if READERS.get(out.suffix.lower()) != "arrow":
        raise OptionError([f"OUT: the converted manifest is an Arrow file, so its name must end in .arrow or .feather; "
                           f"got '{out.name}'"])
    columns = csv_columns(load_config(config)) if config is not None else {}
    rows = convert_manifest(source, out, **columns)
    console.print(f"wrote {rows:,} rows to {out} (relative paths resolve against {source.parent.resolve()})")


def register(app: typer.Typer) -> None:
    """Add the ``datasets`` and ``manifest`` groups to the ``polymodal`` app."""

    datasets_app = typer.Typer(help="Built-in datasets.", no_args_is_help=True)
    datasets_app.command("list")(datasets_list)
    datasets_app.command("prepare")(user_errors(datasets_prepare))
    app.add_typer(datasets_app, name="datasets")
    manifest_app = typer.Typer(help="Manifest files.", no_args_is_help=True)
    manifest_app.command("convert")(user_errors(convert))
    app.add_typer(manifest_app, name="manifest")
