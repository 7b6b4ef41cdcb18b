"""Run an exported model with numpy + onnxruntime only (no torch).

An export folder (``polymodal export RUN``) holds ``model.onnx`` (and ``model.int8.onnx`` when
quantised) and ``deploy.json``: the task, the classes, each modality's kind, columns, preprocessing
settings and fitted state, the graph's inputs, and the parity figures measured at export.

    from polymodal.deploy.runtime import Runtime

    rt = Runtime.load("runs/x/export")
    rows = [{"image": open("3.png", "rb").read(), "audio": open("3.wav", "rb").read()},
            {"audio": "speech/7.wav"}]                        # any subset of modalities per row
    rt.predict(rows)          # the classes as deploy.json holds them: [3, 7] (labels read as numbers)
    rt.predict_proba(rows)    # (2, K) probabilities
    rt.predict_records(rows)  # one dict per row: predict_frame's columns, every task's
    rt.explain(rows)          # (2, M) Shapley contributions of each modality (as pred.explain's)
    rt.explained_quantity()   # what they attribute: 'probability of the predicted class'

A multi-task export (further ``tasks:``) answers every task: ``predict`` / ``predict_proba`` /
``outputs`` answer the main task, or the one ``task=NAME`` names (``rt.tasks`` lists them), in the
shape a single-task model of that kind gives; ``predict_records`` gives them all at once, under
the names ``predict_frame`` gives their columns (``value_pred_value``, ``shape_pred_round``...).

A row maps modality names to values (see :mod:`polymodal.deploy.features` for what each kind
accepts); a tabular modality's value maps its columns to values. Absent modalities are masked
inside the graph, as in training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.deploy.errors import ExportError, RequestError, first_line, onnxruntime_errors
from polymodal.deploy.features import FEATURES, Features
from polymodal.deploy.tasks import task_columns, task_entries
from polymodal.errors import MissingDependencyError, SchemaMismatchError
from polymodal.run_files import CONFIG_FILE, EXPORT_DIR, MODEL_FILE, saved_fingerprint
from polymodal.utils.coalitions import against_reference, coalition_values, held_masks
from polymodal.utils.scores import (
    decisions,
    explained_name,
    explained_outputs,
    explained_quantity,
    explained_score,
    output_index,
    probabilities,
)
from polymodal.utils.shapley import EXACT_MAX_MODALITIES, PERMUTATIONS, SEED, ShapleyPlan, shapley_plan
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.values import blank
from polymodal.utils.warn import warn_user

META_FILE = "deploy.json"
# the graphs an export folder may hold beside META_FILE
ONNX_FILE, INT8_FILE, TORCHSCRIPT_FILE = "model.onnx", "model.int8.onnx", "model.torchscript.pt"
# what deploy.json's layout and meaning are; an export of a later format is refused, not misread
# (2: signal CSVs and channel selection, explain's default output shared with pred.explain;
# 3: anomaly detectors, whose graph outputs one score per row, video modalities and pretrained
# tokenizers; 4: tables whose categories are keyed after normalize_categories, or whose unreadable
# numbers read as missing under the run's on_error; 5: a two-class classifier's decision threshold,
# texts cleaned with keep_number_punctuation, or stop words of the user's own matched in the case
# written; 6: an anomaly detector's flag threshold per subset of modalities; 7: texts cleaned with
# join_apostrophes, an apostrophe inside a word deleted, not spaced; 8: images and videos whose
# pixels wider than 8 bits are read through a fixed value_range; an export records the oldest
# format that holds it: export.required_format)
FORMAT_VERSION = 8
Row = Mapping[str, Any]


def run_graph(session: Any, names: Sequence[str], feeds: Mapping[str, np.ndarray], *,
              row_by_row: bool = False) -> np.ndarray:
    """Raw outputs (B, K) of an onnxruntime session for prepared feeds.

    Args:
        names: the graph's input names (the feeds may hold more arrays).
        row_by_row: run each row on its own (B calls of batch 1). A dynamically quantised graph
            needs it: it quantises activations with one scale for the whole input tensor, so
            without it a row's answer would depend on the other rows of its batch.
    """
    if not row_by_row or len(feeds[names[0]]) <= 1:
        return session.run(["outputs"], {n: feeds[n] for n in names})[0]
    count = len(feeds[names[0]])
    return np.concatenate([session.run(["outputs"], {n: feeds[n][i:i + 1] for n in names})[0] for i in range(count)])


def exported_from_other_model(meta: Mapping[str, Any], run: Path, current: str | None = None) -> bool | None:
    """Whether an export (``meta``: its ``deploy.json``) holds another model than ``run``'s: the run
    was trained again, or its decision or anomaly threshold set (``polymodal threshold``), since.
    Compares the model fingerprint the export records with ``current``, the run's (None: the one
    its weights record in their header, read without torch).

    Returns:
        None where it cannot tell: the export records no fingerprint (exported before 2026-12-06),
        or ``current`` is None and the run has no weights recording one (a run saved before they
        did: its loaded model computes it, ``model_fingerprint()``).
    """
    recorded = meta.get("model_fingerprint")
    current = saved_fingerprint(run / MODEL_FILE) if current is None else current
    if recorded is None or current is None:
        return None
    return recorded != current


def stale_export(folder: Path, run: Path) -> str:
    """What is wrong with export ``folder`` of another model than ``run``'s (:func:`exported_from_other_model`)."""
    return (f"{folder} was exported from another model than {run}'s (the run was trained again, or its decision or "
            "anomaly threshold set, since)")


