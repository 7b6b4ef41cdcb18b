"""``polymodal export``: a run folder -> an ONNX (or TorchScript) graph plus ``deploy.json``.

The graph (:mod:`polymodal.deploy.graph`) takes every modality's featurised arrays and presence
mask with a dynamic batch axis. ``deploy.json`` carries what the numpy runtime
(:mod:`polymodal.deploy.runtime`) needs to featurise raw inputs: each modality's settings and
fitted state (vocabularies, statistics, the mel filterbank), the classes and the task, and for a
multi-task model every further task's (see :func:`task_meta`).

Every export is checked: the exported graph and the eager network are run on the same rows
(manifest rows, as given and with some modalities hidden: ``data``, else the run's recorded
test, validation or training manifest; synthetic arrays, with a warning, when there is none or
its files cannot be read any more) and must agree to ``tolerance`` (max absolute difference of
the raw outputs). On manifest rows, the runtime's own numpy preprocessing is checked end to end
against the eager predictor too. A failed check raises
:class:`~polymodal.deploy.errors.ExportError`.

An export is atomic: it is built and checked in a hidden sibling folder that replaces ``out``
(an older export) only once every check passed, so a failed export leaves the previous export,
or nothing, behind and never a graph that failed its check next to a ``deploy.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polymodal import __version__
from polymodal.config.decision import DECIDED_TASKS
from polymodal.config.modalities import modality_columns
from polymodal.config.tasks import MAIN_TASK
from polymodal.data.multitarget import MultiTargetEncoder
from polymodal.data.pipeline import DataSource
from polymodal.data.skipped import require_rows
from polymodal.deploy import parity
from polymodal.deploy.errors import ExportError, first_line, onnxruntime_errors
from polymodal.deploy.graph import (
    OUTPUT,
    ExportedGraph,
    GraphInput,
    every_row_encoded,
    graph_inputs,
)
from polymodal.deploy.runtime import INT8_FILE, META_FILE, ONNX_FILE, TORCHSCRIPT_FILE
from polymodal.deploy.writers import OPSET, export_onnx, export_torchscript
from polymodal.errors import DecodeError, ManifestError, OptionError, SchemaMismatchError, option
from polymodal.estimator import EXPORT, untrained_absences
from polymodal.evaluation.data import sample_rows
from polymodal.metrics.anomaly import row_thresholds
from polymodal.utils.io import atomic_folder, atomic_write_json, check_folder_path, python_scalar
from polymodal.utils.scores import ANOMALY_SCORE
from polymodal.utils.warn import warn_user

FORMATS = ("onnx", "torchscript")
EXPORT_FILES = (ONNX_FILE, INT8_FILE, TORCHSCRIPT_FILE, META_FILE)


@dataclass
class ExportReport:
    """What an export wrote and measured.

    Attributes:
        folder: the export folder.
        files: the graph files written.
        parity: ``graph_max_abs_diff`` (exported vs eager on the same arrays), ``rows``, and with a
            manifest ``runtime_max_abs_diff`` (numpy preprocessing + ONNX vs the eager predictor).
        quantized: with ``quantize``: ``max_abs_diff`` to the float graph and, on labelled data,
            ``accuracy`` / ``accuracy_int8``.
        recorded: ``(split, path)`` of the run's recorded manifest the checks ran on (no
            ``data`` given); None otherwise.
    """

    folder: Path
    files: list[str]
    parity: dict[str, Any]
    quantized: dict[str, Any] = field(default_factory=dict)
    recorded: tuple[str, Path] | None = None


def modality_meta(predictor: Any, name: str, inputs: list[GraphInput]) -> dict[str, Any]:
    """A modality's entry in ``deploy.json``: kind, columns, settings, fitted state, graph inputs."""
    cfg = predictor.config.modalities[name]
    prep = predictor.pipeline.preprocessors[name]
    unsupported = runtime_limitation(cfg)
    if unsupported is not None:
        raise ExportError(f"modality '{name}' ({cfg.kind}): {unsupported}; the numpy runtime cannot featurise it")
    try:
        prep_cfg, state = prep.runtime_settings()
    except SchemaMismatchError as err:
        raise ExportError(f"modality '{name}' ({cfg.kind}): {err}") from None
    meta = {"kind": cfg.kind, "preprocess": prep_cfg, "state": state,
            "inputs": {i.key: {"shape": list(i.shape), "dtype": i.dtype} for i in inputs
                       if i.modality == name and i.key != "present"}}
    if cfg.kind == "tabular":
        meta.update(columns=list(cfg.columns), categorical=list(cfg.categorical))
    else:
        meta["column"] = modality_columns(cfg)[0]
    return meta


