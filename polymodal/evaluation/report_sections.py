"""The report sections drawn from a run's diagnostics (see :mod:`polymodal.evaluation.diagnostics`)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.config.task_metrics import split_metric
from polymodal.evaluation.explain_page import caveats_html, metric_scope, other_outputs
from polymodal.evaluation.html import embed_png, table_html
from polymodal.evaluation.plots import importance_plot, reliability_plot, robustness_plot
from polymodal.metrics.tasks import MIXED_UNITS
from polymodal.utils.io import atomic_write
from polymodal.utils.shapley import EXACT_MAX_MODALITIES

SWEPT = {"r2": " (R²; with several targets the mean of theirs, which is unit-free)"}  # a swept metric in words


def _figure(png: bytes, plots: Path, name: str, alt: str) -> str:
    atomic_write(plots / f"{name}.png", lambda tmp: tmp.write_bytes(png))
    return f"<figure>{embed_png(png, alt)}</figure>"


def _where(diagnostics: Mapping[str, Any]) -> str:
    return f"<p>On {diagnostics['rows']} rows of the {html.escape(str(diagnostics['split']))} set.</p>"


def _said(threshold: Any) -> str:
    """A decision threshold in words: ``0.6864``, ``[0.4, 0.55]`` (per label), or ``none`` (argmax / 0.5)."""
    if threshold is None:
        return "none"
    return f"[{', '.join(f'{t:.4g}' for t in threshold)}]" if isinstance(threshold, list) else f"{threshold:.4g}"


def stale_threshold_note(diagnostics: Mapping[str, Any], threshold: Any) -> str:
    """A paragraph for the sections whose figures call classes at the decision threshold when
    the diagnostics were computed at another one than the model's now (``polymodal threshold``
    changed it since; diagnostics saved before they recorded it are taken as current)."""
    if "threshold" not in diagnostics or diagnostics["threshold"] == threshold:
        return ""
    return (f"<p><b>Computed at the earlier decision threshold {_said(diagnostics['threshold'])}</b>: the "
            f"model's is {_said(threshold)} since (<code>polymodal threshold</code>), so the figures below that "
            "call classes (accuracy, F1, their drops) are the earlier threshold's; probabilities, AUROC and "
            "calibration do not depend on it. <code>polymodal evaluate RUN --data X --missing --robustness</code> "
            "and <code>polymodal explain RUN --data X</code> compute them at the new one.</p>")


CCA_FEATURES = {  # a baseline row's features (polymodal.retrieval.search.baseline_features) in words
    "input": "preprocessed inputs",
    "encoder (frozen pretrained)": "frozen pretrained encoder features",
    "encoder (trained by this run)": "this run's own trained encoder features (so not an independent baseline)",
}


def _cca_features(rows: list[Mapping[str, Any]]) -> str:
    """What the report's linear-CCA rows were fitted on, in words (a report written before rows
    named their features: the encoders' features, the default then)."""
    used = list(dict.fromkeys(r.get("features") for r in rows if r.get("method") == "linear_cca"))
    if not used or used == [None]:
        return "the encoders' features (for encoders the run trained, its own features)"
    return "; ".join(CCA_FEATURES.get(str(u), str(u)) for u in used)