def not_an_export(folder: Path) -> str:
    """Why ``folder`` (without ``deploy.json``) is no export folder, and the one meant: a run
    folder's ``export/`` where it has one, else the command that writes it."""
    said = f"{folder} is not an export folder: {META_FILE} not found"
    export = folder / EXPORT_DIR
    if (export / META_FILE).is_file():
        return f"{said}; it is a run folder: load its export, Runtime.load('{export}')"
    if (folder / MODEL_FILE).is_file() or (folder / CONFIG_FILE).is_file():
        return (f"{said}; it is a run folder with no export yet: write it with 'polymodal export {folder}', then "
                f"Runtime.load('{export}')")
    return f"{said} (write one with 'polymodal export RUN')"


def export_command(folder: Path, run: Path, meta: Mapping[str, Any]) -> str:
    """The command that writes export ``folder`` (``meta``: its ``deploy.json``) of ``run`` again,
    quoted: ``'polymodal export RUN [--out FOLDER] [--quantize]'``."""
    out = "" if folder == run / EXPORT_DIR else f" --out {folder}"
    quantize = " --quantize" if meta["graph"].get("quantized_file") is not None else ""
    return f"'polymodal export {run}{out}{quantize}'"


def undescribed_outputs(meta: Mapping[str, Any], session: Any) -> int:
    """How many of the graph's output columns (``session``: its onnxruntime session) no task of
    ``meta`` (its ``deploy.json``) describes: a multi-task model's further tasks, in an export
    written before ``tasks`` recorded them; 0 otherwise (or where the width is not known)."""
    width = session.get_outputs()[0].shape[-1]
    described = max(task["outputs"][1] for task in task_entries(meta).values())
    return width - described if isinstance(width, int) and width > described else 0


def given(value: Any) -> bool:
    """Whether a row's value holds its modality: not None, a blank string, NaN, or a table whose
    cells are all empty (what training reads as a missing modality)."""
    if isinstance(value, Mapping):
        return any(given(cell) for cell in value.values())
    return not blank(value)


