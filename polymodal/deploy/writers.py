"""Writing an exported graph's file: ONNX, traced by torch's TorchScript-based exporter while
torch has it or captured by ``torch.export`` (:func:`export_onnx`), and TorchScript
(:func:`export_torchscript`). What an export folder holds around it, and its checks, are
:mod:`polymodal.deploy.export`'s."""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from polymodal.deploy.errors import ExportError, first_line
from polymodal.deploy.graph import OUTPUT, ExportedGraph, example_feeds, exportable_ops, tracing_reason
from polymodal.errors import MissingDependencyError
from polymodal.utils.io import atomic_write

OPSET = 18
# what the tracing exporter's C++ passes print of a packed RNN (a video's temporal: gru, a text rnn):
# they infer no shape for its packing ops, which changes nothing of the graph (its parity checks
# compare it with the model on rows of every length); printed to stderr, not as Python warnings
HARMLESS_EXPORTER_NOTES = re.compile(r"The shape inference of prim::Pa(ck|d)Pa(dded|cked) type is missing")


@contextlib.contextmanager
def without_cpp_notes(notes: re.Pattern[str]) -> Iterator[None]:
    """Leave out of the process's stderr the lines that match ``notes`` which C++ code prints
    meanwhile (it writes to the file descriptor, past ``sys.stderr`` and Python's warnings); every
    other line is written back, in order, when the block ends."""
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to hold back
        yield
        return
    if sys.stderr is not None:
        sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if not notes.search(line)]
            if kept and sys.stderr is not None:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def tracing_exporter() -> bool:
    """Whether this torch still has the TorchScript-based ONNX exporter: torch before 2.9 exports
    with it by default, torch 2.9 and later keep it, deprecated, until they remove it. It traces a
    graph in well under a second where ``torch.export`` takes 5-20 s (and a minute or more for an
    RNN over a few hundred tokens), so :func:`export_onnx` uses it while it is there."""
    import importlib.util

    dynamo = inspect.signature(torch.onnx.export).parameters.get("dynamo")
    if dynamo is None or dynamo.default is False:
        return True
    return importlib.util.find_spec("torch.onnx._internal.torchscript_exporter") is not None


def export_onnx(graph: ExportedGraph, path: Path) -> set[str]:
    """Write the graph to ONNX with a dynamic batch axis on every input and the output.

    Two exporters write the same graph (the tests check both against eager outputs): torch's
    TorchScript-based one traces it, while this torch has it (:func:`tracing_exporter`: it is
    30-40 times faster); ``torch.export`` captures it (``dynamo=True``) once torch removes that
    one. Batch-time steps with data-dependent shapes, such as the trimming of text padding, keep
    their full, fixed size in either. An encoder ``torch.export`` cannot capture
    (:func:`~polymodal.deploy.graph.tracing_reason`: a video GRU over packed frames) needs the
    tracing exporter.

    Returns:
        The names of the inputs the written graph takes: an input nothing reads (a tabular
        modality's empty ``cat`` array when it has no categorical column) is left out.

    Raises:
        ExportError: the exporter failed (an operator it cannot translate...), or the graph must be
            traced and this torch has no tracing exporter left.
    """
    feeds = example_feeds(graph.inputs, batch=2)
    args = tuple(torch.from_numpy(feeds[i.name]) for i in graph.inputs)
    names = [i.name for i in graph.inputs]
    reason = tracing_reason(graph)
    traced = tracing_exporter()
    if reason is not None and not traced:
        raise ExportError(f"this torch ({torch.__version__}) has no TorchScript-based ONNX exporter left, and "
                          f"torch.export cannot capture {reason}; use another temporal model for ONNX, or "
                          "--format torchscript")
    if not traced:
        try:
            import onnxscript  # noqa: F401  (torch's torch.export-based exporter writes the graph with it)
        except ImportError:
            raise MissingDependencyError("onnxscript", "exporting to ONNX", extra="serve") from None
    try:
        with exportable_ops():
            atomic_write(path, lambda tmp: (_write_traced if traced else _write_captured)(graph, args, names, tmp))
    except RuntimeError as err:  # torch.onnx's OnnxExporterError (torch.export's, an unsupported operator...), tracing's
        raise ExportError(f"exporting to ONNX failed: {_exporter_failure(err)}") from err
    import onnx

    return {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}


def _exporter_failure(err: BaseException) -> str:
    """What an exporter error says in one line: the deepest cause (the exporter's own errors wrap it
    in paragraphs of advice), after the operator whose translation failed when one did."""
    node, chain = None, [err]
    while chain[-1].__cause__ is not None and len(chain) < 20:
        chain.append(chain[-1].__cause__)
    for error in chain:
        found = re.search(r"target=torch\.ops\.([\w.]+)", str(error))
        node = node or (found.group(1) if found else None)
    said = first_line(chain[-1]).rstrip(".")  # the caller goes on after a semicolon
    return f"{node}: {said}" if node else said


