"""The config commands of ``polymodal``: ``config schema`` and ``config check``.

Usage:

    polymodal config schema
    polymodal config check FILE
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from polymodal.cli.common import console, user_errors


def config_schema() -> None:
    """Print the JSON Schema of the config file."""
    from polymodal.config import json_schema

    print(json.dumps(json_schema(), indent=2))


def config_check(file: Annotated[Path, typer.Argument(help="YAML or JSON config.")]) -> None:
    """Validate a config file; list every problem with its key path (files it names included)."""
    from polymodal.config import load_config

    config = load_config(file, check_files=True)
    names = ", ".join(f"{n} ({m.kind}/{m.encoder.name})" for n, m in sorted(config.modalities.items()))
    console.print(f"[green]OK[/] {file}: task {config.task}, modalities {names}, {_model_parts(config)}")


def _model_parts(config: Any) -> str:
    """What the config trains beside the encoders: an alignment alone trains no fusion or head, an
    anomaly detector scores its fused latent without a head; an alignment beside a task and the
    transfer methods are named too."""
    align = [f"align {config.align.objective} ({config.align.dim}-d)"] if config.align is not None else []
    transfer = [f"transfer {'+'.join(m.method for m in config.transfers)}"] if config.transfers else []
    if config.task == "retrieval":
        return ", ".join(align + transfer)
    parts = [f"fusion {config.fusion.name}",
             f"scorer {config.anomaly.scorer}" if config.task == "anomaly" else f"head {config.head.name}"]
    return ", ".join(parts + align + transfer)


def register(app: typer.Typer) -> None:
    """Add the ``config`` group to the ``polymodal`` app."""

    config_app = typer.Typer(help="Inspect and validate config files.", no_args_is_help=True)
    config_app.command("schema")(config_schema)
    config_app.command("check")(user_errors(config_check))
    app.add_typer(config_app, name="config")