class Runtime:
    """An exported model: preprocessing in numpy, the network in onnxruntime.

    Attributes:
        meta: the parsed ``deploy.json``.
        names: modality names in graph order (sorted).
        features: per modality, its numpy preprocessing.
        tasks: every task by name, the main task first (:func:`task_entries`): one for a
            single-task export; a multi-task one adds its further ``tasks``.
        quantized: whether the session runs the int8 graph; it then runs each row on its own, so
            any batch gives every row the answer it gets alone (see :func:`run_graph`).
    """

    def __init__(self, folder: Path, meta: Mapping[str, Any], session: Any, quantized: bool = False):
        self.folder = folder
        self.meta = dict(meta)
        self.session = session
        self.quantized = quantized
        self.names = sorted(meta["modalities"])
        # the modalities the model never trained without; an export before 2026-12-07 recorded only
        # whether it trained with any missing ("missing_trained")
        untrained = meta.get("untrained_absent", self.names if meta.get("missing_trained") is False else [])
        self.untrained_absent = [name for name in self.names if name in (untrained or [])]
        self.features: dict[str, Features] = {  # on_error: the run's data.on_error (None: an export before it was recorded)
            name: FEATURES[spec["kind"]](name, spec, meta.get("on_error")) for name, spec in meta["modalities"].items()}
        self.input_names = [i["name"] for i in meta["graph"]["inputs"]]
        # every task by name, the main one first (:func:`task_entries`)
        self.tasks: dict[str, dict[str, Any]] = task_entries(meta)
        self._one_threshold_said = False  # an export with one flag threshold for every row: said once

    def __repr__(self) -> str:
        kinds = {name: spec["kind"] for name, spec in sorted(self.meta["modalities"].items())}
        return (f"Runtime({str(self.folder)!r}, task={self.meta['task']!r}, modalities={kinds}"
                + (f", tasks={self.further_tasks}" if self.further_tasks else "") + (", int8" if self.quantized else "") + ")")

    @classmethod
    def load(cls, folder: str | os.PathLike, *, quantized: bool = False, threads: int | None = None,
             check_run: bool = True) -> Runtime:
        """Open an export folder.

        Args:
            quantized: run ``model.int8.onnx`` (dynamic int8 weights) instead of ``model.onnx``,
                one row at a time (its activations are quantised per call: see :func:`run_graph`).
            threads: onnxruntime intra-op threads (None: its default).
            check_run: compare the export with the run folder it sits in (off where the caller
                did, or where the folder is an export being written: the parity check's).

        Warns:
            UserWarning: the export sits in a run folder whose model it no longer is (the run was
                trained again, or its threshold set with ``polymodal threshold``, since it was
                exported: :func:`exported_from_other_model`, which ``polymodal serve`` refuses),
                naming the command that exports it again. An export with no run beside it (copied
                elsewhere) has nothing to be compared with.

        Raises:
            ExportError: the export has no such graph, is of a later format than this runtime
                reads, or onnxruntime cannot load it.
        """
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime", "running an exported model", extra="serve") from None
        folder = Path(folder)
        if not (folder / META_FILE).is_file():
            raise FileNotFoundError(not_an_export(folder))
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format_version", 1) > FORMAT_VERSION:
            raise ExportError(f"{folder} was exported by polymodal {meta.get('polymodal_version')} in export format "
                              f"{meta['format_version']}; this runtime reads formats up to {FORMAT_VERSION}: "
                              "upgrade polymodal where it runs")
        key = "quantized_file" if quantized else "file"
        if meta["graph"].get(key) is None:
            raise ExportError(f"{folder} has no {'int8 ' if quantized else ''}ONNX graph "
                              f"(export with --format onnx{' --quantize' if quantized else ''})")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        graph = folder / meta["graph"][key]
        try:
            session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        except onnxruntime_errors() as err:
            raise ExportError(f"onnxruntime cannot load {graph}: {first_line(err)}; write the export again with "
                              f"'polymodal export RUN'") from err
        run = folder.parent
        if check_run and exported_from_other_model(meta, run):
            warn_user(f"{stale_export(folder, run)}: this runtime predicts as that model did, not as the run now "
                      f"does; to predict as the run does, export it again with {export_command(folder, run, meta)} "
                      "(with --data as before)")
        undescribed = undescribed_outputs(meta, session)
        if undescribed:
            command = export_command(folder, run, meta) if (run / MODEL_FILE).is_file() else "'polymodal export RUN'"
            warn_user(f"{folder}'s graph outputs {undescribed} columns beyond the main task's that its {META_FILE} does "
                      "not describe: a multi-task model exported before its further tasks were recorded (2026-12-07); "
                      f"this runtime answers the main task only; to answer every task, export the run again with "
                      f"{command}")
        return cls(folder, meta, session, quantized=quantized)

    # -- preprocessing ------------------------------------------------------------------------
    def present(self, name: str, row: Row) -> bool:
        """Whether modality ``name`` is present in ``row``: given (:func:`given`), and holding
        something it reads (under ``data.on_error: missing``, a table whose filled cells are all
        unreadable numbers reads as missing, as in training)."""
        return given(row.get(name)) and self.features[name].holds(row[name])

    def check_row(self, row: Row, index: int = 0) -> None:
        """Refuse row ``index`` where it names a modality the model does not have, a value its
        modality never reads (:meth:`Features.check`: a table's unknown columns, as the service
        refuses them), or gives no modality to predict from.

        Raises:
            RequestError: naming the row (its ``row``), and the modality at fault.
        """
        unknown = sorted(set(row) - set(self.names))
        if unknown:
            raise RequestError(f"unknown modalities {unknown}; this model has {self.names}",
                               code="unknown_field", field=unknown[0], row=index)
        for name, value in row.items():
            if value is not None:
                self.in_row(index, self.features[name].check, value)
        if not any(self.present(n, row) for n in self.names):
            unread = [f"modality '{n}', {note}" for n in self.names if given(row.get(n))
                      for note in self.features[n].notes(row[n])]
            if unread:
                raise RequestError(f"no modality left to predict from: {'; '.join(unread)}", code="missing_input",
                                   row=index)
            raise RequestError(f"no modality given; send at least one of {self.names}", code="missing_input",
                               row=index)

    @staticmethod
    def in_row(index: int, step: Callable[[Any], Any], value: Any) -> Any:
        """``step(value)`` (a modality's check or decode of row ``index``'s value), its refusal
        naming the row: ``row 3: modality 'scan' (image): cannot read file 'x.png': ...``."""
        try:
            return step(value)
        except RequestError as err:
            raise err.in_row(index) from None

    def transform(self, rows: Sequence[Row]) -> dict[str, np.ndarray]:
        """Graph feeds for a batch of rows: every modality's arrays plus its presence mask.

        Raises:
            RequestError: a row the model cannot read (:meth:`check_row`), or a value its modality
                cannot decode (a file that cannot be read...), naming the row.
        """
        for i, row in enumerate(rows):
            self.check_row(row, i)
        feeds: dict[str, np.ndarray] = {}
        for name in self.names:
            features = self.features[name]
            present = np.asarray([self.present(name, row) for row in rows], bool)
            unheld = sum(given(row.get(name)) for row in rows) - int(present.sum())
            note = features.absent_note(unheld) if unheld else None  # a video without sound: said once per call
            if note is not None:
                warn_user(note)
            arrays = features.empty(len(rows))
            if present.any():
                held = np.flatnonzero(present).tolist()
                got = features.featurize([self.in_row(i, features.decode, rows[i][name]) for i in held])
                for key, value in got.items():
                    arrays[key][present] = value
            feeds.update({f"{name}.{key}": value for key, value in arrays.items()})
            feeds[f"{name}.present"] = present
        return feeds

    def notes(self, row: Row) -> list[str]:
        """What to tell the caller about how ``row`` (featurised already) was read: a category the
        model never learned, per modality (``modality 'labs', column 'sex': 'X' is a category...``),
        and modalities left out that the model never trained without (``deploy.json``'s
        ``untrained_absent``: no modality dropout for them, no subset loss, no training row without them)."""
        notes = [f"modality '{name}', {note}" for name in self.names if given(row.get(name))
                 for note in self.features[name].notes(row[name])]
        absent = [name for name in self.untrained_absent if not self.present(name, row)]
        if absent:
            unread = " or not readable" if any(given(row.get(name)) for name in absent) else ""
            notes.append(f"{'modality' if len(absent) == 1 else 'modalities'} {', '.join(map(repr, absent))} not "
                         f"given{unread}, and this model never trained without {'it' if len(absent) == 1 else 'them'}: its "
                         "answer from the others may be far less accurate than with all of them (train with "
                         "train.modality_dropout for predictions from a subset)")
        return notes

    # -- the network --------------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Raw outputs (B, K) of the graph for prepared feeds (the int8 graph: row by row); no row
        gives (0, K) without running it (a graph's batch axis of 0 breaks its reshapes)."""
        if len(feeds[self.input_names[0]]) == 0:
            return np.zeros((0, max(task["outputs"][1] for task in self.tasks.values())), np.float32)
        return run_graph(self.session, self.input_names, feeds, row_by_row=self.quantized)

    @property
    def further_tasks(self) -> list[str]:
        """The names of a multi-task model's further tasks, in output order (none for one task)."""
        return list(self.tasks)[1:]

    def task_entry(self, task: str | None = None) -> dict[str, Any]:
        """The entry of task ``task`` (:attr:`tasks`; None: the main task).

        Raises:
            SchemaMismatchError: the model has no task of that name (the message lists them).
        """
        if task is None:
            return next(iter(self.tasks.values()))
        if task not in self.tasks:
            raise SchemaMismatchError(f"task '{task}' is not one of this model's tasks{did_you_mean(task, self.tasks)}; "
                                      f"it has {list(self.tasks)}")
        return self.tasks[task]

    def task_outputs(self, outputs: np.ndarray, task: str | None = None) -> np.ndarray:
        """Task ``task``'s columns (None: the main task's) of the graph's raw outputs (B, sum K)."""
        start, stop = self.task_entry(task)["outputs"]
        return outputs[:, start:stop]

    def outputs(self, rows: Sequence[Row], task: str | None = None) -> np.ndarray:
        """Raw outputs (B, K) of the main task, or of ``task`` (a further task's name): logits
        (classification, multilabel) or standardised values (regression)."""
        return self.task_outputs(self.run(self.transform(rows)), task)

    def scores(self, outputs: np.ndarray, task: str | None = None) -> np.ndarray:
        """Probabilities (classification: softmax, multilabel: sigmoid), de-standardised values
        (regression) or anomaly scores (B, 1) of a task's raw ``outputs`` (``task``: its name,
        None: the main task) as the graph gives them."""
        entry = self.task_entry(task)
        kind = entry["task"]
        if kind in ("classification", "multilabel"):
            return probabilities(kind, outputs)
        if kind == "anomaly":
            return outputs
        mean, std = entry["target_scaling"]  # in float64, as training decodes them (targets far from 0)
        return np.asarray(outputs, np.float64) * np.asarray(std, np.float64) + np.asarray(mean, np.float64)

    def predict_proba(self, rows: Sequence[Row], task: str | None = None) -> np.ndarray:
        """(B, K) class probabilities of the main task, or of ``task`` (a further task's name);
        columns in the task's ``classes`` order (``meta['classes']`` for the main task)."""
        kind = self.task_entry(task)["task"]
        if kind not in ("classification", "multilabel"):
            which = "model; this one" if task is None else f"task; task '{task}'"
            raise SchemaMismatchError(f"predict_proba needs a classification or multilabel {which} does {kind}"
                                      + ("; an anomaly detector's scores are rt.scores(rt.outputs(rows))"
                                         if kind == "anomaly" else ""))
        return self.scores(self.outputs(rows, task), task)

    def held(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """(B,) the bit mask of the modalities each row of prepared ``feeds`` holds (bit i: ``names[i]``)."""
        return held_masks(np.stack([feeds[f"{n}.present"] for n in self.names], axis=1))

    def row_thresholds(self, held: np.ndarray) -> np.ndarray:
        """(B,) an anomaly detector's flag threshold of each row: that of the subset of modalities
        it holds (``held``: bit masks; ``deploy.json``'s ``anomaly.subset_thresholds``), the one
        ``anomaly.threshold`` for every row of an export without them (format 5 and before)."""
        from polymodal.metrics.anomaly import row_thresholds  # numpy only

        anomaly = self.meta["anomaly"]
        return row_thresholds(held, anomaly["threshold"], anomaly.get("subset_thresholds"))

    def flags(self, scores: np.ndarray, held: np.ndarray | None = None) -> np.ndarray:
        """(B,) an anomaly detector's flags for its scores (B, 1): above the threshold of the
        modalities each row holds (``held``: bit masks, :meth:`held`; None: every row holds them
        all), or no score (NaN: a row that cannot be checked is raised, as
        ``AnomalyDetector.predict_frame`` does). An export with one threshold for every row says
        so, once, when it flags a row with a modality missing."""
        from polymodal.metrics.anomaly import flags, one_threshold_note

        held = np.full(len(scores), (1 << len(self.names)) - 1) if held is None else np.asarray(held)
        flagged = flags(scores[:, 0], self.row_thresholds(held))
        if not self._one_threshold_said and self.meta["anomaly"].get("subset_thresholds") is None:
            many = len(self.names) > EXACT_MAX_MODALITIES  # subset thresholds stop where exact Shapley values do
            note = one_threshold_note(flagged, held, len(self.names),
                                      f"more than {EXACT_MAX_MODALITIES} modalities" if many else None)
            if note is not None:
                warn_user(note)
                self._one_threshold_said = True
        return flagged

    def predict(self, rows: Sequence[Row], task: str | None = None) -> list[Any]:
        """Labels (classification: None for a row whose outputs are not numbers, an input that
        overflows once scaled), 0/1 lists (multilabel), value lists (regression) or flags
        (anomaly) of the main task, or of ``task`` (a further task's name)."""
        entry = self.task_entry(task)
        feeds = self.transform(rows)
        kind, scores = entry["task"], self.scores(self.task_outputs(self.run(feeds), task), task)
        if kind == "anomaly":
            return self.flags(scores, self.held(feeds)).tolist()
        if kind == "classification":  # None where the outputs are not numbers, as predict_records says it
            return task_columns(entry, scores)["prediction"]
        return decisions(kind, scores, entry.get("threshold")).tolist() if kind == "multilabel" else scores.tolist()

    def predict_records(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        """Every task's predictions, one dict per row, keyed as ``predict_frame`` names its columns
        (``pd.DataFrame(rt.predict_records(rows))`` has them): the main task's ``prediction`` and
        ``proba_<class>`` (classification), ``pred_<label>`` and ``proba_<label>`` (multilabel) or
        ``pred_<target>`` (regression), or an anomaly detector's ``score`` and ``flag``; each
        further task's the same, ``<task>_`` before each name (``value_pred_value``,
        ``shape_pred_round``, ``shape_proba_round``); last ``absent``: the modalities the row
        lacked, comma-separated (empty when none). The graph runs once for every task."""
        feeds = self.transform(rows)
        outputs = self.run(feeds)
        records: list[dict[str, Any]] = [{} for _ in rows]
        for number, name in enumerate(self.tasks):
            entry, prefix = self.tasks[name], "" if number == 0 else f"{name}_"
            scores = self.scores(self.task_outputs(outputs, name), name)
            if entry["task"] == "anomaly":
                columns = {"score": scores[:, 0].tolist(), "flag": self.flags(scores, self.held(feeds)).tolist()}
            else:
                columns = task_columns(entry, scores)
            for key, values in columns.items():
                for record, value in zip(records, values):
                    record[f"{prefix}{key}"] = value
        present = np.stack([feeds[f"{n}.present"] for n in self.names], axis=1)
        for record, held in zip(records, present):
            record["absent"] = ", ".join(n for n, h in zip(self.names, held) if not h)
        return records

    def coalition_reference(self) -> np.ndarray | None:
        """(2^M,) what :meth:`explain` measures a row against per coalition: an anomaly detector's
        normal rows' mean score (``deploy.json``'s ``anomaly.normal_coalitions``), else None (the
        score with no modality), as :meth:`AnomalyDetector.coalition_reference`."""
        reference = self.meta.get("anomaly", {}).get("normal_coalitions")
        return None if reference is None else np.asarray(reference, np.float64)

    def explain_plan(self, permutations: int = PERMUTATIONS, seed: int = SEED) -> ShapleyPlan:
        """How :meth:`explain` computes its Shapley values, as ``pred.explain`` does
        (:func:`polymodal.utils.shapley.shapley_plan`): exact over all 2^M coalitions up to
        :data:`~polymodal.utils.shapley.EXACT_MAX_MODALITIES` modalities, else from ``permutations``
        orders sampled with ``seed`` (``plan.masks``: the coalitions the graph runs on; ``plan.method``:
        ``exact`` or ``sampled``)."""
        return shapley_plan(len(self.names), permutations, seed)

    def explain(self, rows: Sequence[Row], feeds: Mapping[str, np.ndarray] | None = None, *,
                output: Any | None = None, permutations: int = PERMUTATIONS, seed: int = SEED) -> np.ndarray:
        """Shapley contributions (B, M) of each modality (``names`` order) to each row's explained score.

        Computed as ``pred.explain`` computes them (:meth:`explain_plan`): exact up to 6 modalities;
        beyond, estimated from ``permutations`` modality orders sampled with ``seed`` (the defaults
        of ``pred.explain``, so that both give the same values for the same rows, and the same rows
        the same values on every call), the graph running once per coalition those orders pass
        through rather than once per each of the 2^M.

        The explained score is the one ``pred.explain`` attributes (:func:`polymodal.utils.scores.explained_outputs`):
        by default the predicted class's probability (classification), the first label's
        probability (multilabel), the first target's value (regression) or the anomaly score;
        ``output`` (a class, label or target name) picks another; :meth:`explained_quantity` names
        it. A coalition is evaluated by masking the other modalities as absent, and the empty
        coalition is every modality absent. Contributions add up to score(all given) - score(none);
        an anomaly detector's to score(all given) - the normal rows' mean score with the given
        modalities (each coalition measured against the normal rows' mean under it:
        :meth:`coalition_reference`, exact values only; a modality not given gets 0), NaN for a row
        it cannot score.

        Raises:
            SchemaMismatchError: ``output`` is not one of the model's outputs.
        """
        task, chosen = self.meta["task"], output_index(output, self.meta["classes"], self.meta["task"])
        plan = self.explain_plan(permutations, seed)
        feeds = dict(self.transform(rows) if feeds is None else feeds)
        given = np.stack([feeds[f"{n}.present"] for n in self.names], axis=1)  # (B, M)
        m, (start, stop) = len(self.names), self.meta["main_outputs"]
        scores = {}  # (B, K) per coalition: the graph runs once for each the plan names
        for mask in plan.masks:
            keep = np.asarray([(mask >> i) & 1 for i in range(m)], bool)
            masked = {**feeds, **{f"{n}.present": given[:, i] & keep[i] for i, n in enumerate(self.names)}}
            scores[mask] = self.scores(self.run(masked)[:, start:stop])
        full = scores[(1 << m) - 1]  # with all given
        pick = explained_outputs(task, full, chosen, self.meta.get("threshold"))
        values = {mask: coalition_values(explained_score(s, pick))[:, None] for mask, s in scores.items()}
        reference = self.coalition_reference() if plan.exact else None  # per coalition, as pred.explain
        values, _ = against_reference(values, reference, held_masks(given))
        phi = plan.estimate(values)[:, :, 0]
        phi[np.isnan(explained_score(full, pick))] = np.nan  # no score, nothing to attribute
        return phi

    def explained_quantity(self, output: Any | None = None) -> str:
        """What :meth:`explain` attributes, in words (as ``Explanation.explained_quantity``), e.g.
        ``probability of the predicted class`` or ``probability of label 'kw_leak'``."""
        task, names = self.meta["task"], self.meta["classes"]
        return explained_quantity(task, explained_name(task, names, output_index(output, names, task)))
