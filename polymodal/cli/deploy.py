"""The deployment commands of ``polymodal``: ``export`` and ``serve``.

Usage:

    polymodal export RUN [--format onnx|torchscript] [--data X] [--quantize] [--out DIR]
        (DIR: RUN/export, or RUN/export_torchscript for TorchScript)
    polymodal serve RUN [--host 127.0.0.1] [--port 8000] [--token-file F] [--quantized] [--max-* limits]
        (or the token in POLYMODAL_TOKEN)

``polymodal predict`` (chunked, resumable batch prediction) lives in :mod:`polymodal.cli.model` and runs
:mod:`polymodal.deploy.batch`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from polymodal.cli.common import console, labelled, print_warning, typed, user_errors
from polymodal.deploy.runtime import META_FILE
from polymodal.run_files import EXPORT_DIR, EXPORT_TORCHSCRIPT_DIR

ExportRunArg = Annotated[Path, typer.Argument(help="A run folder written by 'polymodal train'.")]
ServeRunArg = Annotated[Path, typer.Argument(help="A run folder written by 'polymodal train', or an export folder.")]


def export(
    run: ExportRunArg,
    fmt: Annotated[str, typer.Option("--format", help="onnx (runs with numpy + onnxruntime) or torchscript.")] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", help="Export folder (default RUN/export; "
                                                           f"RUN/{EXPORT_TORCHSCRIPT_DIR} for --format torchscript, so "
                                                           "the ONNX export that serve runs stays).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Held-out manifest for the parity check (and int8 "
                                                             "accuracy); default: the run's test, else validation, "
                                                             "else training manifest.")] = None,
    rows: Annotated[int, typer.Option("--rows", min=1, help="Manifest rows the checks use (a seeded sample across the "
                                                             "manifest when it holds more).")] = 256,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0.0, help="Largest allowed |exported - eager| (anomaly "
                                                                           "scores: divided by max(1, |eager|)).")] = 1e-4,
    quantize: Annotated[bool, typer.Option("--quantize", help="Also write dynamic int8 weights (model.int8.onnx).")] = False,
) -> None:
    """Export the network (per-modality inputs and presence masks, dynamic batch) with its preprocessing
    state as JSON, and check it against the eager model (fails when they differ by more than --tolerance)."""
    from polymodal.deploy.export import export_run
    from polymodal.predictor import MultimodalPredictor

    predictor = MultimodalPredictor.load(run)
    default = run / (EXPORT_TORCHSCRIPT_DIR if fmt == "torchscript" else EXPORT_DIR)
    report = export_run(predictor, out or default, data=data, fmt=fmt, rows=rows, tolerance=tolerance,
                        quantize=quantize)
    parity = report.parity
    console.print(f"exported {', '.join(report.files)} to {report.folder}")
    print_recorded(report)
    relative = " / max(1, |eager|)" if parity["measure"] == "relative" else ""
    console.print(f"parity on {parity['source']}: max |exported - eager|{relative} = {parity['graph_max_abs_diff']:.2e} "
                  f"(allowed {tolerance:g})")
    if "task_max_abs_diff" in parity:  # a multi-task model: every task's outputs are exported and checked
        console.print("per task: " + ", ".join(f"{name} {diff:.2e}" for name, diff in parity["task_max_abs_diff"].items()),
                      highlight=False)
    if "runtime_max_abs_diff" in parity:
        console.print(f"numpy runtime + ONNX vs eager predictor on {parity['runtime_rows']} rows: "
                      f"max diff{relative} {parity['runtime_max_abs_diff']:.2e}")
    q = report.quantized
    if q:
        accuracy = (f"; accuracy {q['accuracy']:.4f} -> {q['accuracy_int8']:.4f} on {q['rows']} rows"
                    if "accuracy" in q else "")
        if "flag_agreement" in q:
            accuracy = (f"; the same flag on {q['flag_agreement']:.1%} of {q['rows']} rows"
                        + (f", AUROC {q['auroc']:.4f} -> {q['auroc_int8']:.4f}" if "auroc" in q else ""))
        console.print(f"int8: {q['size_bytes'] / 1e6:.2f} MB (float {q['float_size_bytes'] / 1e6:.2f} MB), "
                      f"max output diff{relative} {q['max_abs_diff']:.3g}, speed-up x{q['speedup_row']:.2f} at batch 1, "
                      f"x{q['speedup_batch']:.2f} on {q['speedup_rows']} rows (int8 runs one row at a time, float "
                      f"as one batch){accuracy}")


def export_folder(run: Path, quantize: bool = False) -> Path:
    """The export to serve: ``run`` itself, ``run/export`` (checked to be of the run's model), or a
    fresh export of ``run`` (with its int8 graph when ``quantize``).

    Raises:
        ExportError: ``run/export`` holds another model than the run's (it was trained again since),
            or ``quantize`` and the export has no int8 graph.
    """
    if (run / META_FILE).is_file():
        return _with_int8(run, run, quantize)
    if (run / EXPORT_DIR / META_FILE).is_file():
        check_runs_export(run)
        return _with_int8(run / EXPORT_DIR, run, quantize)
    from polymodal.deploy.export import check_exportable, export_run
    from polymodal.predictor import MultimodalPredictor

    predictor = MultimodalPredictor.load(run)
    check_exportable(predictor, run / EXPORT_DIR, quantize=quantize, purpose="serving")  # before saying anything
    console.print(f"{run} has no export yet: exporting it before serving (the parity checks included)", highlight=False)
    report = export_run(predictor, run / EXPORT_DIR, quantize=quantize, purpose="serving")
    print_recorded(report, "'polymodal export RUN --data' checks on others")
    console.print(f"exported {run} to {report.folder} (parity on {report.parity['source']}: "
                  f"{report.parity['graph_max_abs_diff']:.1e})")
    return report.folder


def _with_int8(folder: Path, run: Path, quantize: bool) -> Path:
    """``folder`` (an export), refused for ``--quantized`` when it was made without its int8 graph."""
    from polymodal.deploy.errors import ExportError
    from polymodal.deploy.runtime import INT8_FILE

    if quantize and not (folder / INT8_FILE).is_file():
        made = f"'polymodal export {run} --quantize'" if folder != run else "an export made with --quantize"
        raise ExportError(f"--quantized serves the int8 graph, and {folder} has none ({INT8_FILE}: it was exported "
                          f"without --quantize): write it with {made}, or serve the float graph without --quantized")
    return folder


def check_runs_export(run: Path) -> None:
    """Refuse ``run/export`` when it was made from another model than the run's own (a run trained
    again into its folder keeps its older export, as one whose threshold was set since does:
    :func:`~polymodal.deploy.runtime.exported_from_other_model`, which ``Runtime.load`` warns
    with); warn where the export predates the record that tells. The run's fingerprint is read
    from its weight file's header; a run saved before it was recorded there is loaded to compute it."""
    import json

    from polymodal.deploy.errors import ExportError
    from polymodal.deploy.runtime import export_command, exported_from_other_model, stale_export
    from polymodal.utils.warn import warn_user

    folder = run / EXPORT_DIR
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    _warn_on_error_unrecorded(run, folder, meta)
    if meta.get("model_fingerprint") is None:
        warn_user(f"{folder} records no fingerprint of the model it was exported from (an export by polymodal before "
                  f"2026-12-06), so it cannot be checked against {run}'s model: export the run again "
                  f"('polymodal export {run}') if it was trained since")
        return
    other = exported_from_other_model(meta, run)
    if other is None:  # a run saved before its weights recorded it: the model computes it
        from polymodal.predictor import MultimodalPredictor

        other = exported_from_other_model(meta, run, MultimodalPredictor.load(run).model_fingerprint())
    if other:
        raise ExportError(f"{stale_export(folder, run)}: export it again with {export_command(folder, run, meta)} "
                          "(with --data as before), or serve the export folder itself to serve the older model")