def runtime_limitation(cfg: Any) -> str | None:
    """Why the numpy runtime cannot featurise a modality config, or None when it can."""
    from polymodal.deploy.features import FEATURES

    prep = cfg.preprocess
    if cfg.kind not in FEATURES:
        return f"kind '{cfg.kind}' has no numpy preprocessing (the runtime supports {sorted(FEATURES)})"
    if cfg.kind == "audio" and prep.features not in FEATURES["audio"].features:
        return f"audio features '{prep.features}' are not implemented"
    if cfg.kind == "signal" and prep.resample_to is not None and prep.resample_to != prep.sample_rate:
        return "resampling (preprocess.resample_to) is not implemented"
    return None


def _json_label(label: Any) -> Any:
    """A class label as JSON keeps it: numbers stay numbers (numpy scalars become Python ones), so
    the runtime and the service predict the same values as the predictor; anything else as text."""
    value = python_scalar(label)
    return value if isinstance(value, bool | int | float | str) else str(value)


def build_meta(predictor: Any, inputs: list[GraphInput]) -> dict[str, Any]:
    cfg = predictor.config
    meta: dict[str, Any] = {
        # a threshold per subset needs format 6 only where there are subsets (two modalities or more)
        "format_version": required_format(cfg, subset_thresholds=cfg.task == "anomaly" and len(cfg.modalities) > 1
                                          and predictor.subset_thresholds() is not None),
        "polymodal_version": __version__, "task": cfg.task,
        "target": cfg.targets, "model_fingerprint": predictor.model_fingerprint(),  # which model: serve checks it
        "on_error": cfg.data.on_error,  # the runtime reads a table's unreadable number as missing under 'missing'
        # the modalities it never trained without (None: not known): the runtime's notes name them when left out
        "untrained_absent": untrained_absences(predictor),
        **task_meta(predictor),
        "modalities": {name: modality_meta(predictor, name, inputs) for name in sorted(cfg.modalities)},
        "graph": {"inputs": [{"name": i.name, "shape": ["batch", *i.shape], "dtype": i.dtype} for i in inputs],
                  "output": OUTPUT, "opset": OPSET},
    }
    return meta


def required_format(config: Any, subset_thresholds: bool = False) -> int:
    """The oldest ``deploy.json`` format that holds this model (see ``runtime.FORMAT_VERSION``), so
    that a runtime of that format still reads it: 8 for an image or video modality with a
    ``value_range`` (a runtime of format 7 would scale a 16-bit image by its own maximum); 7 for a text whose apostrophes inside words are
    deleted (``strip_punctuation`` with ``join_apostrophes``: a runtime of format 6 would read
    "can't" as 'can t'); 6 for an anomaly detector with a flag threshold per subset of modalities
    (``subset_thresholds``: a runtime of format 5 would hold a row with a modality missing to the
    full set's threshold, and flag it for being incomplete); 5 for a two-class classifier with a
    decision threshold, or a text that keeps the punctuation inside numbers, or whose own stop words are
    matched in the case written (``lowercase`` off) (a runtime of format 4 would call the more
    probable class, read '3.5' as '3 5', and drop 'US' for 'us'); 4 for a table whose categories
    are normalised or whose unreadable numbers read as missing (a runtime of format 3 would key
    'Current ' apart from 'current', or refuse '>200'); 3 for an anomaly detector, a video
    modality or a pretrained tokenizer (which a runtime of format 2 would run without its
    truncation); else 2."""
    if any(m.kind in ("image", "video") and m.preprocess.value_range is not None for m in config.modalities.values()):
        return 8
    texts = [m.preprocess for m in config.modalities.values() if m.kind == "text"]
    if any(p.strip_punctuation and p.join_apostrophes for p in texts):
        return 7
    if subset_thresholds:
        return 6
    if config.decision.threshold is not None or any(
            (p.strip_punctuation and p.keep_number_punctuation) or (isinstance(p.stopwords, list) and not p.lowercase)
            for p in texts):
        return 5
    tables = [m for m in config.modalities.values() if m.kind == "tabular"]
    if any(m.preprocess.normalize_categories != "none" for m in tables) or (tables and config.data.on_error == "missing"):
        return 4
    later = any(m.kind == "video" or (m.kind == "text" and m.preprocess.tokenizer == "pretrained")
                for m in config.modalities.values())
    return 3 if config.task == "anomaly" or later else 2


