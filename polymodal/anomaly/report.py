"""The anomaly detector's sections of ``report.html``: AUROC per anomaly label and the score
distribution of normal and anomalous validation rows against the flag threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from polymodal.evaluation.report import embed_png, table_html
from polymodal.utils.io import atomic_write


def anomaly_sections(metrics: dict[str, Any], threshold: float, valid_scores: np.ndarray | None,
                     valid_y: np.ndarray | None, plots: Path) -> dict[str, str]:
    """Section title -> HTML.

    Args:
        metrics: split -> anomaly metrics (with ``per_label_auroc``).
        valid_scores / valid_y: scores and labels (1 anomalous, 0 normal, -1 unknown) of the
            validation rows, or None (a reloaded detector has not kept them).
    """
    body = [f"<p>Rows scoring above <b>{threshold:.4g}</b> are flagged.</p>"]
    per_label = {split: scores.get("per_label_auroc", {}) for split, scores in metrics.items()
                 if isinstance(scores, dict)}
    labels = sorted({label for values in per_label.values() for label in values})
    if labels:  # AUROC of each anomaly label against the normal rows, one column per split
        body.append(table_html([{"anomaly label": label, **{f"{split} auroc": values.get(label)
                                                            for split, values in per_label.items()}}
                                for label in labels]))
    if valid_scores is not None and valid_y is not None:
        from polymodal.evaluation.plots import score_histogram

        known = valid_y >= 0
        if known.any():
            png = score_histogram(valid_scores[known], valid_y[known] == 1, threshold, "validation")
        else:  # no target column: every row is unlabelled
            png = score_histogram(valid_scores, np.zeros(len(valid_scores), bool), threshold, "validation",
                                  normal_label="unlabelled")
        if png is not None:
            plots.mkdir(parents=True, exist_ok=True)
            atomic_write(plots / "anomaly_scores.png", lambda tmp: tmp.write_bytes(png))
            body.append(f"<figure>{embed_png(png, 'anomaly score distribution')}</figure>")
    return {"Anomaly detection": "".join(body)}
