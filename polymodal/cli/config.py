"""The config commands of ``polymodal``: ``config init``, ``config schema`` and ``config check``.

Usage:

    polymodal config init --data MANIFEST [--target COLUMN] [--task TASK] [--out config.yaml] [--overwrite]
    polymodal config schema
    polymodal config check FILE
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from polymodal.cli.common import SetOpt, SetsConfigKeys, console, labelled, print_rows, print_warning, user_errors


def config_init(
    data: Annotated[Path, typer.Option("--data", help="A manifest (CSV, Parquet, JSONL...) of the rows to learn from.")],
    target: Annotated[list[str] | None, typer.Option("--target", metavar="COLUMN", help="The target column (repeatable: several "
                                                     "targets, of different kinds a multi-task config, the first "
                                                     "the main task; none: an anomaly detector).")] = None,
    task: Annotated[str | None, typer.Option("--task", metavar="TASK", help="classification, regression, "
                                             "multilabel or anomaly, in place of the task inferred from the target "
                                             "(whole numbers such as 0-3 read as classes: --task regression makes "
                                             "them a number; --task anomaly --target COLUMN: the column's labels say "
                                             "which rows are normal, anomaly.normal written as the table says).")]
    = None,
    out: Annotated[Path, typer.Option("--out", help="Config file to write.")] = Path("config.yaml"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
) -> None:
    """Write a starting config for a manifest: each column becomes the modality its cells hold
    (image, audio, video or array files; numbers and categories; free text), with settings read
    from its files; the table says what each column became and why (the target's task too:
    --task overrides it), and a warning on stderr what looks like a mistake (a target of one value,
    a column whose values alone separate the classes or follow a regression target, a 0/1 label
    regressed, labels joined in one cell as 'a;b')."""
    import yaml

    from polymodal.data.infer_config import TARGET_NAMES, infer_config
    from polymodal.errors import OptionError
    from polymodal.utils.io import atomic_write_text, check_folder_path

    if out.suffix.lower() not in (".yaml", ".yml"):
        raise OptionError([f"--out must be a .yaml file; got '{out.name}'"])
    if out.exists() and not overwrite:
        raise OptionError([f"--out {out} already exists; give --overwrite to replace it, or another --out"])
    check_folder_path(out.parent, "--out", writable=True)
    inferred = infer_config(data, target, task)
    header = (f"# polymodal config inferred from {data} (polymodal config init): a start, check each modality's\n"
              "# preprocessing and encoder; 'polymodal config schema' lists every key.\n")
    atomic_write_text(out, header + yaml.safe_dump(inferred.config, sort_keys=False))
    print_rows([{"column": c, "became": b, "why": w} for c, b, w in inferred.columns], f"columns of {data.name}")
    if inferred.sampled < inferred.rows:
        console.print(f"judged on {inferred.sampled:,} of {inferred.rows:,} rows, spread across the manifest; number and "
                      "category columns were then read in every row", highlight=False)
    names = ", ".join(f"{name} ({spec['kind']})" for name, spec in inferred.config["modalities"].items())
    further = ", ".join(f"{name} ({spec['task']})" for name, spec in inferred.config.get("tasks", {}).items())
    console.print(f"wrote {out}: task {inferred.config['task']}{f', further tasks {further}' if further else ''}, "
                  f"modalities {names}")
    if target is None:
        named = [c for c, _, _ in inferred.columns if c.lower() in TARGET_NAMES]
        console.print("no --target: every row is taken as normal, for an anomaly detector; give --target COLUMN to "
                      "predict a column, or --task anomaly --target COLUMN to evaluate anomalies against its labels"
                      + (f" (this manifest has {', '.join(repr(c) for c in named)})" if named else ""), highlight=False)
    for warning in inferred.warnings:  # last, where they are seen: a constant target, a column that may be a leak
        print_warning(warning)


def config_schema() -> None:
    """Print the JSON Schema of the config file."""
    from polymodal.config import json_schema

    print(json.dumps(json_schema(), indent=2))


def config_check(
    file: Annotated[Path, typer.Argument(help="YAML or JSON config.")],
    data: Annotated[list[Path] | None, typer.Option(
        "--data", metavar="MANIFEST", help="Also check a manifest against the config as training reads it: "
                                           "columns, files, labels (repeatable: --data train.csv --data "
                                           "valid.csv; a later one's labels must be classes of the "
                                           "first, as a validation manifest's must be of training's).")] = None,
    set_: SetOpt = None,
) -> None:
    """Validate a config file; list every problem with its key path (files it names included, and
    its tune.space as tune checks it), and with --data every problem of each manifest (nothing is
    decoded or trained; every manifest is checked, the status is 2 if any has a problem). --set
    checks the config train or tune would run with those values."""
    from polymodal.cli.common import _path_error_message, err_console
    from polymodal.config import load_config
    from polymodal.config.overrides import parse_overrides
    from polymodal.data.checks import iter_manifest_checks
    from polymodal.errors import PolymodalError

    config = load_config(file, overrides=parse_overrides(set_ or []), check_files=True)
    if config.tune is not None:
        from polymodal.tune import check_search

        check_search(config, str(file))  # what tune refuses before its first trial
    names = ", ".join(f"{n} ({m.kind}/{m.encoder.name})" for n, m in sorted(config.modalities.items()))
    given = f" with --set {', '.join(set_)}" if set_ else ""
    searched = f", tune.space {', '.join(config.tune.space)}" if config.tune is not None else ""
    console.print(labelled("OK", "green", f"{file}{given}: task {config.task}, modalities {names}, "
                                          f"{_model_parts(config)}{searched}"))
    failed = 0
    for check in iter_manifest_checks(config, data or []):  # printed as each is checked, between its warnings
        if check.ok:
            console.print(labelled("OK", "green", f"{check.path}: {check.said}"))
            continue
        failed += 1
        err = check.error
        message = str(err) if isinstance(err, PolymodalError) else _path_error_message(err)
        err_console.print(labelled("error:", "bold red", message))
    if failed:
        err_console.print(f"{failed} of {len(data or [])} manifest(s) have problems", highlight=False)
        raise typer.Exit(2)


def _model_parts(config: Any) -> str:
    """What the config trains beside the encoders: an alignment alone trains no fusion or head, an
    anomaly detector scores its fused latent without a head; an alignment beside a task and the
    transfer methods are named too."""
    from polymodal.config.anomaly import anomaly_settings

    align = [f"align {config.align.objective} ({config.align.dim}-d)"] if config.align is not None else []
    transfer = [f"transfer {'+'.join(m.method for m in config.transfers)}"] if config.transfers else []
    if config.task == "retrieval":
        return ", ".join(align + transfer)
    parts = [f"fusion {config.fusion.name}",
             f"scorer {anomaly_settings(config).scorer}" if config.task == "anomaly" else f"head {config.head.name}"]
    return ", ".join(parts + align + transfer)


def register(app: typer.Typer) -> None:
    """Add the ``config`` group to the ``polymodal`` app."""

    config_app = typer.Typer(help="Inspect and validate config files.", no_args_is_help=True)
    config_app.command("init")(user_errors(config_init))
    config_app.command("schema")(config_schema)
    config_app.command("check", cls=SetsConfigKeys)(user_errors(config_check))
    app.add_typer(config_app, name="config")
