"""The shared-space commands of ``polymodal``: ``embed``, ``index build``, ``retrieve``, ``zero-shot``
(and the table of ``evaluate --retrieval``).

Usage:

    polymodal embed RUN --data X --modality M --out emb.parquet [--overwrite]
    polymodal index build RUN --data X --modality M --out IDX [--id-column C]
    polymodal retrieve RUN --index IDX --query Q --modality M2 [-k 10] [--out hits.csv [--overwrite]]
    polymodal zero-shot RUN --data X --modality M --classes "cat,dog" [--template "a photo of a {}"]
        [--out preds.csv [--overwrite]]
    polymodal evaluate RUN --data X --retrieval [--query M --gallery M2 --hits label --cca-train T]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from polymodal.cli.common import (
    DataOpt,
    ModalityOpt,
    RunArg,
    console,
    print_rows,
    print_warning,
    user_errors,
)
from polymodal.utils.io import check_table_out, write_table

# the table an --out names is new unless asked (as predict's): the input manifest, never
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace the file already at --out (never the "
                                                             "manifest read).")]


def embed(
    run: RunArg,
    data: DataOpt,
    modality: ModalityOpt,
    out: Annotated[Path, typer.Option("--out", help="Embedding table to write (.parquet or .csv).")],
    overwrite: OverwriteOpt = False,
) -> None:
    """Write the shared-space embedding of one modality for every row that holds it."""
    from polymodal.predictor import MultimodalPredictor
    from polymodal.retrieval.embed import save_embeddings

    check_table_out(out, overwrite=overwrite, inputs={"the --data manifest": data})  # before the rows are embedded
    frame = MultimodalPredictor.load(run).embed(data, modality)
    save_embeddings(frame, out, what="--out")
    console.print(f"{len(frame)} embeddings ({frame.shape[1]}-d) of '{modality}' written to {out}")


def index_build(
    run: RunArg,
    data: DataOpt,
    modality: ModalityOpt,
    out: Annotated[Path, typer.Option("--out", help="Index folder to write.")],
    id_column: Annotated[str | None, typer.Option("--id-column", help="Manifest column naming each item "
                                                  "(default: the row number).")] = None,
    keep: Annotated[list[str] | None, typer.Option("--keep", metavar="COLUMN", help="A manifest column kept in the index and shown "
                                                   "beside every hit of its items (repeatable: --keep label "
                                                   "--keep caption).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the index already in --out.")] = False,
) -> None:
    """Embed a gallery manifest's rows and index them with FAISS (exact cosine search)."""
    from polymodal.errors import RunFolderError
    from polymodal.predictor import MultimodalPredictor
    from polymodal.retrieval.index import check_index_out
    from polymodal.retrieval.search import build_index
    from polymodal.utils.io import exclusive_lock

    def busy(held: Path) -> RunFolderError:
        return RunFolderError(f"{out} is being built by another 'index build' (it holds {held}); wait for it to "
                              "end, or give another --out")

    check_index_out(out, overwrite=overwrite)  # before the gallery is embedded
    with exclusive_lock(out, busy):
        index = build_index(MultimodalPredictor.load(run), data, modality, id_column=id_column, run=run,
                            keep=keep or ())
        index.save(out, overwrite=overwrite)
    console.print(f"indexed {len(index)} '{modality}' items ({index.dim}-d) in {out}")


def _check_overwrite(out: Path | None, overwrite: bool) -> None:
    """Refuse ``--overwrite`` without the ``--out`` it applies to (the results are printed)."""
    from polymodal.errors import OptionError

    if overwrite and out is None:
        raise OptionError(["--overwrite applies only with --out (it replaces the file --out names); without --out "
                           "nothing is written"])


SHOWN_QUERIES = 10  # queries whose hits retrieve prints without --out


