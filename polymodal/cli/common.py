"""What every ``polymodal`` command shares: the consoles, the error wrapper, the common
arguments and the printers.

User mistakes (bad config, bad manifest, unreadable file...) print one clear message and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import errno
import functools
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from polymodal.errors import PATH_ERRORS, AbsentInputError, DecodeError, ManifestError, PolymodalError, command_line
from polymodal.utils.tables import format_value, print_table

# soft_wrap: a long path or message stays one line (copied whole), on a terminal or not. markup off:
# what is printed is text (a path, a label, a --set value holding [brackets] prints as written); the
# few styled words are rich Text (labelled)
console = Console(soft_wrap=True, markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False)
F = TypeVar("F", bound=Callable[..., Any])

RunArg = Annotated[Path, typer.Argument(help="A run folder written by 'polymodal train'.")]
DataOpt = Annotated[Path, typer.Option("--data", help="Manifest (CSV, Parquet, JSONL or Arrow).")]
ModalityOpt = Annotated[str, typer.Option("--modality", help="An aligned modality of the run.")]
SupportOpt = Annotated[Path | None, typer.Option("--support", help="Few-shot models (transfer: protonet): a labelled "
                                                 "manifest whose classes' prototypes classify --data.")]


# where a file could not be written for want of space or of a writable file system
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)})


def _path_error_message(err: OSError) -> str:
    if isinstance(err, FileNotFoundError) and err.filename is None:
        return str(err)  # polymodal's own "not found" messages
    path = err.filename if err.filename is not None else ""
    reason = err.strerror or str(err)
    return f"{reason}: {path}" if path else reason


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the command line set the parameter ``name`` (a flag or option), rather than leaving
    it at its default."""
    source = ctx.get_parameter_source(name)  # an enum of the click typer runs on (its own copy, or click's)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def typed(ctx: typer.Context, name: str) -> bool:
    """Whether the parameter ``name`` was written on the command line itself, rather than read
    from its environment variable or left at its default (what ``ps`` shows every local user)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def unused_options(ctx: typer.Context, names: list[str], why: str) -> list[str]:
    """One line, ``<option> <why>``, for each parameter of ``names`` that the command line set
    (named as it was given: ``--no-cca`` for the off side of ``--cca/--no-cca``); for options
    that do nothing in the mode asked for, refused rather than ignored."""
    params = {param.name: param for param in ctx.command.params}
    lines = []
    for name in names:
        if given(ctx, name):
            param = params[name]
            off = bool(getattr(param, "secondary_opts", None)) and ctx.params.get(name) is False
            lines.append(f"{param.secondary_opts[0] if off else max(param.opts, key=len)} {why}")
    return lines


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    return f"warning: {message}\n"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, a job scheduler, Kubernetes), stopping a command as Ctrl-C does."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def _resumable(kwargs: dict[str, Any]) -> bool:
    """Whether the interrupted command (its arguments) left something ``--resume`` continues: a
    fit's checkpoint in ``--out``, a prediction's finished chunks beside it, a search's journal
    (a fit stopped while it read its data has none of them)."""
    out = kwargs.get("out")
    if "resume" not in kwargs or out is None:
        return False
    from polymodal.deploy.batch import chunks_done, parts_folder
    from polymodal.run_files import LAST_CHECKPOINT
    from polymodal.tune import JOURNAL_FILE

    out = Path(out)
    return (out / LAST_CHECKPOINT).is_file() or chunks_done(parts_folder(out)) > 0 or (out / JOURNAL_FILE).is_file()


class SetsConfigKeys(typer.core.TyperCommand):
    """A command that takes ``--set``: an unknown option named as a config key (``--epochs``,
    ``--batch-size``) is answered with the ``--set`` that sets it."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as err:  # click's NoSuchOption (typer vendors click in later versions)
            name = getattr(err, "option_name", None)
            keys = config_keys_named(name.lstrip("-").replace("-", "_")) if type(err).__name__ == "NoSuchOption" \
                and name else []
            if keys:
                err.message += f" (it is a config key: {' or '.join(f'--set {key}=VALUE' for key in keys)} sets it)"
            raise


@functools.cache
def config_keys_named(leaf: str) -> tuple[str, ...]:
    """The dotted keys of the config's sections (not those under a modality or a task, whose
    names the config chooses) whose last part is ``leaf``: ``epochs`` -> ``train.epochs``."""
    import typing

    from pydantic import BaseModel

    from polymodal.config import Config

    def sections(annotation: Any) -> list[type[BaseModel]]:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        if typing.get_origin(annotation) in (dict, list):  # named by the config: modalities, tasks
            return []
        return [m for arg in typing.get_args(annotation) for m in sections(arg)]

    found = []
    for name, field in Config.model_fields.items():
        if name == leaf and not sections(field.annotation):  # a value of its own (task, target), not a section
            found.append(name)
        for section in dict.fromkeys(sections(field.annotation)):
            found += [f"{name}.{leaf}"] if leaf in section.model_fields else []
    return tuple(dict.fromkeys(found))