def _retrieval_section(diagnostics: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> str:
    """The model beside linear CCA, per direction, saying which rows were scored: a sample of
    ``report.rows`` rows is labelled as such, since Recall@K and mAP depend on the gallery's size
    and then differ from the metrics table and ``evaluate --retrieval`` on every row."""
    rows, split = diagnostics["rows"], html.escape(str(diagnostics["split"]))
    total = ((metrics or {}).get(diagnostics["split"]) or {}).get("rows")
    if total is not None and rows < total:
        where = (f"<p><b>On a seeded sample of {rows} of the {total} {split} rows</b> (<code>report.rows</code>, which "
                 "bounds the report's time: every query is compared with every gallery row). Recall@K and mAP depend "
                 "on the gallery's size (fewer rows, fewer distractors), so these figures differ from the metrics "
                 f"table above and from <code>polymodal evaluate RUN --data X --retrieval</code>, which score all "
                 f"{total}; set <code>report.rows</code> to {total} or more to score them all here.</p>")
    elif total is not None:
        where = f"<p>On all {rows} rows of the {split} set, as the metrics table above.</p>"
    else:
        where = _where(diagnostics)
    table = diagnostics["retrieval"]
    columns = list(dict.fromkeys(key for row in table for key in row))  # a baseline's 'features' too
    return (where + "<p>Each direction <code>query-&gt;gallery</code> of the learned shared space, and of the "
            f"baseline: linear CCA fitted on {diagnostics.get('cca_train_rows', 'the')} training rows' "
            f"{html.escape(_cca_features(table))} (the <code>features</code> column; other data or features: "
            "<code>polymodal evaluate RUN --data X --retrieval [--cca-features auto|encoder|input]</code>).</p>"
            + table_html(table, columns))


def diagnostic_sections(diagnostics: Mapping[str, Any] | None, plots: Path, threshold: Any = None,
                        metrics: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``{title: html}`` for every diagnostic the run has (none for an empty dict).

    Args:
        threshold: the model's decision threshold now, against which the one the diagnostics were
            computed at is checked (:func:`stale_threshold_note`).
        metrics: the run's metrics by split (their row counts say whether a retrieval table
            scored a sample of its split's rows).
    """
    if not diagnostics:
        return {}
    if "error" in diagnostics:
        return {"Diagnostics": f"<p>The diagnostics failed after training ({html.escape(diagnostics['error'])}); "
                               "<code>polymodal evaluate RUN --data X --missing --robustness</code> and "
                               "<code>polymodal explain RUN --data X</code> compute them on any manifest.</p>"}
    metric = diagnostics.get("metric")
    where = _where(diagnostics)
    called = where + stale_threshold_note(diagnostics, threshold)  # the sections whose figures call classes
    sections: dict[str, str] = {}
    if diagnostics.get("retrieval"):
        sections["Retrieval beside linear CCA"] = _retrieval_section(diagnostics, metrics)
    if diagnostics.get("subsets"):
        per_target = any(split_metric(column)[1] is not None for column in diagnostics["subsets"][0])
        sections["Modality subsets"] = (
            called + "<p>Each row hides the other modalities through the model's missing-modality path, as if "
            "their cells were empty (full table for any data: <code>polymodal evaluate RUN --data X "
            "--missing</code>)."
            + (f" Here {html.escape(MIXED_UNITS)}." if per_target else "")
            + "</p>" + table_html(diagnostics["subsets"]))
    if diagnostics.get("importance"):
        importance = pd.DataFrame(diagnostics["importance"])
        body = _figure(importance_plot(importance, metric), plots, "modality_importance", "modality importance")
        body += table_html(importance.drop(columns="explained", errors="ignore").to_dict("records"))  # said above
        if diagnostics.get("interactions"):
            body += "<p>Pairwise Shapley interactions (positive: complementary, negative: redundant):</p>"
            body += table_html(diagnostics["interactions"])
        how = "Exact" if len(importance) <= EXACT_MAX_MODALITIES else "Sampled (permutation estimates of)"
        quantity = diagnostics.get("explained") or importance.get("explained", pd.Series(["predicted score"])).iloc[0]
        task, outputs = diagnostics.get("task") or "", diagnostics.get("outputs")  # None: a report saved before them
        anomaly = task == "anomaly"
        scored = metric_scope(task, outputs)
        sections["Modality importance"] = (
            called + f"<p>{how} Shapley values over modalities of the <b>{html.escape(str(quantity))}</b>"
            + (" against the normal validation rows (a row's values add up to its score minus their mean score)"
               if anomaly else "")
            + (f"; the <code>{html.escape(str(metric))}_*</code> columns score {scored}"
               if metric is not None and f"{metric}_drop" in importance else "")
            + (" (per-sample values, within-modality heat-maps and other outputs: <code>polymodal explain RUN "
               "--data X [--output NAME]</code>)." if other_outputs(task, outputs) else " (per-sample values and "
               "within-modality heat-maps: <code>polymodal explain RUN --data X</code>).")
            + caveats_html(diagnostics.get("importance_caveats") or []) + "</p>" + body)
    if diagnostics.get("by_group"):
        groups = diagnostics["by_group"]
        sections["Which sensor"] = (
            where + f"<p>The mean Shapley value of each modality per {html.escape(next(iter(groups[0])))} (positive: "
            "it pushed the rows' scores above normal) and the share of the rows where it is the largest "
            "(<i>first</i>): the modality each kind of anomaly shows in.</p>"
            + table_html(groups))
    robustness = diagnostics.get("robustness")
    if robustness and robustness.get("curves"):
        curves = pd.DataFrame(robustness["curves"])
        body = _figure(robustness_plot(curves, robustness["metric"], robustness.get("chance")), plots, "robustness", "robustness curves")
        swept = robustness["metric"]
        sections["Robustness"] = (
            called + f"<p>The <b>{html.escape(swept)}</b>{html.escape(SWEPT.get(swept, ''))} with one modality "
            "corrupted at a time, severities 0-5; <code>clean</code> and <code>worst</code> are its values, "
            "<code>relative_robustness</code> the area under the curve (every corruption: <code>polymodal "
            "evaluate RUN --data X --robustness</code>).</p>" + _corruption_levels(curves) + body
            + table_html(robustness["summary"]))
    calibration = diagnostics.get("calibration")
    if calibration and calibration["ece"] is None:
        sections["Calibration"] = where + f"<p>{html.escape(calibration['note'])}.</p>"
    elif calibration:
        body = _figure(reliability_plot(calibration["bins"], calibration["ece"]), plots, "reliability", "reliability")
        sections["Calibration"] = where + f"<p>Expected calibration error {calibration['ece'] * 100:.2f}%.</p>" + body
    complexity = diagnostics.get("complexity")
    if complexity:
        rows = [{"fact": k, "value": v} for k, v in complexity.items()]
        sections["Complexity"] = ("<p>Latency: the network's forward pass on the inference device, preprocessing "
                                  "excluded (the fastest of 5 timed passes). Peak memory: the training process's peak.</p>"
                                  + table_html(rows))
    return sections


def _corruption_levels(curves: pd.DataFrame) -> str:
    """What each swept corruption does at severities 1-5: ``image: gaussian_noise (noise std (0-1
    scale) 0.08 to 0.38)``, from the curves' ``level`` and ``unit`` columns (none: nothing said)."""
    if not {"level", "unit"} <= set(curves.columns):
        return ""
    said = []
    for (modality, corruption), part in curves[curves["severity"] > 0].groupby(["modality", "corruption"], sort=False):
        levels = part.sort_values("severity")["level"].tolist()
        said.append(f"{html.escape(str(modality))}: <code>{html.escape(str(corruption))}</code> "
                    f"({html.escape(str(part['unit'].iloc[0]))} {levels[0]:g} to {levels[-1]:g})")
    return f"<p>Severities 1 to 5: {'; '.join(said)}.</p>" if said else ""