def task_meta(predictor: Any) -> dict[str, Any]:
    """What ``deploy.json`` says about the outputs: ``main_outputs`` (the graph's columns of the main
    task), ``classes`` (class names, else the outputs' names) and the task's own entry:
    ``threshold`` (a two-class classifier's decision threshold, when it has one),
    ``target_scaling`` (regression) or ``anomaly`` (the scorer, its flag ``threshold``, why a
    row may get no score, ``normal_coalitions``, what explanations measure a row against:
    :meth:`~polymodal.anomaly.detector.AnomalyDetector.coalition_reference`, null when the run has
    none, and ``subset_thresholds``, entry k the flag threshold of a row holding the modalities of
    bit mask k, as ``normal_coalitions`` indexes them: ``threshold`` where a subset has none of its
    own, null for a run with one threshold for every row). A multi-task model adds ``tasks``:
    every task's :func:`task_entry`, the main task first, in output order (a single-task export
    has none: its main fields say it all)."""
    cfg = predictor.config
    if cfg.task == "anomaly":
        scorer = predictor.require_fitted()[1].scorer
        threshold = float(scorer.threshold)
        reference, chosen = predictor.coalition_reference(), predictor.subset_thresholds()
        by_subset = None if chosen is None else row_thresholds(np.arange(len(chosen)), threshold, chosen)
        return {"main_outputs": [0, 1], "classes": [ANOMALY_SCORE],
                "anomaly": {"scorer": scorer.name, "threshold": threshold if np.isfinite(threshold) else None,
                            "unscored_reason": scorer.unscored_reason,
                            "normal_coalitions": None if reference is None else reference.tolist(),
                            "subset_thresholds": None if by_subset is None  # JSON has no infinity
                            else [float(t) if np.isfinite(t) else None for t in by_subset]}}
    targets = predictor.pipeline.targets
    if isinstance(targets, MultiTargetEncoder):
        tasks = [task_entry(slot.name, targets.encoders[slot.name], slot.outputs) for slot in targets.slots]
    else:
        tasks = [task_entry(MAIN_TASK, targets, (0, targets.n_outputs))]
    main = tasks[0]
    out: dict[str, Any] = {"main_outputs": main["outputs"], "classes": main["classes"]}
    if main.get("threshold") is not None:
        out["threshold"] = main["threshold"]  # decision.threshold: the second class's, or each label's
    if "target_scaling" in main:
        out["target_scaling"] = main["target_scaling"]
    if len(tasks) > 1:
        out["tasks"] = tasks
    return out


def task_entry(name: str, encoder: Any, outputs: tuple[int, int]) -> dict[str, Any]:
    """One task's entry in ``deploy.json``'s ``tasks`` (``encoder``: its fitted target encoder):
    ``name`` (``main`` for the main task), ``task`` (its kind), ``target`` (its columns),
    ``outputs`` ([start, stop): its columns of the graph's output), ``classes`` (a classifier's
    class labels, else the target columns, as the main task's ``classes``), ``threshold``
    (classification and multilabel: the decision threshold, null for the default call) and
    ``target_scaling`` (regression: [mean, std] per target, which turn outputs into values)."""
    entry: dict[str, Any] = {
        "name": name, "task": encoder.task, "target": list(encoder.columns), "outputs": list(outputs),
        "classes": [_json_label(c) for c in encoder.classes] if encoder.task == "classification" else list(encoder.columns)}
    if encoder.task in DECIDED_TASKS:
        entry["threshold"] = encoder.threshold
    if encoder.task == "regression":
        entry["target_scaling"] = [encoder.mean.tolist(), encoder.std.tolist()]
    return entry