def retrieve(
    run: RunArg,
    index: Annotated[Path, typer.Option("--index", help="Index folder from 'polymodal index build'.")],
    query: Annotated[Path, typer.Option("--query", help="Manifest of queries.")],
    modality: ModalityOpt,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Results per query.")] = 10,
    out: Annotated[Path | None, typer.Option("--out", help="Write every hit to this .csv/.parquet.")] = None,
    id_column: Annotated[str | None, typer.Option("--id-column", help="Query manifest column naming each query "
                                                  "(default: the row number).")] = None,
    keep: Annotated[list[str] | None, typer.Option("--keep", metavar="COLUMN", help="A query manifest column shown beside each of its "
                                                   "hits as query_COLUMN (repeatable).")] = None,
    same_modality: Annotated[bool, typer.Option("--same-modality", help="Allow queries of the index's own modality "
                                                 "(image -> image search with a query set apart from the gallery; a "
                                                 "query the gallery holds finds itself, score 1.0).")] = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Find the k nearest gallery items of every query row (queries from any aligned modality).
    Each hit: the query, its rank, the gallery item's id (the index's --id-column, or its row), the
    columns the index kept (index build --keep) and the cosine similarity (score, -1 to 1)."""
    from polymodal.predictor import MultimodalPredictor
    from polymodal.retrieval.index import EmbeddingIndex
    from polymodal.retrieval.search import retrieve as search

    _check_overwrite(out, overwrite)
    if out is not None:  # before the queries are embedded
        check_table_out(out, overwrite=overwrite, inputs={"the --query manifest": query})
    gallery = EmbeddingIndex.load(index)
    hits = search(MultimodalPredictor.load(run), gallery, query, modality, k, run=run, id_column=id_column,
                  keep=keep or (), same_modality=same_modality)
    title = f"top {k} per query" if k < len(gallery) else f"top {len(gallery)} per query (the whole gallery)"
    if out is not None:
        write_table(hits, out)
        console.print(f"{len(hits)} hits ({title}) for {hits['query'].nunique()} queries written to {out}")
        return
    queries = hits["query"].unique()
    if len(queries) <= SHOWN_QUERIES:
        print_rows(hits.to_dict("records"), title)
        return
    shown = hits[hits["query"].isin(queries[:SHOWN_QUERIES])]
    print_rows(shown.to_dict("records"), title,
               f"the first {SHOWN_QUERIES} of {len(queries):,} queries; --out FILE writes every hit")


def zero_shot(
    run: RunArg,
    data: DataOpt,
    modality: ModalityOpt,
    # help is rich markup: without the backslash, --help would drop "[prompts]" as a markup tag
    classes: Annotated[str, typer.Option("--classes", help="Comma-separated class names, or a JSON file "
                                         "{class: prompt or \\[prompts]}.")],
    template: Annotated[str, typer.Option("--template", help="Prompt for a bare class name.")] = "{}",
    text_modality: Annotated[str | None, typer.Option("--text-modality", help="The aligned text modality "
                                                      "(default: the only one).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write predictions to this .csv/.parquet.")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="Column of true classes, spelled as --classes, "
                                               "to score the predictions (default: the model's target, when "
                                               "its values are among the classes).")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Classify rows by the nearest class-name embedding (no labelled training for these classes)."""
    from polymodal.errors import OptionError
    from polymodal.predictor import MultimodalPredictor
    from polymodal.retrieval.zero_shot import read_classes

    _check_overwrite(out, overwrite)
    if out is not None:  # before the rows are embedded
        check_table_out(out, overwrite=overwrite, inputs={"the --data manifest": data})
    if not classes.strip():
        raise OptionError(["--classes: empty; give comma-separated class names ('cat,dog') or a JSON file of names "
                           "or {class: prompt or [prompts]}"])
    names: Any = [c.strip() for c in classes.split(",") if c.strip()]
    if classes.endswith(".json"):  # a file of names or {class: prompts}, not a class called "x.json"
        if not Path(classes).is_file():
            raise FileNotFoundError(f"--classes names a JSON file that does not exist: {classes}")
        names = read_classes(classes, what="--classes")
    predictor = MultimodalPredictor.load(run)
    frame = predictor.zero_shot(data, modality, names, text_modality=text_modality, template=template)
    scores = _zero_shot_accuracy(frame, data, labels, predictor.config.targets)
    frame = frame.reset_index()
    if out is not None:
        write_table(frame, out)
        console.print(f"{len(frame)} zero-shot predictions written to {out}")
    else:
        counts = frame["prediction"].value_counts()
        print_rows([{"class": str(c), "rows": int(n)} for c, n in counts.items()], "zero-shot predictions")
    if scores is not None:
        column, result = scores
        console.print(f"against '{column}' ({result['rows']:,} labelled rows, {result['classes']} classes): accuracy "
                      f"{result['accuracy']:.4f}, balanced accuracy {result['balanced_accuracy']:.4f}")