def _warn_on_error_unrecorded(run: Path, folder: Path, meta: dict) -> None:
    """Warn when ``folder`` (``run``'s export) predates ``deploy.json``'s ``on_error`` and the run
    reads a table's unreadable number as missing: the export refuses such a cell instead."""
    if "on_error" in meta or not any(m["kind"] == "tabular" for m in meta.get("modalities", {}).values()):
        return
    from polymodal.runfolder import read_config  # imports torch: only for such an older export
    from polymodal.utils.warn import warn_user

    on_error = read_config(run).data.on_error
    if on_error == "missing":
        warn_user(f"{folder} predates exports recording data.on_error: it refuses a table's cell that is no number "
                  f"('>200'), which {run} (data.on_error: missing) reads as missing; export it again "
                  f"('polymodal export {run}') for the service to do the same")


def print_recorded(report: Any, hint: str = "--data chooses another") -> None:
    """Name the run's recorded manifest an export without ``--data`` was checked on."""
    if report.recorded is not None:
        split, path = report.recorded
        console.print(f"checked the export on the run's {split} manifest {path} ({hint})", highlight=False)


def serve(
    ctx: typer.Context,
    run: ServeRunArg,
    host: Annotated[str, typer.Option("--host", help="Interface to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    token: Annotated[str | None, typer.Option("--token", envvar="POLYMODAL_TOKEN",
                                              help="Require 'Authorization: Bearer TOKEN'. Set POLYMODAL_TOKEN or give "
                                                   "--token-file instead: ps shows a command line to every local "
                                                   "user.")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="Read the token from the first line of this "
                                                    "file (as --token; overrides POLYMODAL_TOKEN).")] = None,
    quantized: Annotated[bool, typer.Option("--quantized", help="Serve the int8 graph (export --quantize).")] = False,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most requests batched together.")] = 32,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="How long a batch, having taken the requests waiting, "
                                                         "waits for more (0: runs at once).")] = 0.0,
    max_request_mb: Annotated[float, typer.Option("--max-request-mb", min=0.001, help="Largest request body, in MiB (1 MiB = "
                                                  "1,048,576 bytes).")] = 10.0,
    max_image_pixels: Annotated[int, typer.Option("--max-image-pixels", help="Largest image or video frame (width x height).")] = 4096 * 4096,
    max_audio_seconds: Annotated[float, typer.Option("--max-audio-seconds", help="Longest audio clip or sound track.")] = 30.0,
    max_video_frames: Annotated[int, typer.Option("--max-video-frames", help="Most frames a video may hold.")] = 3000,
    max_text_chars: Annotated[int, typer.Option("--max-text-chars", help="Longest text.")] = 10_000,
    threads: Annotated[int | None, typer.Option("--threads", help="onnxruntime threads (default: its own).")] = None,
) -> None:
    """Serve the model over HTTP: the web page at /, POST /predict and /explain, GET /health and /metadata,
    OpenAPI docs at /docs."""
    from pydantic import ValidationError

    from polymodal.deploy.origins import is_loopback
    from polymodal.deploy.runtime import Runtime
    from polymodal.deploy.server import create_app
    from polymodal.deploy.settings import ServeSettings
    from polymodal.errors import OptionError

    if token_file is not None:
        if typed(ctx, "token"):
            raise OptionError(["--token and --token-file both give the token; give one of them (--token-file keeps it "
                               "out of the command line)"])
        token = read_token_file(token_file)
    elif token and typed(ctx, "token"):
        print_warning("--token on the command line is shown to every user of this machine (ps, /proc); set "
                      "POLYMODAL_TOKEN or give --token-file instead")
    token = token or None  # an empty POLYMODAL_TOKEN means no token
    try:
        settings = ServeSettings(host=host, port=port, token=token, quantized=quantized, max_batch=max_batch,
                                 max_wait_ms=max_wait_ms, max_request_bytes=max(1, int(max_request_mb * 1024 * 1024)),
                                 max_image_pixels=max_image_pixels, max_audio_seconds=max_audio_seconds,
                                 max_video_frames=max_video_frames,
                                 max_text_chars=max_text_chars, threads=threads)
    except ValidationError as err:  # a token is not echoed: it is a secret
        raise OptionError([f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: "
                           f"{e['msg'].removeprefix('Value error, ')}"
                           + ("" if e["loc"] == ("token",) else f" (got {e['input']!r})") for e in err.errors()]) from None
    check_address(host, port)
    folder = export_folder(run, quantize=quantized)
    app = create_app(Runtime.load(folder, quantized=quantized, threads=threads), settings)
    if not is_loopback(host) and token is None:
        console.print(labelled("warning:", "yellow", f"serving on {host} without a token (--token-file, POLYMODAL_TOKEN): "
                                                     "anyone who can reach it can use the model, a web page that "
                                                     "points a name of its own at it included"))
    graph = "the int8 graph" if quantized else "the float graph"
    console.print(f"serving {folder} ({graph}) on http://{host}:{port}/ (API docs at /docs and /redoc, the OpenAPI "
                  "schema at /openapi.json)")
    run_server(app, settings)