ON_ERROR_HINT = ("--on-error skip leaves out the rows of unreadable or missing files and lists them; --on-error "
                 "missing reads those files as absent (their modality missing in the row)")


def _unreadable_input(err: BaseException) -> bool:
    """Whether an error stopped at a file that could not be read (a decode error, a manifest cell
    naming no file), which a command's ``--on-error`` could go past."""
    return (isinstance(err, DecodeError) and not isinstance(err, AbsentInputError) and err.path is not None) or \
        (isinstance(err, ManifestError) and err.missing_files > 0)


def user_errors(fn: F) -> F:
    """Run a command with messages naming its options (:func:`~polymodal.errors.command_line`);
    turn polymodal's own errors (and errors about paths the user gave) into one message and
    exit status 2; print warnings as ``warning: ...`` lines, without source locations. Ctrl-C
    and SIGTERM stop a command with one line (status 130 and 143), its files written atomically."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        formatter, warnings.formatwarning = warnings.formatwarning, _format_warning
        main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
        terminate = signal.signal(signal.SIGTERM, _terminate) if main else None
        try:
            with command_line():  # messages name this command's options
                return fn(*args, **kwargs)
        except (PolymodalError, *PATH_ERRORS) as err:
            message = str(err) if isinstance(err, PolymodalError) else _path_error_message(err)
            err_console.print(labelled("error:", "bold red", message))
            if "on_error" in kwargs and kwargs["on_error"] in (None, "raise") and _unreadable_input(err):
                err_console.print(labelled("hint:", "bold", ON_ERROR_HINT))
            raise typer.Exit(2) from None
        except OSError as err:  # a full disk, a read-only file system: the place, not a traceback
            if err.errno not in STORAGE_ERRNOS:
                raise
            err_console.print(labelled("error:", "bold red", _path_error_message(err)))
            raise typer.Exit(2) from None
        except KeyboardInterrupt as stop:  # the shell's status for the signal
            hint = " (the same command with --resume continues it)" if _resumable(kwargs) else ""
            terminated = isinstance(stop, Terminated)
            err_console.print(f"{'terminated' if terminated else 'interrupted'}{hint}", highlight=False)
            raise typer.Exit(143 if terminated else 130) from None
        finally:
            warnings.formatwarning = formatter
            if terminate is not None:
                signal.signal(signal.SIGTERM, terminate)

    return wrapper  # type: ignore[return-value]


# what a metric's name does not say, printed under a table that holds it
METRIC_NOTES = {"ece": "ece: expected calibration error, the gap between the predicted class's probability and "
                       "how often it is right, averaged over probability bins (0: calibrated)"}


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    sentences = []  # a note in words: below the table, which would otherwise be as wide as it
    for key, value in metrics.items():
        if isinstance(value, dict):  # e.g. per_label_auroc: one row per entry
            rows = [(f"{key}.{k}", v) for k, v in value.items() if not isinstance(v, list | dict)]
        else:
            rows = [] if isinstance(value, list) else [(key, value)]  # matrices are in the JSON and the report
        for name, v in rows:
            if isinstance(v, str) and len(v) > 40:
                sentences.append(f"{name}: {v}")
                continue
            table.add_row(name, format_value(v, group_ints=False))  # None: undefined
    print_table(console, table)
    shown = {key.rpartition("/")[2] for key in metrics}  # a further task's metrics read TASK/NAME
    for sentence in [*sentences, *(note for name, note in METRIC_NOTES.items() if name in shown)]:
        console.print(sentence, highlight=False)


def labelled(label: str, style: str, text: str) -> Text:
    """``label`` in ``style`` (``error:`` in bold red), then `` text`` as written."""
    return Text.assemble((label, style), f" {text}")


def print_warning(text: str) -> None:
    """``warning: TEXT`` on stderr."""
    err_console.print(labelled("warning:", "bold yellow", text))


def print_skipped(skipped: Any, listed: Path, predictor: Any, shown: int = 5, *, predicting: bool = False,
                  unwritten: str | None = None) -> None:
    """Warn (on stderr) how many and which files ``predictor`` skipped (under its ``data.on_error``),
    the first ``shown`` of them, and where the full list was written (the library's own warning,
    with the file; commands run the library inside
    :meth:`~polymodal.estimator.Estimator.quiet_skips`); ``predicting``: skipped by a prediction,
    whose rows left with no modality present are the predictor's ``emptied_rows_predicted``;
    ``unwritten``: why the list could not be written to ``listed``, said in its place."""
    from polymodal.data.skipped import describe_skipped

    emptied = predictor.emptied_rows_predicted if predicting else "left out"
    text = describe_skipped(skipped, predictor.config.data.on_error, shown, emptied=emptied)
    print_warning(text)
    if unwritten is None:
        err_console.print(f"  full list: {listed}", highlight=False)
    else:
        err_console.print(f"  full list not written: {listed}: {unwritten}; give --out FOLDER, a folder that can be "
                          "written, to keep it", highlight=False)


@contextmanager
def listing_skipped(predictor: Any, listed: Path) -> Iterator[Callable[[], None]]:
    """Run the block (an evaluation or explanation) with the library's skipped-file warning
    quiet. Yields ``report``, which writes the block's list of skipped files to ``listed`` (a
    stale list of an earlier command goes) and, when there were any, warns with that path: the
    command calls it once its results are shown; it runs here when the block fails.

    The list is never an error: one that cannot be written is warned about (its path, why, and
    ``--out``), and a stale one that cannot be removed too; the results stand."""
    pending: list[Any] = []  # the block's list once it ends, until reported

    def report() -> None:
        while pending:
            _report_skipped(predictor, pending.pop(), listed)

    predictor.eval_skipped = predictor.eval_skipped.iloc[0:0]  # this command's list only
    try:
        with predictor.quiet_skips():
            yield report
    except BaseException:
        pending.append(predictor.eval_skipped)
        report()
        raise
    pending.append(predictor.eval_skipped)  # not what later work (a sweep) skips: that warns itself


def _report_skipped(predictor: Any, skipped: Any, listed: Path) -> None:
    """:func:`listing_skipped`'s ``report`` of one list."""
    from polymodal.runfolder import write_skipped

    try:
        write_skipped(listed, skipped)
    except OSError as err:  # a read-only run folder, RUN/evaluation a file
        in_way = next((folder for folder in listed.parents if folder.exists() and not folder.is_dir()), None)
        reason = f"{in_way} is a file, not a folder" if in_way is not None else err.strerror or str(err)
        if not skipped.empty:
            print_skipped(skipped, listed, predictor, unwritten=reason)
        else:
            print_warning(f"{listed}, a list of files an earlier command skipped, could not be removed ({reason}); "
                          "this command skipped none")
        return
    if not skipped.empty:
        print_skipped(skipped, listed, predictor)


