"""The automatic diagnostics of a run (computed after ``fit``, shown in ``report.html``, stored
in the run folder as ``diagnostics.json``).

They use a bounded number of rows (``report.rows``) so that every fit stays quick: metrics per
modality subset, Shapley modality importance, one noise corruption per modality at severities
0-5, calibration (reliability bins, ECE) and complexity (parameters, training time, peak memory,
inference latency). The full sweeps are ``polymodal evaluate --missing --robustness`` and
``polymodal explain``.

A frozen encoder whose outputs the fit cached (``encoder.cache``) runs at most once per row for
all the analyses that see the clean rows (its stored outputs are read back:
:attr:`~polymodal.evaluation.data.EvalData.features`), and then only for the corrupted copies of
its own modality in the robustness sweep (5 severities x ``report.rows``) and for the latency
measurement, which times the whole network on its inputs, as it is deployed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from polymodal.config.decision import DECIDED_TASKS
from polymodal.config.task_metrics import TASK_METRICS
from polymodal.data.embeddings import cached_modalities
from polymodal.data.manifest import Manifest
from polymodal.estimator import ROBUSTNESS
from polymodal.evaluation.attribution import explain
from polymodal.evaluation.calibration import calibration_summary
from polymodal.evaluation.complexity import inference_latency, peak_memory_mb
from polymodal.evaluation.corruptions import SEVERITIES
from polymodal.evaluation.data import load_eval_data, sample_rows
from polymodal.evaluation.robustness import REPORT_CORRUPTIONS, robustness_sweep
from polymodal.evaluation.subsets import evaluate_subsets
from polymodal.multitask import main_task
from polymodal.retrieval.cca import MIN_CCA_ROWS
from polymodal.retrieval.search import cca_baseline, evaluate_retrieval
from polymodal.utils.coalitions import all_subsets
from polymodal.utils.progress import log_line, progress_bar
from polymodal.utils.shapley import EXACT_MAX_MODALITIES
from polymodal.utils.warn import warn_user

if TYPE_CHECKING:
    from polymodal.config.report import ReportConfig
    from polymodal.data.pipeline import DataSource
    from polymodal.estimator import Estimator
    from polymodal.predictor import MultimodalPredictor


def report_subsets(names: list[str]) -> list[frozenset[str]]:
    """Every non-empty subset up to 6 modalities; beyond, all, each alone and each left out."""
    if len(names) <= EXACT_MAX_MODALITIES:
        return all_subsets(names)
    every = frozenset(names)
    return [every, *(every - {n} for n in names), *(frozenset({n}) for n in names)]


CCA_TRAIN_ROWS = 10_000  # training rows (a seeded sample when there are more) the report's CCA baseline is fitted on


def sampled_manifest(predictor: MultimodalPredictor, data: DataSource, rows: int, seed: int) -> Manifest:
    """At most ``rows`` rows of ``data``, a seeded random sample in manifest order
    (:func:`~polymodal.evaluation.data.sample_rows`)."""
    manifest = predictor.pipeline.read_raw(data)
    chosen = sample_rows(len(manifest), rows, seed)
    return manifest if len(chosen) == len(manifest) else manifest.subset(chosen)


def retrieval_beside_cca(predictor: MultimodalPredictor, data: DataSource, train: DataSource,
                         cfg: ReportConfig) -> dict[str, Any]:
    """Retrieval metrics of the model on (a sample of ``report.rows`` of) ``data``, every
    direction, beside linear CCA fitted on (up to ``CCA_TRAIN_ROWS`` of) ``train``'s frozen
    encoder features (:func:`polymodal.retrieval.search.cca_baseline`)."""
    rows = sampled_manifest(predictor, data, cfg.rows, cfg.seed)
    fit_rows = sampled_manifest(predictor, train, CCA_TRAIN_ROWS, cfg.seed)
    results = {"model": evaluate_retrieval(predictor, rows)}
    if len(fit_rows) >= MIN_CCA_ROWS:
        results["linear_cca"] = cca_baseline(predictor, fit_rows, rows)
    return {"rows": len(rows), "cca_train_rows": len(fit_rows),
            "retrieval": [{"method": method, "direction": direction, **scores}
                          for method, table in results.items() for direction, scores in table.items()]}


def diagnose(predictor: Estimator, data: DataSource, split: str, cfg: ReportConfig,
             train: DataSource | None = None) -> dict[str, Any]:
    """Compute the diagnostics on (a sample of) a labelled manifest.

    Args:
        data: the test manifest, else the validation rows.
        split: its name in the report (``test`` or ``valid``).
        cfg: the ``report`` config section.
        train: the training rows; a retrieval run's diagnostics are its retrieval metrics on
            ``data`` beside the linear-CCA baseline fitted on them (:func:`retrieval_beside_cca`).

    Returns:
        A JSON-ready dict (empty when ``cfg.rows`` is 0 or the task has no per-row outputs).
    """
    if cfg.rows and predictor.config.task == "retrieval" and train is not None:
        started = time.perf_counter()
        return {"split": split, **retrieval_beside_cca(predictor, data, train, cfg),
                "seconds": time.perf_counter() - started}
    metric = TASK_METRICS[predictor.config.task].sweep
    if cfg.rows == 0 or metric is None:
        return {}
    started = time.perf_counter()
    data = load_eval_data(predictor, data, require_target=True, max_rows=cfg.rows, seed=cfg.seed)
    if len(data) == 0:
        return {}
    names = predictor.config.modality_names
    out: dict[str, Any] = {"split": split, "rows": len(data), "metric": metric, "task": predictor.config.task}
    if predictor.config.task in DECIDED_TASKS:  # what the figures call classes at (the report says when it changed)
        out["threshold"] = predictor.pipeline.targets.threshold
    shown = predictor.config.train.progress
    robustness = cfg.robustness and ROBUSTNESS not in predictor.unsupported  # an anomaly detector's is refused
    corruptions = {n: [REPORT_CORRUPTIONS[m.kind]] for n, m in predictor.config.modalities.items()
                   if m.kind in REPORT_CORRUPTIONS and data.table.modalities[n].present.any()} if robustness else {}
    what = (f"report: subsets, importance{', robustness' if robustness else ''} on {len(data)} {split} rows "
            "(report.rows; 0 skips them)")
    log_line(what + _frozen_sweep_note(predictor, corruptions), shown)
    if len(names) > 1:
        step = time.perf_counter()
        with progress_bar(2, "report: subsets and importance", enabled=shown, min_total=1) as advance:
            out["subsets"] = evaluate_subsets(predictor, data, report_subsets(names)).to_dict("records")
            advance(1)
            explanation = explain(predictor, data, seed=cfg.seed, samples=0)
            advance(1)
        out["importance"] = explanation.importance.to_dict("records")
        out["explained"] = explanation.explained_quantity  # the default output (see attribution.explain)
        out["outputs"] = len(explanation.outputs)  # one: no other output to explain, the report says no --output
        out["importance_caveats"] = explanation.caveats()  # as explain prints them and its page shows them
        out["interactions"] = explanation.interaction_table().to_dict("records")
        groups = explanation.by_group()  # an anomaly detector's: which sensor each label shows in
        if not groups.empty:
            out["by_group"] = groups.to_dict("records")
        log_line(f"report: subsets and importance done ({time.perf_counter() - step:.0f} s)", shown)
    if robustness:  # a bar (or, in a log, a line every LOG_EVERY seconds) over the corrupted evaluations
        step = time.perf_counter()
        sweep = robustness_sweep(predictor, data, corruptions, seed=cfg.seed, progress=shown)
        out["robustness"] = {"metric": sweep.metric, "curves": sweep.curves.to_dict("records"),
                             "summary": sweep.summary.to_dict("records"), "chance": sweep.chance}
        log_line(f"report: robustness done ({time.perf_counter() - step:.0f} s)", shown)
    if predictor.config.task == "classification":
        outputs, targets = main_task(predictor.pipeline.targets, predictor.raw_outputs(data.features), data.targets)
        out["calibration"] = calibration_summary(outputs, targets)  # multi-task: the main task's
    info = predictor.info
    out["complexity"] = {"parameters": info.get("parameters"), "train_seconds": info.get("train_seconds"),
                         # the whole network on the inputs, cached frozen encoders included: what a deployment runs
                         **peak_memory_mb(predictor.device), **inference_latency(predictor, data.table, progress=shown)}
    out["seconds"] = time.perf_counter() - started
    return out


def _frozen_sweep_note(predictor: Estimator, corruptions: dict[str, list[str]]) -> str:
    """What the report's robustness sweep costs beyond the clean rows: the cached frozen encoders it
    runs (on the corrupted copies of their own modality: no stored outputs for those), or nothing."""
    frozen = [n for n in cached_modalities(predictor.config) if n in corruptions]
    if not frozen:
        return ""
    return (f"; the robustness sweep runs the frozen encoder{'s' if len(frozen) > 1 else ''} of "
            f"{', '.join(frozen)} on {SEVERITIES} corrupted copies of these rows (corrupted inputs have no cached "
            "features; report.robustness: false skips the sweep)")


def diagnose_after_fit(predictor: Estimator, data: DataSource, split: str, cfg: ReportConfig,
                       train: DataSource | None = None) -> dict[str, Any]:
    """:func:`diagnose`, as ``fit`` runs it: these are optional analyses, so a failure does not
    lose the trained model; it becomes a warning and ``{"error": ...}`` (shown in the report)."""
    try:
        return diagnose(predictor, data, split, cfg, train=train)
    except Exception as err:  # noqa: BLE001 - reported: warning, diagnostics.json and report.html
        error = f"{type(err).__name__}: {err}"
        warn_user(f"the report's diagnostics failed ({error}); the model is saved without them (polymodal "
                  "evaluate / explain compute them on any manifest)")
        return {"error": error}
