"""The commands over one model: ``train``, ``evaluate``, ``explain``, ``predict``, ``threshold`` (an
anomaly run's flag threshold, a two-class classifier's decision threshold), ``demo`` and ``tune`` (thin layers over
:class:`~polymodal.predictor.MultimodalPredictor`), and ``compare`` over several runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from polymodal.cli.common import (
    ON_ERROR,
    DataOpt,
    OnErrorOpt,
    RunArg,
    SetOpt,
    SetsConfigKeys,
    SupportOpt,
    check_on_error,
    console,
    listing_skipped,
    load_run,
    print_metrics,
    print_rows,
    print_skipped,
    print_warning,
    unused_options,
    user_errors,
)
from polymodal.run_files import EVALUATION_DIR, EXPLAIN_DIR, EXPORT_DIR, REPORT_FILE, SKIPPED_FILE
from polymodal.utils.tables import format_value


def train(
    config: Annotated[Path, typer.Argument(help="YAML config.")],
    train: Annotated[Path, typer.Option("--train", help="Training manifest.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder to write.")],
    valid: Annotated[Path | None, typer.Option("--valid", help="Validation manifest.")] = None,
    test: Annotated[Path | None, typer.Option("--test", help="Test manifest, evaluated after training.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out (refused "
                                            "otherwise).")] = False,
    unlabeled: Annotated[Path | None, typer.Option(
        "--unlabeled", help="Unlabelled manifest for the config's transfer method (domain adaptation, "
                            "semi-supervised, distillation on unlabelled pairs).")] = None,
    on_error: Annotated[str | None, typer.Option(
        "--on-error", metavar="|".join(ON_ERROR), help="What an unreadable or missing file does (default: the "
                                                         "config's data.on_error; the run records it): raise stops, "
                                                         "naming it; skip leaves its row out; missing treats its "
                                                         "modality as missing in that row.")] = None,
    set_: SetOpt = None,
) -> None:
    """Train a model and write the run folder (model, preprocessors, metrics, report)."""
    from polymodal.config import load_config
    from polymodal.config.overrides import naming_overrides, parse_overrides
    from polymodal.errors import ConfigError
    from polymodal.resume import check_out, run_folder_lock

    check_on_error(on_error)
    overrides = parse_overrides(set_ or [])
    if on_error is not None:  # as --set data.on_error=... would (given last, it wins)
        overrides.pop("data.on_error", None)
        overrides["data.on_error"] = on_error
    cfg = load_config(config, overrides=overrides, check_files=True)  # named as config check does
    # --out refused in a moment, not after the seconds the training engine (Lightning) takes to import; fit
    # checks it again (an anomaly scorer's: by its last training phase, which finishes it sooner)
    with run_folder_lock(out, cfg.train, source=str(config)):  # a folder another fit is writing: named as such
        check_out(out, cfg, resume=resume, overwrite=overwrite)
    from polymodal.data.skipped import count_skipped
    from polymodal.predictor import MultimodalPredictor

    predictor = MultimodalPredictor.from_config(cfg)
    try:  # files it skips are warned about as found (before the epochs; the test set's after them)
        predictor.fit(train, valid, test=test, out=out, resume=resume, overwrite=overwrite, unlabeled=unlabeled)
    except ConfigError as err:  # found once the model is built (more blocks to freeze than it has): name the file
        if err.source is not None:  # another file's (a teacher run's config): as it is
            raise
        with naming_overrides(overrides, str(config)):  # a problem at a key --set gave is the --set value's
            raise ConfigError(err.problems, source=str(config)) from None
    if predictor.rank != 0:  # a secondary process of distributed training
        return
    if not predictor.last_skipped.empty:  # warned about above, perhaps before many epochs of output: the count again
        counts = predictor.last_skipped["split"].value_counts()
        said = count_skipped(predictor.last_skipped, predictor.config.data.on_error)  # skipped, or read as missing
        print_warning(f"{said} (data.on_error: {predictor.config.data.on_error}; "
                      + ", ".join(f"{n} {split}" for split, n in counts.items())
                      + f"), named above; full list: {out / SKIPPED_FILE}")
    for split, scores in predictor.metrics.items():
        print_metrics(scores, f"{split} metrics")
    chosen = predictor.info.get("decision")
    for label, point in ({"": chosen} if chosen and "threshold" in chosen else chosen or {}).items():  # threshold: auto
        what = "decision threshold" + (f" of label '{label}'" if label else "")  # a multilabel model: one per label
        console.print(f"{what} {format_value(point['threshold'])}, chosen by {point['criterion']} on {point['rows']} "
                      f"validation rows ({point['positives']} positive; sensitivity "
                      f"{format_value(point['sensitivity'])}, specificity {format_value(point['specificity'])})",
                      highlight=False)
    report = out / REPORT_FILE
    console.print(f"run written to {out}" + (f" (report: {report})" if report.is_file() else ""))


def evaluate(
    ctx: typer.Context,
    run: RunArg,
    data: DataOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics as JSON.")] = False,
    missing: Annotated[bool, typer.Option("--missing", help="Also evaluate every non-empty subset of modalities, "
                                          "the others treated as missing.")] = False,
    robustness: Annotated[bool, typer.Option("--robustness", help="Also corrupt one modality at a time at "
                                             "severities 0-5 (every corruption of its kind).")] = False,
    corruption: Annotated[list[str] | None, typer.Option("--corruption", metavar="MODALITY[:CORRUPTION]", help="Sweep only MODALITY or "
                                                         "MODALITY:CORRUPTION (repeatable; implies "
                                                         "--robustness).")] = None,
    reference: Annotated[Path | None, typer.Option("--reference", help="A reference run (e.g. late fusion) swept "
                                                   "the same way, for effective robustness.")] = None,
    rows: Annotated[int | None, typer.Option("--rows", min=1, help="--missing/--robustness on a seeded random "
                                             "sample of at most this many rows.")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the corruptions and the row sample.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the --missing table (missing.csv), the "
                                             "--robustness tables and plot, and the list of skipped files "
                                             "(default RUN/evaluation; written after the metrics are printed: "
                                             "where it cannot be, a warning names it and the metrics "
                                             "stand).")] = None,
    retrieval: Annotated[bool, typer.Option("--retrieval", help="Cross-modal retrieval instead: Recall@1/5/10, "
                                            "mAP, median rank per direction (needs 'align').")] = False,
    query: Annotated[str | None, typer.Option("--query", help="--retrieval: the query modality.")] = None,
    gallery: Annotated[str | None, typer.Option("--gallery", help="--retrieval: the gallery modality.")] = None,
    hits: Annotated[str, typer.Option("--hits", help="--retrieval: a hit is the query's own row (pair) or a row "
                                      "with the same label (label); auto: label when the data has one.")] = "auto",
    labels: Annotated[str | None, typer.Option("--labels", help="--retrieval: the label column (default: the "
                                               "config's target).")] = None,
    cca_train: Annotated[Path | None, typer.Option("--cca-train", help="--retrieval: fit the linear-CCA baseline "
                                                   "on this manifest (default: the run's training manifest), on "
                                                   "the features --cca-features names.")] = None,
    cca: Annotated[bool, typer.Option("--cca/--no-cca", help="--retrieval: report the linear-CCA baseline beside "
                                      "the model.")] = True,
    cca_features: Annotated[str, typer.Option("--cca-features", help="--retrieval: what linear CCA is fitted on: "
                                              "'auto' (per modality: a frozen pretrained encoder's outputs, else "
                                              "the preprocessed inputs), 'encoder' outputs (for encoders the run "
                                              "trained, the model's own features: not an independent baseline) or "
                                              "preprocessed 'input' (numeric modalities only: directions with a "
                                              "text modality get no baseline). Each row names what it used.")] = "auto",
    by: Annotated[str | None, typer.Option("--by", help="Also the metrics of each value of this column of the "
                                           "data (a site, a machine, a motor load).")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Anomaly runs: score the rows against the labels "
                                               "of this column (default: the config's target; a detector trained "
                                               "with target: null has none).")] = None,
    normal: Annotated[list[str] | None, typer.Option("--normal", metavar="VALUE", help="Anomaly runs: a label that "
                                                     "means normal (repeatable; default: the config's "
                                                     "anomaly.normal).")] = None,
    support: SupportOpt = None,
    on_error: OnErrorOpt = None,
) -> None:
    """Evaluate a trained model on a labelled manifest. An option of another mode (a sweep's
    with --retrieval, a retrieval option without it) is refused, not ignored."""
    from polymodal.errors import OptionError
    from polymodal.estimator import ROBUSTNESS, SUBSETS
    from polymodal.predictor import MultimodalPredictor
    from polymodal.utils.io import check_folder_path

    robustness = robustness or bool(corruption)
    problems = _unused_evaluate_options(ctx, retrieval=retrieval, missing=missing, robustness=robustness, rows=rows)
    if problems:  # before the run is loaded or the manifest read
        raise OptionError(problems)
    if out is not None:  # a file in the way, found now rather than after the evaluation
        check_folder_path(out, "--out", writable=True)
    predictor = load_run(run, on_error)
    labelled_by = {key: value for key, value in (("target", target), ("normal", normal)) if value is not None}
    if labelled_by and predictor.config.task != "anomaly":
        raise OptionError(unused_options(ctx, ["target", "normal"], "applies only to an anomaly run; a "
                                         f"'{predictor.config.task}' run is evaluated against its config's target "
                                         f"{predictor.config.targets}"))
    if missing:  # refused before the plain evaluation runs
        predictor.require(SUBSETS)
    if robustness:
        predictor.require(ROBUSTNESS)
    if retrieval:  # see polymodal.cli.retrieval
        from polymodal.cli.retrieval import show_retrieval

        with predictor.using_support(support):  # retrieval models take none: a clear error
            show_retrieval(predictor, data, query=query, gallery=gallery, hits=hits, labels=labels, cca=cca,
                           cca_train=cca_train, cca_features=cca_features, as_json=as_json)
        return
    if out is None and (missing or robustness):  # the sweeps write their tables: checked before they run
        check_folder_path(run / EVALUATION_DIR, "--out (default RUN/evaluation)", writable=True)
    ref = MultimodalPredictor.load(reference) if reference is not None else None  # a bad one: named before the work
    report_skipped: Callable[[], None] | None = None  # writes the list of skipped files (and warns): once the metrics are shown, or on failure
    try:
        with predictor.using_support(support, queries=data):  # embedded with the query manifest's modalities
            if missing or robustness:  # read and validated once for the evaluation and the sweeps (warned once)
                data = predictor.read_data(data, require_target=True)
            swept = None
            if robustness:  # the specs and the reference (task, modalities, labels): refused before any evaluation
                from polymodal.evaluation.robustness import check_reference, parse_corruptions

                swept = parse_corruptions(corruption, predictor)
                if ref is not None:
                    check_reference(predictor, ref, swept, data)
            with listing_skipped(predictor, (out or run / EVALUATION_DIR) / SKIPPED_FILE) as report_skipped:
                metrics = predictor.evaluate(data, by=by, **labelled_by)
            extra: dict[str, Any] = {}
            if missing or robustness:
                from polymodal.evaluation.sweeps import run_evaluations

                extra = run_evaluations(predictor, data, out or run / EVALUATION_DIR, missing=missing,
                                        robustness=robustness, corruptions=swept, reference=ref, max_rows=rows,
                                        seed=seed, checked=True)
        _print_evaluation(predictor, metrics, extra, data, as_json=as_json, written_to=out or run / EVALUATION_DIR)
    finally:
        if report_skipped is not None:  # a list that cannot be written is a warning: the metrics stand
            report_skipped()


def _print_evaluation(predictor: Any, metrics: dict[str, Any], extra: dict[str, Any], data: Any, *, as_json: bool,
                      written_to: Path) -> None:
    """``evaluate``'s output: the metrics (and the sweeps' ``extra`` tables, written to ``written_to``),
    as JSON or as tables."""
    if as_json:
        from polymodal.utils.io import finite_json

        print(json.dumps(finite_json({**metrics, **extra}), indent=2, default=str))
        return
    from polymodal.metrics.tasks import MIXED_UNITS, flat_metrics, mixed_units_noted
    from polymodal.utils.values import shown_apart

    groups = metrics.pop("by", {})
    print_metrics(metrics, f"metrics on {data.name}")
    for column, values in groups.items():
        shown = shown_apart(values)  # 'F ' and 'F' (a column no modality keys as one category) told apart
        notes = {value: scores["note"] for value, scores in values.items() if scores.get("note")}
        said = next(iter(notes.values())) if len(set(notes.values())) == 1 and len(notes) == len(values) else None
        print_rows([{column: shown[value], **flat_metrics(scores)} for value, scores in values.items()],
                   f"metrics by {column}", note=f"every {column}: {said}" if said else
                   "\n".join(f"{column} {shown[value]}: {note}" for value, note in notes.items()) or None)
    swept = extra.get("sweep_rows", 0)
    sample = f" on a sample of {swept} of {metrics.get('rows')} rows (--rows)" if swept < metrics.get("rows", 0) else ""
    if "missing" in extra:
        alone = len(predictor.config.modality_names) == 1
        notes = ["a model of one modality has no other subset: the row is the metrics above" if alone else None,
                 MIXED_UNITS if mixed_units_noted(metrics) else None]
        print_rows(extra["missing"], f"modality subsets (the others missing){sample}; the metrics count every row, "
                                     "those with none of a subset's modalities (rows_with_any: the others) "
                                     "predicted from none",
                   note="\n".join(note for note in notes if note) or None)
    if "robustness" in extra:
        shown = [{k: v for k, v in row.items() if k != "clean"} for row in extra["robustness"]["table"]]  # = s0
        print_rows(shown, f"{extra['robustness']['metric']} by corruption severity (0-5){sample}; all columns in "
                          "robustness_summary.csv")
    if extra:
        console.print(f"tables written to {written_to}")


RETRIEVAL_OPTIONS = ["query", "gallery", "hits", "labels", "cca_train", "cca", "cca_features"]
SWEEP_OPTIONS = ["missing", "robustness", "corruption", "rows", "seed", "reference", "out", "by", "target", "normal"]


def _unused_evaluate_options(ctx: typer.Context, *, retrieval: bool, missing: bool, robustness: bool,
                             rows: int | None) -> list[str]:
    """One line per option of ``evaluate`` given where it does nothing: a retrieval option without
    --retrieval, a sweep option (or --out, as retrieval writes no file) with it, a sweep setting
    without its sweep; --json and --support apply in every mode."""
    if retrieval:
        problems = unused_options(ctx, SWEEP_OPTIONS, "does not apply with --retrieval (which evaluates retrieval "
                                                     "only and writes no file)")
        if not ctx.params["cca"]:
            problems += unused_options(ctx, ["cca_train", "cca_features"], "sets up the linear-CCA baseline that "
                                                                          "--no-cca turns off; give one of them")
        return problems
    problems = unused_options(ctx, RETRIEVAL_OPTIONS, "applies only with --retrieval")
    if missing or robustness:
        problems += unused_options(ctx, ["target", "normal"], "applies only to the plain evaluation, not with "
                                                              "--missing or --robustness (whose sweeps score the "
                                                              "config's target)")
    if not (missing or robustness):
        problems += unused_options(ctx, ["rows", "seed"], "applies only with --missing or --robustness")
    elif not robustness and rows is None:
        problems += unused_options(ctx, ["seed"], "applies with --missing only together with --rows (it seeds the "
                                                  "row sample; --missing alone evaluates every row)")
    if not robustness:
        problems += unused_options(ctx, ["reference"], "applies only with --robustness or --corruption (the "
                                                       "reference run is swept the same way, for effective "
                                                       "robustness)")
    return problems


def explain(
    run: RunArg,
    data: DataOpt,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for explain.html, shapley.csv and "
                                             "importance.csv (default RUN/explain).")] = None,
    rows: Annotated[int | None, typer.Option("--rows", min=1, help="Explain a seeded random sample of at most "
                                             "this many rows.")] = None,
    samples: Annotated[int, typer.Option("--samples", min=0, help="Rows that get heat-maps inside each "
                                         "modality.")] = 4,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the row sample and, beyond 6 modalities, of the "
                                       "sampled modality orders (the service's /explain uses 0).")] = 0,
    output: Annotated[str | None, typer.Option(
        "--output", metavar="NAME", help="The output to explain: a class, label or target name (default: each "
                                         "row's predicted class; multilabel / regression: the first label / "
                                         "target).")] = None,
    support: SupportOpt = None,
    on_error: OnErrorOpt = None,
) -> None:
    """Attribute predictions to modalities (Shapley values) and, inside each, to pixels, tokens or
    time-frequency bins (Integrated Gradients); write an HTML page. The printed table and the page
    name the explained output (--output picks another)."""
    from polymodal.estimator import EXPLAIN
    from polymodal.evaluation.data import output_names
    from polymodal.utils.scores import output_index

    if out is not None and out.exists() and not out.is_dir():  # found before the work, not after
        raise NotADirectoryError(f"--out must be a folder (explain.html, shapley.csv...); {out} is a file")
    predictor = load_run(run, on_error)
    predictor.require(EXPLAIN)
    folder = out or run / EXPLAIN_DIR
    with predictor.using_support(support, queries=data):  # a few-shot model: the support set's classes
        names = output_names(predictor)
        chosen = output_index(output, names, predictor.config.task)  # an unknown name: refused before the work
        with listing_skipped(predictor, folder / SKIPPED_FILE) as report_skipped:
            explanation = predictor.explain(data, max_rows=rows, samples=samples, seed=seed,
                                            output=None if chosen is None else names[chosen])
        report_skipped()
    page = explanation.to_html(folder)
    table = explanation.importance.drop(columns="explained")  # named on a line of its own, not on every row
    undefined = [c[:-len("_all")] for c in table.columns if c.endswith("_all") and table[c].isna().all()]
    print_rows(table.to_dict("records"), "modality importance",
               note=f"{undefined[0]}: undefined on these rows (it needs labelled rows of every kind it compares: "
                    "an anomaly detector's AUROC needs normal and anomalous rows)" if undefined else None)
    groups = explanation.by_group()  # an anomaly detector's: which modality each kind of row shows in
    if not groups.empty:
        print_rows(groups.to_dict("records"), f"mean Shapley value by {groups.columns[0]}")
    scored = "each row's score against its label" if explanation.task == "anomaly" else "the whole prediction"
    console.print(f"explained: the {explanation.explained_quantity}{_measured_against(explanation, predictor)} "
                  f"(the Shapley columns; any metric columns score {scored})", highlight=False)
    for caveat in explanation.caveats():  # an untrained missing path, a base that already predicts a class
        console.print(f"note: {caveat}", highlight=False)
    console.print(f"explanation written to {page}")


def _measured_against(explanation: Any, predictor: Any) -> str:
    """What an anomaly detector's Shapley values are measured against, in words (empty for other tasks)."""
    if explanation.reference == "normal":  # the normal rows' mean score with every modality, and the flag threshold
        threshold = explanation.threshold
        flagged = "" if threshold is None else f"; flagged above {format_value(threshold)}"
        return f" against the normal rows' mean score ({format_value(predictor.coalition_reference()[-1])} with every " \
               f"modality{flagged})"
    if explanation.task == "anomaly":
        return (" against no modality (this run records no normal rows' scores to measure against: more than 6 "
                "modalities, or saved by an earlier polymodal, which a new fit replaces)")
    return ""


