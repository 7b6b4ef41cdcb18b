"""The ``polymodal`` command: a thin layer over :class:`~polymodal.predictor.MultimodalPredictor`.

User mistakes (bad config, bad manifest, unreadable file...) print one clear message and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polymodal.errors import PolymodalError

app = typer.Typer(help="Multimodal deep learning: train, evaluate, predict and inspect models over images, "
                       "text, audio, signals and tables.", no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Inspect and validate config files.", no_args_is_help=True)
datasets_app = typer.Typer(help="Built-in datasets.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(datasets_app, name="datasets")
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

RunArg = Annotated[Path, typer.Argument(help="A run folder written by 'polymodal train'.")]
DataOpt = Annotated[Path, typer.Option("--data", help="Manifest (CSV, Parquet or JSONL).")]


def user_errors(fn: F) -> F:
    """Turn polymodal's own errors (and missing files) into a message and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (PolymodalError, FileNotFoundError, KeyError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            err_console.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, list | dict):
            continue
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


# -- config --------------------------------------------------------------------------------------
@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the config file."""
    from polymodal.config import json_schema

    print(json.dumps(json_schema(), indent=2))


@config_app.command("check")
@user_errors
def config_check(file: Annotated[Path, typer.Argument(help="YAML or JSON config.")]) -> None:
    """Validate a config file; list every problem with its key path."""
    from polymodal.config import load_config

    config = load_config(file)
    names = ", ".join(f"{n} ({m.kind}/{m.encoder.name})" for n, m in sorted(config.modalities.items()))
    console.print(f"[green]OK[/] {file}: task {config.task}, modalities {names}, fusion {config.fusion.name}, "
                  f"head {config.head.name}")


# -- datasets ------------------------------------------------------------------------------------
@datasets_app.command("list")
def datasets_list() -> None:
    """List the built-in datasets and what each needs."""
    from polymodal.data.datasets import DATASETS

    table = Table(title="built-in datasets")
    table.add_column("name")
    table.add_column("description")
    table.add_column("--source must hold")
    for spec in DATASETS.values():
        table.add_row(spec.name, spec.description, spec.source or "(embedded: nothing)")
    console.print(table)


@datasets_app.command("prepare")
@user_errors
def datasets_prepare(
    name: Annotated[str, typer.Argument(help="Dataset name (see 'datasets list').")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write files and manifests into.")],
    source: Annotated[Path | None, typer.Option("--source", help="Folder laid out like ../shared/data.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for splits and pairing.")] = 0,
    split: Annotated[str | None, typer.Option(help="fsdd-mnist: 'speaker' or 'official'.")] = None,
) -> None:
    """Write a dataset's files plus train.csv, valid.csv and test.csv."""
    from polymodal.data.datasets import prepare, summarise

    options = {"split": split} if split is not None else {}
    prepare(name, out, source, seed, **options)
    console.print(summarise(out))


# -- training and use ----------------------------------------------------------------------------
@app.command()
@user_errors
def train(
    config: Annotated[Path, typer.Argument(help="YAML config.")],
    train: Annotated[Path, typer.Option("--train", help="Training manifest.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder to write.")],
    valid: Annotated[Path | None, typer.Option("--valid", help="Validation manifest.")] = None,
    test: Annotated[Path | None, typer.Option("--test", help="Test manifest, evaluated after training.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's last checkpoint.")] = False,
) -> None:
    """Train a model and write the run folder (model, preprocessors, metrics, report)."""
    from polymodal.predictor import MultimodalPredictor

    predictor = MultimodalPredictor.from_config(config).fit(train, valid, test=test, out=out, resume=resume)
    for split, scores in predictor.metrics.items():
        print_metrics(scores, f"{split} metrics")
    console.print(f"run written to [bold]{out}[/] (report: {out / 'report.html'})")


@app.command()
@user_errors
def evaluate(
    run: RunArg,
    data: DataOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
) -> None:
    """Evaluate a trained model on a labelled manifest."""
    from polymodal.predictor import MultimodalPredictor

    metrics = MultimodalPredictor.load(run).evaluate(data)
    if as_json:
        print(json.dumps(metrics, indent=2))
    else:
        print_metrics(metrics, f"metrics on {data.name}")


@app.command()
@user_errors
def predict(
    run: RunArg,
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Where to write predictions (.csv or .parquet).")],
) -> None:
    """Predict every row of a manifest; classification adds one probability column per class."""
    from polymodal.predictor import MultimodalPredictor
    from polymodal.utils.io import atomic_write

    frame = MultimodalPredictor.load(run).predict_frame(data).reset_index()
    writer = (lambda tmp: frame.to_parquet(tmp, index=False)) if out.suffix == ".parquet" else (
        lambda tmp: frame.to_csv(tmp, index=False))
    atomic_write(out, writer)
    console.print(f"{len(frame)} predictions written to {out}")


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the dataset and the runs.")] = Path("runs/demo"),
    size: Annotated[int, typer.Option(help="Rows of av-digits to use (max 5000).")] = 5000,
    epochs: Annotated[int, typer.Option(help="Epochs per model.")] = 5,
) -> None:
    """Prepare av-digits, train image-only, audio-only and several fusions, compare them."""
    from polymodal.demo import run_demo

    run_demo(out, size=size, epochs=epochs, console=console)


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