def export_run(predictor: Any, out: str | os.PathLike, *, fmt: str = "onnx", data: DataSource | None = None,
               rows: int = 256, tolerance: float = 1e-4, quantize: bool = False,
               purpose: str = "export") -> ExportReport:
    """Export a fitted predictor into ``out`` and check it (see the module docstring).

    Args:
        out: the export folder; an older export there is replaced only when the new one passes its checks.
        fmt: ``onnx`` (runnable by :class:`~polymodal.deploy.runtime.Runtime`) or ``torchscript``.
        data: a manifest of which ``rows`` rows, drawn at random (seeded) across it, are used for
            the checks (and, with labels, the int8 accuracy); None: the run's recorded test, validation or training manifest (the
            first that still exists), else synthetic arrays, which check the graph only (warned).
        tolerance: the largest allowed difference between exported and eager outputs: absolute, or
            relative to the score for an anomaly detector (see :func:`parity.difference_measure`).
        quantize: also write ``model.int8.onnx`` (dynamic int8 weights; ONNX only).
        purpose: what refusals call the export (``export``, or ``serving`` for a run exported to
            be served).

    Raises:
        ExportError: unsupported format or modality setting, ``out`` holding other files than an
            export, a graph the exporter or onnxruntime cannot handle, or a failed check (``out``
            is then left as it was).
        SchemaMismatchError: a task that has no exported graph (see :func:`check_exportable`).
    """
    check_exportable(predictor, out, fmt=fmt, quantize=quantize, purpose=purpose)
    if data is not None:
        return _export_checked(predictor, out, fmt, data, rows, tolerance, quantize)
    recorded = predictor.recorded_manifest()
    if recorded is not None:
        split, path = recorded
        try:
            report = _export_checked(predictor, out, fmt, path, rows, tolerance, quantize)
            report.recorded = recorded
            return report
        except (DecodeError, ManifestError) as err:  # its files moved since the fit
            warn_user(f"the run's {split} manifest {path} cannot be read any more ({err}); checking the export on "
                      "synthetic arrays instead")
        except ExportError as err:  # a failed check: say on which rows
            raise ExportError(f"{err} (checked on the run's {split} manifest {path})") from err
    report = _export_checked(predictor, out, fmt, None, rows, tolerance, quantize)
    how = ("export the run with 'polymodal export RUN --data HELD_OUT.csv' before serving it" if purpose == "serving"
           else f"give held-out rows ({option('--data', 'data=')})")
    warn_user("the export was checked on synthetic arrays only (the run recorded no manifest that can still be "
              "read): neither the graph on real rows nor the numpy preprocessing was compared with the eager model; "
              f"{how} to check both")
    return report


def _export_checked(predictor: Any, out: str | os.PathLike, fmt: str, data: DataSource | None, rows: int,
                    tolerance: float, quantize: bool) -> ExportReport:
    """:func:`export_run` on ``data`` (None: synthetic arrays)."""
    folder = Path(out)
    kept = f"{folder} keeps its previous export" if (folder / META_FILE).is_file() else f"nothing was written to {folder}"
    try:
        with atomic_folder(folder) as staging:
            report = write_export(predictor, staging, fmt, data, rows, tolerance, quantize)
    except onnxruntime_errors() as err:  # creating, running or quantising the graph's session
        raise ExportError(f"onnxruntime cannot run the exported graph: {first_line(err)}; {kept}") from err
    except ExportError as err:
        raise ExportError(f"{err}; {kept}") from err
    report.folder = folder
    return report