def print_rows(rows: list[dict[str, Any]], title: str, note: str | None = None,
               digits: Mapping[str, int] | None = None) -> None:
    """A list of records as a table (numbers as :func:`~polymodal.utils.tables.format_value` writes
    them: 4 decimals, or ``digits`` by column, such as 1 for seconds), then ``note`` on a line of
    its own."""
    table = Table(title=title)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(str(column), justify="left" if isinstance(rows[0][column], str) else "right",
                         overflow="fold")  # narrow consoles (pipes: 80 columns) wrap instead of cutting values
    places = {c: (digits or {}).get(c, 4) for c in columns}
    for row in rows:
        table.add_row(*(format_value(row[c], places[c], group_ints=False) for c in columns))
    print_table(console, table)
    if note:
        console.print(note)


ON_ERROR = ("raise", "skip", "missing")  # config.train.OnError (a test keeps them equal; the CLI starts without the config)
OnErrorOpt = Annotated[str | None, typer.Option(
    "--on-error", metavar="|".join(ON_ERROR), help="What an unreadable or missing file does here (default: the "
                                                     "run's data.on_error): raise stops, naming it; skip leaves its "
                                                     "row out; missing treats its modality as missing in that row.")]


def check_on_error(on_error: str | None) -> None:
    """Refuse an ``--on-error`` that is none of :data:`ON_ERROR`."""
    from polymodal.errors import OptionError

    if on_error is not None and on_error not in ON_ERROR:
        raise OptionError([f"--on-error: one of {', '.join(ON_ERROR)}; got '{on_error}'"])


def load_run(run: Path, on_error: str | None = None) -> Any:
    """The run's predictor (or anomaly detector), with ``--on-error`` in place of the run's
    ``data.on_error`` when given (checked before the run is loaded)."""
    from polymodal.predictor import MultimodalPredictor

    check_on_error(on_error)
    predictor = MultimodalPredictor.load(run)
    if on_error is not None:
        predictor.config.data.on_error = on_error
    return predictor


SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Set a config key for this run, e.g. --set train.epochs=1 (value read as "
                                       "YAML; repeatable; the run's config.yaml records it).")]