def _write_captured(graph: ExportedGraph, args: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    """The graph captured by ``torch.export`` and translated to ONNX, weights inside the file."""
    batch = torch.export.Dim("batch")
    shapes = (tuple({0: batch} for _ in args),)  # forward(*tensors): one entry, the tuple of the tensors
    with warnings.catch_warnings():  # torch's notes about its own internals, nothing the graph or the user can change:
        warnings.filterwarnings("ignore", "_check_is_size will be removed", FutureWarning)
        # an RNN's flat weight list, read once while capturing (the weights are the module's parameters)
        warnings.filterwarnings("ignore", "The tensor attributes .* were assigned during export", UserWarning)
        # every input's batch axis is one and the same ("batch"), as intended
        warnings.filterwarnings("ignore", "# The axis name: .* will not be used", UserWarning)
        program = torch.onnx.export(graph, args, input_names=names, output_names=[OUTPUT], dynamic_shapes=shapes,
                                    opset_version=OPSET, dynamo=True, verbose=False)
    inputs = program.model.graph.inputs
    for value in [v for v in inputs if not v.uses()]:  # the runtime feeds only what the graph reads
        inputs.remove(value)
    for node in program.model.graph.all_nodes():  # debugging notes: each node's Python stack trace, with
        node.metadata_props.clear()  # this machine's source paths, which make the file 3x larger
    program.save(str(path), external_data=False)


def _write_traced(graph: ExportedGraph, args: tuple[torch.Tensor, ...], names: list[str], path: Path) -> None:
    """The graph traced by the TorchScript-based exporter (see :func:`export_onnx`): tracing with
    full-length example inputs turns data-dependent lengths into fixed ones. Torch deprecates it
    and will remove it."""
    axes = {n: {0: "batch"} for n in [*names, OUTPUT]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the traced constants are intended (see above)
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        # the graph takes no initial RNN state, so any batch size works (the tests run several)
        warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size other than 1", UserWarning)
        # advanced indexing (a transformers model's masks and positions): a negative index would give wrong
        # outputs, which the parity checks below compare on real rows, so the warning says nothing they miss
        warnings.filterwarnings("ignore", "Exporting aten::index operator of advanced indexing", UserWarning)
        legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}  # torch < 2.5: no choice
        with without_cpp_notes(HARMLESS_EXPORTER_NOTES):
            torch.onnx.export(graph, args, str(path), input_names=names, output_names=[OUTPUT], dynamic_axes=axes,
                              opset_version=OPSET, **legacy)


def export_torchscript(graph: ExportedGraph, path: Path) -> None:
    """Trace the graph into a TorchScript module for inference.

    The module takes the graph inputs positionally in ``deploy.json``'s ``graph.inputs`` order, or
    by keyword under their names with ``.`` turned into ``_`` (``audio.x`` -> ``audio_x``;
    ``module.code`` shows the signature), and returns the outputs (B, K). Its parameters are saved
    without ``requires_grad``, so its outputs carry no autograd graph whatever the caller's grad
    mode (a loaded module is for inference; load the run's weights to train).
    """
    feeds = example_feeds(graph.inputs, batch=2)
    try:
        with exportable_ops(), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", "`torch.jit.trace", FutureWarning)  # TorchScript is what was asked for
            traced = torch.jit.trace(graph, tuple(torch.from_numpy(feeds[i.name]) for i in graph.inputs),
                                     check_trace=False)
    except RuntimeError as err:
        raise ExportError(f"tracing to TorchScript failed: {first_line(err)}") from err
    _name_arguments(traced, [i.name for i in graph.inputs])
    trainable = [p for p in traced.parameters() if p.requires_grad]  # shared with the predictor's network
    for param in trainable:
        param.requires_grad_(False)
    try:
        atomic_write(path, lambda tmp: traced.save(str(tmp)))
    finally:
        for param in trainable:
            param.requires_grad_(True)


def _name_arguments(traced: Any, names: list[str]) -> None:
    """Give the traced ``forward`` its inputs' names (``audio.x`` -> ``audio_x``) instead of
    ``argument_1``...; left as traced when some name is no Python identifier once dots are replaced."""
    import keyword

    arguments = [name.replace(".", "_") for name in names]
    if len(set(arguments)) < len(arguments) or any(not a.isidentifier() or keyword.iskeyword(a) for a in arguments):
        return
    values = list(traced.forward.graph.inputs())[1:]  # after self
    for value, argument in zip(values, arguments, strict=True):
        value.setDebugName(argument)
