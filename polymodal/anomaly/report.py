"""The anomaly detector's sections of ``report.html``: AUROC per anomaly label and the score
distribution of normal and anomalous rows against the flag threshold (the test rows' when the fit
had a test manifest holding anomalies, else the validation rows')."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.evaluation.html import embed_png, table_html
from polymodal.utils.io import atomic_write

SPLIT_NAMES = {"valid": "validation", "test": "test"}


def anomaly_sections(metrics: dict[str, Any], threshold: float, scored: Mapping[str, tuple[np.ndarray, np.ndarray]],
                     plots: Path) -> dict[str, str]:
    """Section title -> HTML.

    Args:
        metrics: split -> anomaly metrics (with ``per_label_auroc``).
        scored: split (``valid``, ``test``) -> (scores, labels: 1 anomalous, 0 normal, -1 unknown)
            of its rows; empty when none were kept (a reloaded detector).
    """
    body = [f"<p>Rows scoring above <b>{threshold:.4g}</b> are flagged.</p>"]
    per_label = {split: scores.get("per_label_auroc", {}) for split, scores in metrics.items()
                 if isinstance(scores, dict)}
    labels = sorted({label for values in per_label.values() for label in values})
    if labels:  # AUROC of each anomaly label against the normal rows, one column per split
        body.append(table_html([{"anomaly label": label, **{f"{split} auroc": values.get(label)
                                                            for split, values in per_label.items()}}
                                for label in labels]))
    figure = score_figure(scored, threshold, plots)
    if figure is not None:
        body.append(figure)
    return {"Anomaly detection": "".join(body)}


def plotted_split(scored: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> str | None:
    """The split whose score distribution the report shows: the test rows when they hold anomalies
    (validation usually holds normal rows only), else the validation rows; None when none was kept."""
    if "test" in scored and (scored["test"][1] == 1).any():
        return "test"
    return "valid" if "valid" in scored else None


def score_figure(scored: Mapping[str, tuple[np.ndarray, np.ndarray]], threshold: float, plots: Path) -> str | None:
    """Write ``plots/anomaly_scores.png`` (see :func:`plotted_split`); return its HTML figure."""
    from polymodal.evaluation.plots import score_histogram

    split = plotted_split(scored)
    if split is None:
        return None
    scores, y = scored[split]
    name = SPLIT_NAMES.get(split, split)
    known = y >= 0
    if known.any():
        png = score_histogram(scores[known], y[known] == 1, threshold, name)
    else:  # no target column: every row is unlabelled
        png = score_histogram(scores, np.zeros(len(scores), bool), threshold, name, normal_label="unlabelled")
    if png is None:
        return None
    plots.mkdir(parents=True, exist_ok=True)
    atomic_write(plots / "anomaly_scores.png", lambda tmp: tmp.write_bytes(png))
    caption = f"Anomaly scores of the {name} rows against the flag threshold."
    if split == "valid" and known.any() and not (y == 1).any():
        caption += (" The validation rows hold no anomalies, so only normal rows are shown; give the fit a test "
                    "manifest with anomalies to compare them.")
    return f"<figure>{embed_png(png, 'anomaly score distribution')}<figcaption>{caption}</figcaption></figure>"
