"""The checks every export runs, and the int8 quantisation with its measured cost.

- :func:`check_graph`: the exported graph vs the eager network on the same featurised arrays,
  including rows with modalities hidden (the presence-mask path).
- :func:`check_runtime`: raw manifest cells through the numpy runtime + ONNX vs the eager
  predictor (preprocessing included).
- :func:`quantize_and_measure`: dynamic int8 weights (onnxruntime.quantization), their output
  difference, accuracy change on labelled rows and latency speed-up, measured as the runtime runs
  the int8 graph (one row at a time).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.data.encode import EncodedTable
from polymodal.data.manifest import Manifest
from polymodal.deploy.errors import ExportError
from polymodal.deploy.graph import example_feeds, graph_inputs
from polymodal.deploy.runtime import INT8_FILE, run_graph
from polymodal.errors import ManifestError
from polymodal.utils.coalitions import held_masks
from polymodal.utils.scores import decisions, softmax

CHECK_BATCH = 64
# int8 weights for the matrix products only: onnxruntime's dynamic ConvInteger is slower on CPU
# than float convolutions (measured 6x slower on the av-digits CNNs), so convolutions stay float
QUANTIZED_OPS = ("MatMul", "Gemm")


def table_feeds(table: EncodedTable, rows: np.ndarray, hide: bool) -> dict[str, np.ndarray]:
    """Graph feeds of an encoded table's ``rows``; ``hide``: row i hides modality (i mod (M + 1))
    when that is a modality index (so every modality is hidden on some rows, none on others)."""
    names = sorted(table.modalities)
    feeds = {}
    for m, name in enumerate(names):
        mod = table.modalities[name]
        for key, value in mod.arrays.items():
            feeds[f"{name}.{key}"] = np.ascontiguousarray(np.asarray(value[rows]))
        present = np.asarray(mod.present[rows], bool).copy()
        if hide and len(names) > 1:
            present &= (np.arange(len(rows)) % (len(names) + 1)) != m
        feeds[f"{name}.present"] = present
    return feeds


def eager_outputs(predictor: Any, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """The eager network on graph feeds, through the preprocessors' own ``to_batch`` (batch-time
    trimming included) and the net's usual present-rows-only encoding."""
    pipeline = predictor.require_fitted()[0]
    net = predictor.output_network()
    inputs, present = {}, {}
    for name, prep in pipeline.preprocessors.items():
        arrays = {k.split(".", 1)[1]: torch.from_numpy(v) for k, v in feeds.items()
                  if k.startswith(f"{name}.") and not k.endswith(".present")}
        inputs[name] = prep.to_batch(arrays, False)
        present[name] = torch.from_numpy(feeds[f"{name}.present"])
    with torch.inference_mode():
        return net.cpu().eval()(inputs, present).float().numpy()


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _runner(folder: Path, meta: Mapping[str, Any]) -> Any:
    """``run(feeds) -> outputs`` for the export's graph (ONNX or TorchScript)."""
    graph = meta["graph"]
    if graph.get("file"):
        session = _session(folder / graph["file"])
        names = [i["name"] for i in graph["inputs"]]
        return lambda feeds: session.run(["outputs"], {n: feeds[n] for n in names})[0]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.load", FutureWarning)
        module = torch.jit.load(str(folder / graph["torchscript_file"]))
    names = [i["name"] for i in graph["inputs"]]

    def run(feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return module(*(torch.from_numpy(feeds[n]) for n in names)).numpy()

    return run


def difference_measure(predictor: Any) -> str:
    """How exported and eager outputs are compared: ``absolute`` (logits, probabilities, values), or
    ``relative`` for an anomaly detector's scores (distances of no fixed scale, where float32
    rounding grows with the score): ``|exported - eager| / max(1, |eager|)``."""
    return "relative" if predictor.config.task == "anomaly" else "absolute"


def output_difference(got: np.ndarray, eager: np.ndarray, measure: str) -> float:
    """The largest difference between two output arrays by ``measure`` (:func:`difference_measure`).
    NaN is an infinite difference, except that for anomaly scores (``relative``) NaN on both sides
    agrees: a row neither side can score (a classifier's NaN output is always a failure)."""
    diff = np.abs(got.astype(np.float64) - eager)
    if measure == "relative":
        diff /= np.maximum(1.0, np.abs(eager))
    agree = np.isnan(got) & np.isnan(eager) if measure == "relative" else np.zeros(diff.shape, bool)
    diff = np.where(agree, 0.0, np.nan_to_num(diff, nan=np.inf))
    return float(diff.max(initial=0.0))


def _describe(measure: str) -> str:
    return "differ by up to" if measure == "absolute" else "differ, relative to max(1, |eager score|), by up to"


def _batched(fn: Any, feeds: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    return np.concatenate([fn({k: v[s:s + CHECK_BATCH] for k, v in feeds.items()}) for s in range(0, n, CHECK_BATCH)])


def check_graph(predictor: Any, folder: Path, meta: Mapping[str, Any], table: EncodedTable | None, rows: int,
                tolerance: float) -> dict[str, Any]:
    """Max |exported - eager| over the check rows, every output column (every task's) compared;
    raises ExportError above ``tolerance``. A multi-task export (``meta``'s ``tasks``) adds
    ``task_max_abs_diff``: the figure of each task's columns, by name."""
    run = _runner(folder, meta)
    if table is None:
        feeds_list = [example_feeds(graph_inputs(predictor.pipeline.preprocessors), batch=min(rows, CHECK_BATCH), seed=1)]
        source = "synthetic arrays"
    else:
        chosen = np.arange(min(rows, len(table)))
        feeds_list = [table_feeds(table, chosen, hide=False), table_feeds(table, chosen, hide=True)]
        source = f"{len(chosen)} manifest rows, as given and with modalities hidden"
    worst, n, measure = 0.0, 0, difference_measure(predictor)
    tasks = {task["name"]: task["outputs"] for task in meta.get("tasks", [])}  # a multi-task model's
    by_task = dict.fromkeys(tasks, 0.0)
    for feeds in feeds_list:
        count = len(next(iter(feeds.values())))
        exported = _batched(run, feeds, count)
        eager = _batched(lambda f: eager_outputs(predictor, f), feeds, count)
        if exported.shape != eager.shape:
            raise ExportError(f"parity check failed: the exported graph gives outputs of shape {exported.shape[1:]}, "
                              f"the eager network {eager.shape[1:]}")
        worst = max(worst, output_difference(exported, eager, measure))  # every output: each task's
        for name, (start, stop) in tasks.items():
            by_task[name] = max(by_task[name], output_difference(exported[:, start:stop], eager[:, start:stop], measure))
        n += count
    if not worst <= tolerance:
        failing = [name for name, diff in by_task.items() if not diff <= tolerance]
        which = f" (tasks {failing})" if failing else ""
        raise ExportError(f"parity check failed: exported and eager outputs{which} {_describe(measure)} {worst:.3g} on "
                          f"{source}; allowed {tolerance:g}")
    checks = {"graph_max_abs_diff": worst, "rows": n, "source": source, "tolerance": tolerance, "measure": measure}
    return {**checks, "task_max_abs_diff": by_task} if by_task else checks


def manifest_rows(runtime: Any, manifest: Manifest, rows: int) -> list[dict[str, Any]]:
    """Runtime rows (modality -> path / text / {column: value}) of a manifest's first ``rows``."""
    from polymodal.data.cells import is_empty

    out = []
    for _, record in manifest.frame.head(rows).iterrows():
        row: dict[str, Any] = {}
        for name, spec in runtime.meta["modalities"].items():
            if spec["kind"] == "tabular":
                values = {c: record.get(c) for c in [*spec["columns"], *spec["categorical"]]}
                if not all(is_empty(v) for v in values.values()):
                    row[name] = {c: None if is_empty(v) else v for c, v in values.items()}
            elif spec["column"] in record and not is_empty(record[spec["column"]]):
                value = record[spec["column"]]
                row[name] = value if spec["kind"] == "text" else manifest.resolve(value)
        out.append(row)
    return out


def check_runtime(predictor: Any, folder: Path, head: Manifest, table: EncodedTable, tolerance: float
                  ) -> dict[str, Any]:
    """Max |runtime - eager predictor| of the raw outputs on the check rows ``head``, whose
    encoded ``table`` (from the predictor's own preprocessing) the eager side runs."""
    from polymodal.deploy.runtime import Runtime

    runtime = Runtime.load(folder, check_run=False)  # the export being written, of the predictor in memory
    cells = manifest_rows(runtime, head, len(head))
    kept, positions = [], []
    for i, r in enumerate(int(r) for r in table.rows):  # rows that decoded (on_error: skip drops some)
        # what the eager side read: on_error: missing turns a file it cannot read into a missing modality
        row = {m: v for m, v in cells[r].items() if table.modalities[m].present[i]}
        if row:
            kept.append(row)
            positions.append(i)
    if not kept:
        raise ManifestError([f"none of the first {len(head)} row(s) holds a modality that could be read, so the numpy "
                             "runtime cannot be checked on them"], source=head.name)
    eager = predictor.raw_outputs(table)[positions]
    got = np.concatenate([runtime.run(_runtime_feeds(runtime, head, kept[s:s + CHECK_BATCH],
                                                     [int(table.rows[i]) for i in positions[s:s + CHECK_BATCH]]))
                          for s in range(0, len(kept), CHECK_BATCH)])
    measure = difference_measure(predictor)
    worst = output_difference(got, eager, measure)
    if not worst <= tolerance:
        raise ExportError(f"runtime parity check failed: numpy preprocessing + ONNX and the eager predictor "
                          f"{_describe(measure)} {worst:.3g} on {len(kept)} rows of {head.name}; allowed {tolerance:g}")
    return {"runtime_max_abs_diff": worst, "runtime_rows": len(kept)}


def _runtime_feeds(runtime: Any, head: Manifest, rows: list[dict[str, Any]], numbers: list[int]
                   ) -> dict[str, np.ndarray]:
    """The runtime's feeds for check ``rows`` (manifest rows ``numbers``); an input the runtime
    refuses that training read is named: its row, modality and file, and why."""
    from polymodal.deploy.errors import RequestError

    try:
        return runtime.transform(rows)
    except RequestError as err:
        if err.row is None:
            raise
        value = rows[err.row].get(err.field) if err.field else None
        named = f" ({value})" if isinstance(value, str) and len(value) < 300 else ""
        modality = f", modality '{err.field}'{named}" if err.field else ""
        raise ExportError(f"the numpy runtime cannot read {head.where(numbers[err.row])}{modality}, which training "
                          f"read: {err.reason}") from None


def latency(run: Any, feeds: Mapping[str, np.ndarray], repeats: int = 20) -> float:
    """Median seconds of ``run(feeds)`` (after one warm-up call)."""
    run(feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


PREPROCESSING_HINT = "Please consider to run pre-processing before quantization"


def _drop_preprocessing_hint(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(PREPROCESSING_HINT)


@contextmanager
def _without_preprocessing_hint() -> Iterator[None]:
    """Drop onnxruntime's "Please consider to run pre-processing before quantization" warning
    (logged on the root logger) while quantising; its other messages still come through.

    That pre-processing (``onnxruntime.quantization.preprocess``) runs symbolic shape inference
    and onnxruntime's graph optimiser (operator fusion) before quantising, so that static
    quantisation, which calibrates each activation's range, sees fused operators. Dynamic
    quantisation of MatMul/Gemm weights calibrates nothing (activations are quantised per call
    at run time, which is why the runtime runs the int8 graph one row at a time) and
    ``quantize_dynamic`` runs ONNX shape inference itself; what int8 costs this graph is measured
    right after (output difference, accuracy, speed-up), hint or not.
    """
    root = logging.getLogger()
    root.addFilter(_drop_preprocessing_hint)
    try:
        yield
    finally:
        root.removeFilter(_drop_preprocessing_hint)


def quantize_and_measure(predictor: Any, folder: Path, meta: Mapping[str, Any], manifest: Manifest | None,
                         rows: int) -> dict[str, Any]:
    """Write ``model.int8.onnx`` (dynamic int8 weights of MatMul/Gemm) and measure it as the
    runtime runs it: one row at a time (see :func:`polymodal.deploy.runtime.run_graph`).

    Returns:
        ``max_abs_diff`` (int8 vs float outputs, by ``measure``: see :func:`difference_measure`),
        ``accuracy`` / ``accuracy_int8`` on labelled classification rows (an anomaly detector:
        ``flag_agreement`` and ``auroc`` / ``auroc_int8``), file sizes, ``speedup_row`` (float vs
        int8 latency at batch 1) and ``speedup_batch`` (float on a batch of ``speedup_rows`` rows vs
        int8 on the same rows, one by one).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _without_preprocessing_hint():
        quantize_dynamic(str(folder / meta["graph"]["file"]), str(folder / INT8_FILE), weight_type=QuantType.QInt8,
                         op_types_to_quantize=list(QUANTIZED_OPS))
    names = [i["name"] for i in meta["graph"]["inputs"]]
    float_s, int8_s = _session(folder / meta["graph"]["file"]), _session(folder / INT8_FILE)
    if manifest is None:
        feeds = example_feeds(graph_inputs(predictor.pipeline.preprocessors), batch=min(rows, CHECK_BATCH), seed=2)
        labels = None
    else:
        head = manifest.subset(np.arange(min(rows, len(manifest))))  # the export's sample of check rows
        table = predictor.encode_data(head, require_target=False, modalities=None)[1]
        feeds = table_feeds(table, np.arange(len(table)), hide=False)
        labels = _check_labels(predictor, head, table)

    def fp(f: Mapping[str, np.ndarray]) -> np.ndarray:
        return run_graph(float_s, names, f)

    def q8(f: Mapping[str, np.ndarray]) -> np.ndarray:  # as Runtime.load(quantized=True) runs it
        return run_graph(int8_s, names, f, row_by_row=True)

    count = len(next(iter(feeds.values())))
    out_fp, out_q8 = _batched(fp, feeds, count), _batched(q8, feeds, count)
    batch = {k: v[:CHECK_BATCH] for k, v in feeds.items()}
    one = {k: v[:1] for k, v in feeds.items()}
    result: dict[str, Any] = {
        "file": INT8_FILE, "ops": list(QUANTIZED_OPS), "rows": count,
        "max_abs_diff": output_difference(out_q8, out_fp, difference_measure(predictor)),
        "measure": difference_measure(predictor),
        "size_bytes": (folder / INT8_FILE).stat().st_size, "float_size_bytes": (folder / meta["graph"]["file"]).stat().st_size,
        "speedup_row": latency(fp, one) / latency(q8, one),
        "speedup_batch": latency(fp, batch, repeats=5) / latency(q8, batch, repeats=5),
        "speedup_rows": len(next(iter(batch.values()))),
    }
    if predictor.config.task == "anomaly":
        held = held_masks(np.stack([feeds[f"{n}.present"] for n in sorted(meta["modalities"])], axis=1))
        result.update(_int8_anomaly_figures(meta, out_fp[:, 0], out_q8[:, 0], labels, held))
    elif labels is not None and labels.notna().all():
        from polymodal.data.targets import label_key

        index = {label_key(c): i for i, c in enumerate(meta["classes"])}  # 7, "7" and 7.0 are one label
        truth = np.array([index.get(label_key(v), -1) for v in labels])
        start, stop = meta["main_outputs"]
        for key, out in (("accuracy", out_fp), ("accuracy_int8", out_q8)):  # called as the runtime calls them
            called = decisions("classification", softmax(out[:, start:stop].astype(np.float64)), meta.get("threshold"))
            result[key] = float((called == truth).mean())
    return result


def _check_labels(predictor: Any, head: Manifest, table: EncodedTable) -> Any:
    """The labels of the encoded check rows that int8 is measured on: class labels (a pandas Series)
    of a classifier, the anomaly labels (1 anomaly, 0 normal, -1 unknown) of an anomaly detector;
    None when the rows have none."""
    target = predictor.config.targets[0] if predictor.config.targets else None
    if target is None or target not in head.frame:
        return None
    if predictor.config.task == "anomaly":
        return predictor.pipeline.targets.encode(head, table.rows)
    return head.frame[target].iloc[table.rows] if predictor.config.task == "classification" else None


def _int8_anomaly_figures(meta: Mapping[str, Any], scores: np.ndarray, scores_int8: np.ndarray,
                          labels: np.ndarray | None, held: np.ndarray) -> dict[str, Any]:
    """What int8 changes in an anomaly detector's answers: ``flag_agreement`` (the share of rows
    flagged alike, each at the export's threshold of the modalities it holds, ``held``: bit masks)
    and, on rows labelled both ways, ``auroc`` / ``auroc_int8``."""
    from polymodal.metrics.anomaly import anomaly_metrics, flags, row_thresholds

    threshold = row_thresholds(held, meta["anomaly"]["threshold"], meta["anomaly"].get("subset_thresholds"))
    out: dict[str, Any] = {"flag_agreement": float((flags(scores, threshold) == flags(scores_int8, threshold)).mean())}
    if labels is not None:
        known = labels >= 0
        before, after = anomaly_metrics(scores[known], labels[known]), anomaly_metrics(scores_int8[known], labels[known])
        if before["auroc"] is not None and after["auroc"] is not None:
            out.update(auroc=before["auroc"], auroc_int8=after["auroc"])
    return out