def read_token_file(path: Path) -> str:
    """The bearer token in the first line of ``path`` (``--token-file``), without the spaces and
    line break around it; the rest of the file is not read.

    Raises:
        OptionError: naming ``--token-file`` and the path: it cannot be read (missing, a folder, no
            permission), is not UTF-8 text, or its first line is blank.
    """
    from polymodal.errors import OptionError

    try:
        with open(path, encoding="utf-8-sig") as file:  # a BOM an editor wrote is not part of the token
            token = file.readline().strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise OptionError([f"--token-file: cannot read {path}: {reason}; give a file whose first line is the "
                           "token"]) from None
    if not token:
        raise OptionError([f"--token-file: the first line of {path} is empty; write the token on it (an empty "
                           "token would leave the service open)"])
    return token


def check_address(host: str, port: int) -> None:
    """Refuse, before loading anything, an interface that does not resolve or a port already taken
    (uvicorn would log them and exit with status 3).

    Raises:
        OptionError: naming ``--host`` or ``--port``.
    """
    import errno
    import socket

    from polymodal.errors import OptionError

    try:
        addresses = dict.fromkeys(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except (socket.gaierror, UnicodeError) as err:
        raise OptionError([f"--host: '{host}' is not an address or name of this machine ({err})"]) from None
    # uvicorn listens on every address the name resolves to (asyncio's create_server), as probed here
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            if os.name == "posix":  # as asyncio binds: a port whose old connections wait in TIME_WAIT is free
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as err:
                if err.errno == errno.EADDRNOTAVAIL and len(addresses) > 1:
                    continue  # an address family this machine has not enabled: asyncio skips it too
                hint = ("another program is using it: choose another --port" if err.errno == errno.EADDRINUSE
                        else "choose another --port or --host")
                raise OptionError([f"--port: cannot listen on {host}:{port} ({err.strerror or err}); {hint}"]) from None


def run_server(app: Any, settings: Any) -> None:
    try:
        import uvicorn
    except ImportError:
        from polymodal.errors import MissingDependencyError

        raise MissingDependencyError("uvicorn", "polymodal serve", extra="serve") from None
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``serve`` to the ``polymodal`` app."""

    app.command()(user_errors(export))
    app.command()(user_errors(serve))
