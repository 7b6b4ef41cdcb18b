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

from polymodal.cli.common import SetOpt, console, labelled, print_rows, print_warning, user_errors


def config_init(
    data: Annotated[Path, typer.Option("--data", help="A manifest (CSV, Parquet, JSONL...) of the rows to learn from.")],
    target: Annotated[list[str] | None, typer.Option("--target", metavar="COLUMN", help="The target column (repeatable: several "
                                                     "targets; none: an anomaly detector).")] = None,
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
    a column whose values alone separate the classes)."""
    import yaml

    from polymodal.data.infer import TARGET_NAMES, infer_config
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
    console.print(f"wrote {out}: task {inferred.config['task']}, modalities {names}")
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
    from polymodal.cli.common import PATH_ERRORS, _path_error_message, err_console
    from polymodal.config import load_config
    from polymodal.config.overrides import parse_overrides
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
    targets = None  # fitted on the first manifest, as training fits them on its training manifest
    failed = 0
    for number, manifest in enumerate(data or []):
        try:
            said, targets = _check_manifest(config, manifest, targets, training=number == 0)
        except (PolymodalError, *PATH_ERRORS) as err:  # said, and the next manifest checked
            failed += 1
            message = str(err) if isinstance(err, PolymodalError) else _path_error_message(err)
            err_console.print(labelled("error:", "bold red", message))
            continue
        console.print(labelled("OK", "green", f"{manifest}: {said}"))
    if failed:
        err_console.print(f"{failed} of {len(data or [])} manifest(s) have problems", highlight=False)
        raise typer.Exit(2)


def _check_manifest(config: Any, path: Path, targets: Any = None, *, training: bool = True) -> tuple[str, Any]:
    """Read and validate ``path`` as a fit reads a training or validation manifest (every problem
    raised at once, and the warnings about its target columns given). The first manifest
    (``training``) is read as the training one: every modality must have rows to fit its
    preprocessing on, and the target encoder is fitted on its labels; a later one's labels are
    encoded with it (``targets``), so a class training never saw is refused with training's own
    message, and a modality it holds nowhere is warned about (validated without it).

    Returns:
        What the manifest holds, in words (rows, and the files ``data.on_error`` would skip), and
        the target encoder fitted on the first manifest (None when the config has no labels to fit,
        or the first manifest's could not be).
    """
    from polymodal.config.modalities import modality_columns
    from polymodal.data.manifest import WHOLE_ROW
    from polymodal.data.pipeline import DataPipeline

    pipeline = DataPipeline(config)
    manifest = pipeline.read(path, require_target=bool(config.targets), training=True)
    _check_fit_rows(pipeline, manifest, training)
    pipeline.warn_about_targets(manifest)  # as training would: a continuous-looking class, a constant label
    _check_normal_values(config, manifest)
    unchecked = not training and targets is None and bool(config.targets) and config.task != "anomaly"
    if not unchecked:  # else the first manifest's labels could not be fitted: no classes to compare with
        targets = _check_labels(config, pipeline, manifest, targets)
    said = f"{len(manifest):,} rows" + ("; labels not checked against the first --data's classes (it has problems)"
                                        if unchecked else "")
    absent = {column: len(manifest.absent(column)[0]) for m in config.modalities.values() if m.file_based
              for column in modality_columns(m)}
    absent = {column: n for column, n in absent.items() if n}
    empty = len(manifest.absent(WHOLE_ROW)[0])
    if absent or empty:
        said += (f"; data.on_error: {config.data.on_error} skips "
                 + ", ".join([f"{n} missing file(s) of '{c}'" for c, n in absent.items()]
                             + ([f"{empty} row(s) with no modality present"] if empty else [])))
    return said, targets


def _check_fit_rows(pipeline: Any, manifest: Any, training: bool) -> None:
    """Training's own check that each modality has rows of a training manifest to fit its
    preprocessing on (:meth:`~polymodal.data.pipeline.DataPipeline.fit_rows`): every modality's
    problem at once. A validation manifest (not ``training``) may lack a modality in every row:
    the model is validated without it, which is warned about.

    Raises:
        ManifestError: ``training``, and a modality has no value (or no file that exists) in any row.
    """
    from polymodal.errors import ManifestError
    from polymodal.utils.warn import warn_user

    problems = []
    for name in pipeline.config.modality_names:
        try:
            pipeline.fit_rows(manifest, name)
        except ManifestError as err:
            if training:
                problems += err.problems
            else:
                warn_user(f"{manifest.name}: modality '{name}' has no value (or no file that exists) in any row: "
                          "training validates the model without it")
    if problems:
        raise ManifestError(problems, source=manifest.name)


def _check_labels(config: Any, pipeline: Any, manifest: Any, targets: Any) -> Any:
    """Fit ``pipeline``'s target encoder on ``manifest`` when ``targets`` is None (the training
    manifest), else encode ``manifest``'s labels with ``targets``, as training does with a
    validation manifest (an anomaly detector's labels only say normal or not: none is unseen).
    Only the rows training would keep are used (:func:`_kept_rows`).

    Returns:
        The fitted target encoder; None for a config without labels to fit.

    Raises:
        SchemaMismatchError: a label of a later manifest not among the first one's classes (or
            fewer than two classes in the first, for a classifier).
    """
    if not config.targets or config.task == "anomaly":
        return None
    rows = _kept_rows(config, manifest)
    if targets is None:
        return pipeline.targets.fit(manifest if len(rows) == len(manifest) else manifest.subset(rows))
    targets.encode(manifest, rows)
    return targets


def _kept_rows(config: Any, manifest: Any) -> Any:
    """The rows of a validated manifest that encoding keeps, as far as is known without decoding a
    file: rows holding at least one modality whose file validation found (``data.on_error``
    ``skip``: no file of the row is missing). A file that is there but does not decode is only
    found by training."""
    import numpy as np

    from polymodal.config.modalities import modality_columns
    from polymodal.data.encode import manifest_cells

    keep = np.zeros(len(manifest), bool)
    missing = np.zeros(len(manifest), bool)
    for modality in config.modalities.values():
        present = manifest_cells(manifest, modality, modality.file_based).present()
        for column in modality_columns(modality):
            rows = manifest.absent(column)[0]
            present[rows] = False
            missing[rows] = True
        keep |= present
    if config.data.on_error == "skip":
        keep &= ~missing
    return np.flatnonzero(keep)


def _check_normal_values(config: Any, manifest: Any) -> None:
    """An anomaly detector's ``anomaly.normal`` against the manifest's target column: each value the
    config sets must be one of its labels (a misspelt one, ``normal`` for ``Normal``, would make
    every row of that label an anomaly), and one of the defaults must be, when the config sets none.

    Raises:
        ManifestError: the values absent, the column's labels and the close one meant.
    """
    from polymodal.anomaly.targets import normal_value_problems
    from polymodal.config.anomaly import anomaly_settings
    from polymodal.errors import ManifestError

    if config.task != "anomaly" or not config.targets:
        return
    explicit = config.anomaly is not None and "normal" in config.anomaly.model_fields_set
    problems = normal_value_problems(manifest, config.targets[0], anomaly_settings(config).normal, every=explicit)
    if problems:
        raise ManifestError(problems, source=manifest.name)


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
    config_app.command("check")(user_errors(config_check))
    app.add_typer(config_app, name="config")
