"""``report.html``: a self-contained page per run (plots embedded, also saved under ``plots/``).

Sections: metrics table, learning curves, confusion matrix, the decision threshold (a two-class
classifier's or a multilabel model's), model summary (parameters per
module), training facts. Other layers add sections through :func:`write_report`'s ``extra``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import confusion_matrix

from polymodal.config.decision import DECIDED_TASKS
from polymodal.evaluation.html import STYLE, embed_png, table_html
from polymodal.evaluation.plots import confusion_plot, learning_curves, operating_points
from polymodal.evaluation.report_sections import diagnostic_sections
from polymodal.metrics.tasks import binary_rates
from polymodal.run_files import PLOTS_DIR, REPORT_FILE
from polymodal.utils.io import atomic_write, atomic_write_text
from polymodal.utils.scores import MULTILABEL_THRESHOLD, decisions

if TYPE_CHECKING:
    from polymodal.estimator import Estimator

def per_output_table(metrics: Mapping[str, Any]) -> str:
    """Each target's (regression) or label's (multilabel) own figures of the test split (else the
    validation one): the ``<metric>_per_target`` / ``<metric>_per_label`` entries, one row each;
    one table per task of a multi-task model (its entries prefixed ``<task>/``)."""
    split = "test" if metrics.get("test") else "valid"
    tasks: dict[str, dict[str, Mapping[str, Any]]] = {}
    for key, values in (metrics.get(split) or {}).items():
        if "_per_" in key and isinstance(values, Mapping):
            task, _, metric = key.rpartition("/")
            tasks.setdefault(task, {})[metric.rsplit("_per_", 1)[0]] = values
    parts = []
    for task, columns in tasks.items():
        names = list(dict.fromkeys(n for values in columns.values() for n in values))
        rows = [{"output": n, **{metric: values.get(n) for metric, values in columns.items()}} for n in names]
        parts.append(f"<p>Each output{f' of task {html.escape(task)}' if task else ''} on its own ({split}):</p>"
                     + table_html(rows))
    return "".join(parts)


def parameter_rows(net: Any) -> list[dict[str, Any]]:
    """Parameters per part: each encoder, and every other module beside the encoders (fusion,
    head, projections, decoders, scorer...); a module that holds the encoders deeper (an anomaly
    model's network) is opened up; parameters held by an opened module itself (a temperature)
    are counted as ``other``. The last row is the total."""
    parts, total = _part_rows(net), module_row("total", "", net)
    other = {k: total[k] - sum(r[k] for r in parts) for k in ("parameters", "trainable")}
    return [*parts, *([{"part": "other", "module": "", **other}] if other["parameters"] else []), total]


def _part_rows(module: Any) -> list[dict[str, Any]]:
    rows = []
    for name, child in module.named_children():
        if name == "encoders":
            rows += [module_row(f"encoder: {n}", type(e).__name__, e) for n, e in child.items()]
        elif any(path.endswith("encoders") for path, _ in child.named_modules()):
            rows += _part_rows(child)
        elif any(True for _ in child.parameters()):
            rows.append(module_row(name, type(child).__name__, child))
    return rows


def module_row(part: str, kind: str, module: Any) -> dict[str, Any]:
    params = list(module.parameters())
    return {"part": part, "module": kind, "parameters": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad)}


SET_ANOTHER = ("Set another without retraining: <code>polymodal threshold RUN --min-sensitivity 0.95</code> (or "
               "<code>--metric</code>, <code>--score</code>, <code>--reset</code>).")


def _label_thresholds(predictor: Estimator) -> str:
    """A multilabel model's threshold per label, how they were set, and each label's validation
    sensitivity, specificity and F1 at it."""
    proba, truth = predictor.valid_scores
    decision, held = predictor.config.decision, predictor.pipeline.targets.threshold
    called = decisions("multilabel", proba, held)  # as the model calls them
    cuts = np.broadcast_to(np.asarray(MULTILABEL_THRESHOLD if held is None else held, np.float64), (proba.shape[1],))
    f1 = (predictor.metrics.get("valid") or {}).get("f1_per_label") or {}
    rows = []
    for j, name in enumerate(predictor.pipeline.targets.columns):
        rates = binary_rates(confusion_matrix(truth[:, j], called[:, j], labels=[0, 1]), name)
        rows.append({"label": name, "threshold": float(cuts[j]), "valid sensitivity": rates["sensitivity"],
                     "valid specificity": rates["specificity"], "valid F1": f1.get(name)})
    how = ("0.5 for every label (no <code>decision.threshold</code>)" if held is None else
           f"chosen per label by {html.escape(decision.criterion)} on the {len(truth)} validation rows"
           if decision.threshold == "auto" else "as given")
    return f"<p>Each label is called from its threshold: {how}. {SET_ANOTHER}</p>" + table_html(rows)


def _decision_section(predictor: Estimator, plots: Path) -> str:
    """A two-class classifier's operating point: the threshold, how it was chosen, and its
    validation rates at every threshold (what ``polymodal threshold`` would trade); a multilabel
    model's per label (:func:`_label_thresholds`)."""
    if predictor.config.task == "multilabel":
        return _label_thresholds(predictor)
    proba, labels = predictor.valid_scores
    positive = predictor.pipeline.targets.classes[1]
    threshold, decision = predictor.pipeline.targets.threshold, predictor.config.decision
    png = operating_points(proba, labels == 1, threshold, positive, decision.metric)
    atomic_write(plots / "decision_threshold.png", lambda tmp: tmp.write_bytes(png))
    if threshold is None:
        said = (f"Class <b>{html.escape(str(positive))}</b> is called where it is the more probable class "
                "(no <code>decision.threshold</code>).")
    else:
        how = (f"chosen by {html.escape(decision.criterion)} on the {len(labels)} validation rows"
               if decision.threshold == "auto" else "as given")
        said = (f"Class <b>{html.escape(str(positive))}</b> is called where its probability reaches "
                f"<b>{threshold:.4g}</b> ({how}).")
    return (f"<p>{said} {SET_ANOTHER}</p>"
            f"<figure>{embed_png(png, 'validation rates by decision threshold')}</figure>")


def alignment_summary(align: Any) -> str:
    """An ``align`` section in words: objective, width, positives, projection, anchor (HTML)."""
    projection = align.projection.name + (f" {list(align.projection.hidden)}" if hasattr(align.projection, "hidden") else "")
    parts = [f"dim {align.dim}", f"positives {align.positives}", f"projection {projection}",
             f"anchor {align.anchor if align.anchor is not None else 'none (every pair)'}"]
    if align.modalities is not None:
        parts.append(f"aligned {', '.join(align.modalities)}")
    return f"alignment <b>{html.escape(align.objective)}</b> ({html.escape(', '.join(parts))})"


def run_header(cfg: Any) -> str:
    """The report's first line (HTML): task, target (and the further tasks), modalities, and what
    joins them: a retrieval run's alignment (it has no fusion and no head), else the fusion and head
    (and the alignment trained beside the task, if any)."""
    modalities = ", ".join(f"<b>{html.escape(n)}</b> ({m.kind}, {m.encoder.name})" for n, m in sorted(cfg.modalities.items()))
    target = html.escape(str(cfg.target)) if cfg.target is not None else "none"
    further = "".join(f", further task <b>{html.escape(name)}</b> ({spec.task}, target {html.escape(str(spec.target))})"
                      for name, spec in (getattr(cfg, "tasks", None) or {}).items())
    said = f"Task <b>{cfg.task}</b>, target {target}{further}, modalities {modalities}"
    if cfg.task == "retrieval":
        return f"{said}; {alignment_summary(cfg.align)}."
    said += f"; fusion <b>{cfg.fusion.name}</b>" + ("" if cfg.task == "anomaly" else f", head <b>{cfg.head.name}</b>")
    return said + (f"; {alignment_summary(cfg.align)} beside the task" if getattr(cfg, "align", None) else "") + "."


def write_report(predictor: Estimator, run: Path, net: Any, extra: Mapping[str, str] | None = None) -> Path:
    """Write ``run/report.html`` and the plots in ``run/plots/``; return the report path.

    Args:
        predictor: a fitted MultimodalPredictor or AnomalyDetector (config, metrics, history, info).
        net: its network, summarised part by part.
        extra: further sections, title -> HTML.
    """
    plots = run / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    cfg = predictor.config
    sections = [f"<h1>polymodal run: {html.escape(run.name)}</h1>", f"<p>{run_header(cfg)}</p>"]
    metric_rows = []
    for split, scores in predictor.metrics.items():
        if isinstance(scores, Mapping):
            rates = scores.get("positive_class") or {}  # two classes: read as a screening test of the second
            metric_rows.append({"split": split, **{k: v for k, v in scores.items() if not isinstance(v, list | dict)},
                                **{f"{k} ({rates['class']})": v for k, v in rates.items() if k != "class"}})
    sections.append("<h2>Metrics</h2>" + table_html(metric_rows) + per_output_table(predictor.metrics))
    figures = []  # one below the other: the curves take the page's width, the matrix grows with the classes
    curves = learning_curves(predictor.history)
    if curves is not None:
        atomic_write(plots / "learning_curves.png", lambda tmp: tmp.write_bytes(curves))
        figures.append(f"<figure>{embed_png(curves, 'learning curves')}</figure>")
    chosen = predictor.metrics.get("test") or predictor.metrics.get("valid") or {}
    if cfg.task == "classification" and chosen.get("confusion_matrix"):
        png = confusion_plot(chosen["confusion_matrix"], predictor.pipeline.targets.classes)
        atomic_write(plots / "confusion_matrix.png", lambda tmp: tmp.write_bytes(png))
        split = "test" if predictor.metrics.get("test") else "valid"
        figures.append(f"<figure>{embed_png(png, 'confusion matrix')}<figcaption>{split} set</figcaption></figure>")
    if figures:
        sections.append("<h2>Training</h2>" + "".join(figures))
    if cfg.task in DECIDED_TASKS and predictor.valid_scores is not None:
        sections.append("<h2>Decision threshold</h2>" + _decision_section(predictor, plots))
    sections.append("<h2>Model</h2>" + table_html(parameter_rows(net)))
    if predictor.info:
        sections.append("<h2>Run facts</h2>" + table_html([{"fact": k, "value": v} for k, v in predictor.info.items()]))
    threshold = predictor.pipeline.targets.threshold if cfg.task in DECIDED_TASKS else None
    diagnostics = diagnostic_sections(getattr(predictor, "diagnostics", None), plots, threshold, predictor.metrics)
    for title, body in {**(extra or {}), **diagnostics}.items():  # the task's own sections first
        sections.append(f"<h2>{html.escape(title)}</h2>{body}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>polymodal report</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>"
    atomic_write_text(run / REPORT_FILE, page)
    return run / REPORT_FILE