def _zero_shot_accuracy(frame: Any, data: Path, labels: str | None, targets: list[str]
                      ) -> tuple[str, dict[str, Any]] | None:
    """(column, :func:`~polymodal.retrieval.zero_shot.zero_shot_accuracy`) of the predictions against
    ``labels`` (refused when it is not a column or its labels are spelled otherwise), else against
    the model's target when the manifest has it and its labels are all class names; else None."""
    from polymodal.data.manifest import read_manifest
    from polymodal.errors import OptionError
    from polymodal.retrieval.zero_shot import zero_shot_accuracy

    column = labels if labels is not None else (targets[0] if targets else None)
    if column is None:
        return None
    manifest = read_manifest(data, text_columns=[column])
    if column not in manifest.columns:
        if labels is None:
            return None
        raise OptionError([f"--labels: column {labels!r} is not in {manifest.name} (columns: {list(manifest.columns)})"])
    classes = [str(c)[len("score_"):] for c in frame.columns if str(c).startswith("score_")]
    try:
        return column, zero_shot_accuracy(frame["prediction"], manifest.take(column, frame.index.to_numpy()), classes,
                                        what=f"--labels {column!r}" if labels is not None else f"the target {column!r}")
    except OptionError as err:
        if labels is not None:
            raise
        spelled = "not among the classes" in err.problems[0]
        console.print(f"not scored: {err.problems[0]}" + ("; --labels COLUMN names a column of labels spelled as "
                                                         "--classes" if spelled else ""))
        return None


def register(app: typer.Typer) -> None:
    """Add ``embed``, ``index build``, ``retrieve`` and ``zero-shot`` to the ``polymodal`` app."""
    index_app = typer.Typer(help="Build FAISS retrieval indexes over a modality's embeddings.", no_args_is_help=True)
    index_app.command("build")(user_errors(index_build))
    app.add_typer(index_app, name="index")
    app.command()(user_errors(embed))
    app.command()(user_errors(retrieve))
    app.command("zero-shot")(user_errors(zero_shot))


DISPLAY = {"recall@1": "R@1", "recall@5": "R@5", "recall@10": "R@10", "map": "mAP", "median_rank": "med. rank",
           "queries": "queries", "gallery": "gallery"}


def show_retrieval(predictor: Any, data: Path, *, query: str | None, gallery: str | None, hits: str,
                   labels: str | None, cca: bool, cca_train: Path | None, cca_features: str, as_json: bool) -> None:
    """``polymodal evaluate --retrieval``: metrics per direction, and (``cca``) the linear-CCA
    baseline fitted on ``cca_train``, by default the run's recorded training manifest."""
    from polymodal.errors import OptionError
    from polymodal.retrieval.search import FEATURES, cca_baseline, evaluate_retrieval
    from polymodal.utils.io import finite_json

    if cca and cca_train is None:
        found = predictor.recorded_manifest(["train"])
        cca_train = None if found is None else found[1]
        if cca_train is None:
            print_warning("no linear-CCA baseline: the run recorded no training manifest that still exists; give one "
                          "with --cca-train")
    if not cca:
        cca_train = None

    if cca_train is not None and cca_features not in FEATURES:  # refused before the model's evaluation
        raise OptionError([f"--cca-features: 'auto', 'encoder' or 'input'; got {cca_features!r}"])
    results: dict[str, Any] = {"model": evaluate_retrieval(predictor, data, query, gallery, hits=hits, labels=labels)}
    if cca_train is not None:  # empty when no direction has features of that kind (it warns)
        baseline = cca_baseline(predictor, cca_train, data, query, gallery, features=cca_features, hits=hits,
                                labels=labels)
        if baseline:
            results["linear_cca"] = baseline
    if as_json:
        print(json.dumps(finite_json(results), indent=2, allow_nan=False))  # an undefined metric is null
        return
    rows = [{"method": method, "direction": direction, "features": scores.get("features", "shared space"),
             "hits": scores["hits"], **{short: scores[key] for key, short in DISPLAY.items()}}
            for method, table in results.items() for direction, scores in table.items()]
    print_rows(rows, f"retrieval on {data.name}")