def predict(
    run: RunArg,
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Where to write predictions (.csv or .parquet).")],
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1, help="Rows decoded and predicted at a time.")] = 1024,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted prediction into --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the file already at --out, or discard "
                                            "the finished chunks of an interrupted prediction into it (both "
                                            "refused otherwise).")] = False,
    keep: Annotated[list[str] | None, typer.Option("--keep", metavar="COLUMN", help="A manifest column to copy into --out after "
                                                   "'row' (an id to join on; repeatable).")] = None,
    support: SupportOpt = None,
    on_error: OnErrorOpt = None,
) -> None:
    """Predict every row of a manifest, chunk by chunk with a progress bar (resumable; see
    polymodal.deploy.batch); each row carries its manifest row number (and the --keep columns),
    classification adds one probability column per class."""
    from polymodal.deploy.batch import predict_to_file

    predictor = load_run(run, on_error)
    with predictor.quiet_skips():  # listed below
        report = predict_to_file(predictor, data, out, chunk_rows=chunk_rows, resume=resume, overwrite=overwrite,
                                 support=support, keep=keep or ())
    if report.skipped_file is not None:
        print_skipped(report.skipped, report.skipped_file, predictor, predicting=True)
    resumed = f" ({report.chunks_resumed} chunk(s) reused from the interrupted run)" if report.chunks_resumed else ""
    written = f"{report.rows} predictions written to {out}"
    if report.unpredicted:
        written = f"{report.rows} rows written to {out} ({report.unpredicted} {_unpredicted(report, predictor)})"
    console.print(written + resumed)


