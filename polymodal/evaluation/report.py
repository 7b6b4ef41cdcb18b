"""``report.html``: a self-contained page per run (plots embedded, also saved under ``plots/``).

Sections: metrics table, learning curves, confusion matrix, model summary (parameters per
module), training facts. Other layers add sections through :func:`write_report`'s ``extra``.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from polymodal.utils.io import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from polymodal.estimator import Estimator

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.grid{display:flex;flex-wrap:wrap;gap:1rem}.grid figure{margin:0;flex:1 1 480px}
"""


def figure_png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def embed_png(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML table; floats shown with 4 significant decimals."""
    if not rows:
        return "<p>(none)</p>"
    columns = list(columns or rows[0].keys())

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if np.isfinite(value) else "-"
        return html.escape("-" if value is None else str(value))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


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


def learning_curves(history: pd.DataFrame) -> bytes | None:
    if history.empty or "epoch" not in history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "phase" in history:  # phases trained one after another (anomaly scorers), epochs counted across them
        history = history.assign(epoch=np.arange(len(history)))
    metric_cols = [c for c in history.columns if c.startswith("val_") and c != "val_loss"]
    fig, axes = plt.subplots(1, 2 if metric_cols else 1, figsize=(11 if metric_cols else 6, 4), squeeze=False)
    ax = axes[0, 0]
    for col in ("train_loss", "val_loss"):
        if col in history:
            ax.plot(history["epoch"] + 1, history[col], marker="o", label=col.replace("_", " "))
    ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax.legend()
    ax.grid(alpha=0.3)
    if metric_cols:
        ax = axes[0, 1]
        for col in metric_cols:
            if col in ("val_ece", "val_log_loss"):
                continue
            ax.plot(history["epoch"] + 1, history[col], marker="o", label=col[4:].replace("_", " "))
        ax.set(xlabel="epoch", title="Validation metrics")
        ax.legend()
        ax.grid(alpha=0.3)
    return figure_png(fig)


CONFUSION_MAX_INCHES = 16.0  # the figure grows with the classes up to this side
CONFUSION_MAX_COUNTS = 30  # classes up to which every cell shows its count
CONFUSION_MAX_LABELS = 60  # tick labels shown at most (every k-th class beyond)


def confusion_plot(matrix: Sequence[Sequence[int]], classes: Sequence[Any]) -> bytes:
    """The confusion matrix as a heat-map; with many classes the figure stops growing, the cell
    counts are left out and only every k-th class is labelled, so that it stays readable and quick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(matrix)
    n = len(classes)
    size = min(max(4.5, 0.55 * n + 2), CONFUSION_MAX_INCHES)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(values, cmap="Blues")
    ticks = range(0, n, -(-n // CONFUSION_MAX_LABELS) if n else 1)
    labels = [str(classes[k]).replace("$", r"\$") for k in ticks]  # a class name is text, never mathtext
    ax.set_xticks(ticks, labels, rotation=45 if n > 8 else 0, ha="right" if n > 8 else "center")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    top = values.max() if values.size else 0
    if n <= CONFUSION_MAX_COUNTS:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=9, color="white" if v > top / 2 else "black")
    return figure_png(fig)


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


def write_report(predictor: Estimator, run: Path, net: Any, extra: Mapping[str, str] | None = None) -> Path:
    """Write ``run/report.html`` and the plots in ``run/plots/``; return the report path.

    Args:
        predictor: a fitted MultimodalPredictor or AnomalyDetector (config, metrics, history, info).
        net: its network, summarised part by part.
        extra: further sections, title -> HTML.
    """
    plots = run / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    cfg = predictor.config
    sections = [f"<h1>polymodal run: {html.escape(run.name)}</h1>",
                f"<p>Task <b>{cfg.task}</b>, target {html.escape(str(cfg.target))}, modalities "
                + ", ".join(f"<b>{html.escape(n)}</b> ({m.kind}, {m.encoder.name})" for n, m in sorted(cfg.modalities.items()))
                + f"; fusion <b>{cfg.fusion.name}</b>"
                + ("" if cfg.task == "anomaly" else f", head <b>{cfg.head.name}</b>") + ".</p>"]
    metric_rows = []
    for split, scores in predictor.metrics.items():
        if isinstance(scores, Mapping):
            metric_rows.append({"split": split, **{k: v for k, v in scores.items() if not isinstance(v, list | dict)}})
    sections.append("<h2>Metrics</h2>" + table_html(metric_rows) + per_output_table(predictor.metrics))
    figures = []
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
        sections.append("<h2>Training</h2><div class='grid'>" + "".join(figures) + "</div>")
    sections.append("<h2>Model</h2>" + table_html(parameter_rows(net)))
    if predictor.info:
        sections.append("<h2>Run facts</h2>" + table_html([{"fact": k, "value": v} for k, v in predictor.info.items()]))
    from polymodal.evaluation.report_sections import diagnostic_sections  # imports this module

    diagnostics = diagnostic_sections(getattr(predictor, "diagnostics", None), plots)
    for title, body in {**diagnostics, **(extra or {})}.items():
        sections.append(f"<h2>{html.escape(title)}</h2>{body}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>polymodal report</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>"
    atomic_write_text(run / "report.html", page)
    return run / "report.html"