def check_exportable(predictor: Any, out: str | os.PathLike, *, fmt: str = "onnx", quantize: bool = False,
                     purpose: str = "export") -> None:
    """Refuse what no data can make exportable, before any manifest is read: an unknown format,
    ``quantize`` without ONNX, an unfitted model, a task without an exported graph, an ``out``
    that an export must not replace.

    Args:
        purpose: what the messages call the export: ``export``, or ``serving`` for ``polymodal
            serve`` (which exports a run on the fly).

    Raises:
        ExportError: a bad format, option combination or ``out``.
        SchemaMismatchError: a task whose estimator has no exported graph (retrieval).
        NotFittedError: neither ``fit`` nor ``load`` has run.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}'; use one of {list(FORMATS)}")
    if quantize and fmt != "onnx":
        raise ExportError(f"{option('--quantize', 'quantize=True')} needs {option('--format onnx', 'fmt=' + repr('onnx'))}; "
                          f"got {option('--format ' + fmt, 'fmt=' + repr(fmt))}")
    predictor.require_fitted()
    predictor.require(EXPORT, purpose)
    check_replaceable(Path(out), f"{option('--out')} must name a new or an export folder" if purpose == "export" else
                      f"{purpose} exports the run into it: move those files, or export the run elsewhere "
                      "('polymodal export RUN --out DIR') and serve DIR", what=option("--out") if purpose == "export" else purpose)


def write_export(predictor: Any, folder: Path, fmt: str, data: DataSource | None, rows: int, tolerance: float,
                 quantize: bool) -> ExportReport:
    """Write the graph and ``deploy.json`` into the empty ``folder`` and run every check there."""
    pipeline = predictor.require_fitted()[0]
    net = predictor.output_network().cpu().eval()
    inputs = graph_inputs(pipeline.preprocessors)
    meta = build_meta(predictor, inputs)
    graph = ExportedGraph(net, pipeline.preprocessors).eval()
    with every_row_encoded(net):
        if fmt == "onnx":
            taken = export_onnx(graph, folder / ONNX_FILE)
            meta["graph"]["inputs"] = [i for i in meta["graph"]["inputs"] if i["name"] in taken]
            meta["graph"]["file"] = ONNX_FILE
        else:
            export_torchscript(graph, folder / TORCHSCRIPT_FILE)
            meta["graph"]["torchscript_file"] = TORCHSCRIPT_FILE
    files = [meta["graph"].get("file") or TORCHSCRIPT_FILE]
    manifest, table = None, None
    if data is not None:  # only the rows the checks use are read and decoded
        head = predictor.pipeline.read_raw(data)
        head = head.subset(sample_rows(len(head), rows, seed=0)) if len(head) > rows else head  # spread: a sorted manifest is checked in every part
        manifest, table = predictor.encode_data(head, require_target=False, modalities=None)
        require_rows(table, manifest, predictor.config.data.on_error, "check the export on")
    checks = parity.check_graph(predictor, folder, meta, table, rows, tolerance)
    meta["graph"].setdefault("file", None)
    meta["graph"]["quantized_file"] = None
    atomic_write_json(folder / META_FILE, {**meta, "parity": checks})  # the runtime check loads it
    if fmt == "onnx" and manifest is not None:
        checks.update(parity.check_runtime(predictor, folder, manifest, table, tolerance))
    report = ExportReport(folder, files, checks)
    if quantize:
        report.quantized = parity.quantize_and_measure(predictor, folder, meta, manifest, rows)
        meta["graph"]["quantized_file"] = INT8_FILE
        files.append(INT8_FILE)
    atomic_write_json(folder / META_FILE, {**meta, "parity": checks, "quantized": report.quantized or None})
    return report


def check_replaceable(folder: Path, hint: str, what: str) -> None:
    """Refuse an ``out`` that an export must not replace or cannot write: a file (or a folder
    inside one), a folder that cannot be written, or a folder with other files; ``hint`` says what
    to do about the other files, ``what`` names where ``out`` came from (the option)."""
    try:
        check_folder_path(folder, what, writable=True)  # worded as every --out of polymodal
    except OptionError as err:
        raise ExportError(str(err)) from err
    if not folder.exists():
        return
    others = sorted(p.name for p in folder.iterdir() if p.name not in EXPORT_FILES)
    if others:
        raise ExportError(f"export folder {folder} holds files that are not part of an export {others[:5]}; an export "
                          f"replaces its whole folder (exports hold only {list(EXPORT_FILES)}), so {hint}")