def _unpredicted(report: Any, predictor: Any) -> str:
    """Why the rows a batch prediction wrote without one (``report.unpredicted``) have none, in words."""
    if predictor.config.task == "anomaly":  # no modality read, or a scorer that could not compare them
        return "without a score, flagged: their note says why"
    listed = f"; listed in {report.skipped_file}" if report.skipped_file is not None else ""
    return f"without a prediction: no modality could be read{listed}"  # data.on_error: missing kept them


def threshold(
    run: RunArg,
    fpr: Annotated[float | None, typer.Option("--fpr", help="Anomaly run: flag this false-positive rate of its "
                                              "validation normal rows (between 0 and 1).")] = None,
    score: Annotated[float | None, typer.Option("--score", help="Anomaly run: flag rows scoring above this. "
                                                "Two-class classifier: call the positive (second) class from "
                                                "this probability of it.")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="Two-class classifier: the threshold that "
                                               "maximises balanced_accuracy, f1, mcc or accuracy on its "
                                               "validation rows.")] = None,
    min_sensitivity: Annotated[float | None, typer.Option("--min-sensitivity", help="Two-class classifier: keep "
                                                          "this validation sensitivity, with the best specificity "
                                                          "there.")] = None,
    min_specificity: Annotated[float | None, typer.Option("--min-specificity", help="Two-class classifier: keep "
                                                          "this validation specificity, with the best sensitivity "
                                                          "there.")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Two-class classifier: no threshold, the more probable "
                                        "class.")] = False,
) -> None:
    """Set a run's decision threshold without retraining. An anomaly run flags at a false-positive
    rate on its validation normal rows (--fpr) or at a score (--score); a two-class classifier calls
    its positive (second) class from a probability (--score), a threshold chosen on its validation
    rows (--metric, --min-sensitivity, --min-specificity) or by the more probable class (--reset);
    a multilabel model each label likewise (--score for every label, chosen per label, or 0.5).
    The run folder is rewritten (its config records the new anomaly or decision settings); an
    export of it keeps the old threshold until it is made again (polymodal export RUN)."""
    from polymodal.config.decision import DECIDED_TASKS
    from polymodal.errors import OptionError, RunFolderError, SchemaMismatchError
    from polymodal.runfolder import check_run
    from polymodal.utils.io import exclusive_lock

    given = {"--fpr": fpr, "--score": score, "--metric": metric, "--min-sensitivity": min_sensitivity,
             "--min-specificity": min_specificity, "--reset": reset or None}
    chosen = [option for option, value in given.items() if value is not None]
    if len(chosen) != 1:
        raise OptionError([f"give one of {', '.join(given)} ({'not both: got ' + ' and '.join(chosen) if chosen else 'none given'})"])
    if fpr is not None and not 0 < fpr < 1:
        raise OptionError([f"--fpr: a false-positive rate between 0 and 1 (both excluded); got {fpr}"])

    def busy(held: Path) -> RunFolderError:
        return RunFolderError(f"{run} is being trained into by another fit (it holds {held}); wait for it to end")

    check_run(run)  # no lock file beside a path that is no run
    with exclusive_lock(run, busy):  # no fit into the run meanwhile
        predictor = load_run(run)
        task = predictor.config.task
        if task == "anomaly" and chosen[0] not in ("--fpr", "--score"):
            raise OptionError([f"{chosen[0]} sets a two-class classifier's threshold; {run} is an anomaly run: give "
                               "--fpr or --score"])
        classes = predictor.pipeline.targets.classes if task == "classification" else None
        decided = task in DECIDED_TASKS and (classes is None or len(classes) == 2)
        if not decided and task != "anomaly":  # before the library's refusal, which names its Python method
            what = (f"a classifier of {len(classes)} classes, which predicts the most probable one" if classes
                    else f"a task '{task}' run")
            raise SchemaMismatchError(f"{chosen[0]}: polymodal threshold sets an anomaly run's flag threshold, a "
                                      f"two-class classifier's decision threshold or a multilabel model's; {run} is "
                                      f"{what}")
        if decided and fpr is not None:
            raise OptionError([f"--fpr is an anomaly run's; {run} is a {task} run: --min-specificity {1 - fpr:g} keeps "
                               f"its validation false-positive rate at most {fpr:g}"])
        rates = {"--score": score if decided else None, "--min-sensitivity": min_sensitivity,
                 "--min-specificity": min_specificity}
        out_of_range = [f"{option}: a {'probability' if option == '--score' else 'rate'} between 0 and 1; got {value:g}"
                        for option, value in rates.items() if value is not None and not 0 < value < 1
                        and not (option != "--score" and value == 1)]
        if out_of_range:
            raise OptionError(out_of_range)
        if task == "anomaly":
            from polymodal.anomaly.threshold import rethreshold

            change = rethreshold(predictor, fpr=fpr, score=score, fpr_setting="--fpr")  # set_threshold, naming --fpr
        else:
            change = predictor.set_threshold("auto" if metric or min_sensitivity or min_specificity else score,
                                             metric=metric, min_sensitivity=min_sensitivity,
                                             min_specificity=min_specificity)
        predictor.save(run)
    _print_threshold_change(run, task, change)


def _print_threshold_change(run: Path, task: str, change: dict[str, Any]) -> None:
    """What ``polymodal threshold`` changed, and what the validation rows say at the new threshold."""
    def shown(value: float | list[float] | None) -> str:
        if isinstance(value, list):  # a multilabel model's, one per label
            return "[" + ", ".join(format_value(v) for v in value) + "]"
        return ("0.5 (the default)" if task == "multilabel" else "the more probable class") if value is None \
            else format_value(value)

    console.print(f"threshold: {shown(change['old'])} -> {shown(change['new'])}"
                  + (f" (chosen by {change['criterion']} on the validation rows)" if change.get("criterion") else ""),
                  highlight=False)
    if task == "anomaly":
        if change["valid_fpr"] is None:
            console.print("validation FPR: unknown (the run keeps no validation scores)", highlight=False)
        else:
            flagged = round(change["valid_fpr"] * change["valid_normals"])
            console.print(f"validation FPR: {format_value(change['valid_fpr'])} ({flagged} of "
                          f"{change['valid_normals']} validation normal rows above it)", highlight=False)
        for label, subset in (change.get("subsets") or {}).items():  # each subset of modalities at the same rate
            held = (f"of {subset['valid_normals']} normal rows holding them" if subset["valid_normals"]
                    else "no validation normal row holds them")
            rate = "unknown" if subset["valid_fpr"] is None else format_value(subset["valid_fpr"])
            console.print(f"  with {label}: threshold {format_value(subset['threshold'])}, validation FPR "
                          f"{rate} ({held})", highlight=False)
        for why in dict.fromkeys((change.get("unscored_subsets") or {}).values()):  # no score: flagged, unchecked
            labels = [label for label, reason in change["unscored_subsets"].items() if reason == why]
            console.print(f"  with {' or '.join(labels)} alone: not scored ({why}): such a row is flagged",
                          highlight=False)
    elif change["valid"] is not None:
        rates = change["valid"]
        console.print(f"validation ({rates['rows']} rows): sensitivity {format_value(rates['sensitivity'])}, "
                      f"specificity {format_value(rates['specificity'])}, accuracy {format_value(rates['accuracy'])}",
                      highlight=False)
    console.print(f"run updated: {run}", highlight=False)
    if (run / EXPORT_DIR).is_dir():  # exported before: its deploy.json or graph holds the old threshold
        verb = "flags" if task == "anomaly" else "decides"
        print_warning(f"{run / EXPORT_DIR} still {verb} at the old threshold {shown(change['old'])}: export the run "
                      f"again ('polymodal export {run}') before serving it")


def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the dataset and the runs.")] = Path("runs/demo"),
    size: Annotated[int, typer.Option(min=20, max=5000, help="Rows of av-digits to use.")] = 5000,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs per model.")] = 5,
) -> None:
    """Prepare av-digits, train image-only, audio-only and several fusions, compare them."""
    from polymodal.demo import run_demo

    run_demo(out, size=size, epochs=epochs, console=console)


def tune(
    config: Annotated[Path, typer.Argument(help="YAML config with a 'tune' section (space, trials...).")],
    train: Annotated[Path, typer.Option("--train", help="Training manifest.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for trials.csv, best_config.yaml, summary.json, study.journal.")],
    valid: Annotated[Path | None, typer.Option("--valid", help="Validation manifest (the metric is measured here).")] = None,
    trials: Annotated[int | None, typer.Option("--trials", min=1, help="Number of trials (default: tune.trials).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier search's trials.csv, "
                                            "best_config.yaml, summary.json and study.journal in --out (refused "
                                            "otherwise).")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the search in --out (interrupted, or with a "
                                         "larger --trials or tune.trials); its finished trials count.")] = False,
    set_: SetOpt = None,
) -> None:
    """Search hyper-parameters with Optuna (TPE sampler, median pruning on the validation metric)."""
    from polymodal.config.overrides import parse_overrides
    from polymodal.tune import run_search

    def show(row: dict[str, Any]) -> None:
        value = "-" if row["value"] is None else f"{row['value']:.4f}"
        note = f" ({row['note']})" if "note" in row else ""
        console.print(f"trial {row['trial']:>3}  {row['state']:<9} {value}  " + ", ".join(
            f"{k}={v}" for k, v in row.items() if k not in ("trial", "state", "value", "seconds", "note")) + note)

    table = run_search(config, train, valid, out, trials, on_trial=show, overwrite=overwrite, resume=resume,
                       overrides=parse_overrides(set_ or []))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    goal = "higher" if summary["direction"] == "maximize" else "lower"
    print_rows(table.to_dict("records"), f"trials (value: {summary['metric']}, {goal} is better)", digits={"seconds": 1})
    stopped = f", {summary['stopped']} stopped (not counted)" if summary["stopped"] else ""
    console.print(f"{summary['trials']} trial(s): {summary['completed']} completed, {summary['pruned']} pruned, "
                  f"{summary['failed']} failed (metric not a number){stopped}")
    console.print(f"best: trial {summary['best_trial']}, {summary['metric']} {summary['best_value']:.4f}; best config: "
                  f"{out / 'best_config.yaml'}; all trials: {out / 'trials.csv'}")


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (runs/* works).")],
    split: Annotated[str | None, typer.Option("--split", metavar="valid|test",
                                              help="Whose metrics (default: test when every run has them).")] = None,
    by: Annotated[str | None, typer.Option("--by", metavar="METRIC", help="Rank by this metric (auroc, macro_f1, "
                                           "rmse_per_target.TARGET...; default: the task's headline one, when the "
                                           "runs predict the same targets).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records instead of a table.")] = False,
) -> None:
    """Compare runs side by side, best first: task, target(s), modalities, model, epochs, parameters, training
    time and their metrics (a leaderboard across experiments)."""
    from polymodal.compare import compare_runs

    frame = compare_runs(runs, split, by)  # --split checked there
    if as_json:
        from polymodal.utils.io import finite_json

        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        print(json.dumps(finite_json(records), indent=2, default=str))
        return
    ranked = frame.attrs.get("ranked_by")
    print_rows(frame.astype(object).where(frame.notna(), None).to_dict("records"),
               f"{len(frame)} run(s), best first by {ranked}" if ranked
               else f"{len(frame)} run(s), each task and target's best first" if frame.attrs.get("grouped")
               else f"{len(frame)} run(s)",
               digits={"train_s": 1})


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate``, ``explain``, ``predict``, ``threshold``, ``demo``, ``tune`` and ``compare``
    to the ``polymodal`` app."""
    for command in (train, evaluate, explain, predict, threshold, demo, tune, compare):
        app.command(cls=SetsConfigKeys if command in (train, tune) else None)(user_errors(command))
