"""A fitted detector's evaluation on labelled rows (``AnomalyDetector.evaluate``): the labels the
rows are scored against (the config's target column, or another with its own normal labels), and
the metrics of scored rows (AUROC, AUPRC, FPR at 95% TPR, the flag rates at each row's threshold,
AUROC per anomaly label, and a note where one is undefined), as ``fit`` also reports them on its
validation rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from polymodal.anomaly.targets import AnomalyTargets
from polymodal.data.pipeline import DataSource
from polymodal.data.targets import normal_value_problems
from polymodal.data.validation import target_problems
from polymodal.errors import ManifestError, OptionError, SchemaMismatchError
from polymodal.metrics.anomaly import anomaly_metrics, undefined_note
from polymodal.utils.warn import warn_user

if TYPE_CHECKING:
    from polymodal.anomaly.detector import AnomalyDetector


def evaluate_detector(detector: AnomalyDetector, data: DataSource, modalities: Any = None, *, by: str | None = None,
             target: str | None = None, normal: Sequence[Any] | None = None) -> dict[str, Any]:
    """:meth:`~polymodal.anomaly.detector.AnomalyDetector.evaluate` (its arguments, return value
    and errors), once its ``support`` has been refused."""
    targets, own = evaluation_targets(detector, target, normal)
    if not own:  # the config's target column is not needed in the data: this one is
        data = detector.read_data(data, require_target=False, modalities=modalities)
        problems = target_problems(data, targets.columns[0], detector.config.task, scored=True)
        if problems:
            raise ManifestError(problems, source=data.name)
    if normal is not None:  # a misspelt label would count every row as an anomaly
        data = detector.read_data(data, require_target=own, modalities=modalities)
        for problem in normal_value_problems(data, targets.columns[0], list(normal), every=True, key="normal"):
            warn_user(problem)
    if by is not None:
        data = detector.read_grouped(data, by, modalities=modalities, require_target=own)
    manifest, table = detector.encode_data(data, require_target=own, modalities=modalities)
    labels = targets.labels(manifest, table.rows)
    scores, y = detector._scores(detector.network_table(manifest, table)), targets.encode(manifest, table.rows)
    detector.eval_scores, detector.eval_held = (scores, y), detector._held(table)
    out = labelled_metrics(detector, scores, y, labels, detector.eval_held)
    if by is not None:
        out["by"] = {by: {value: labelled_metrics(detector, scores[rows], y[rows],
                                                  [v for v, r in zip(labels, rows) if r], detector.eval_held[rows])
                          for value, rows in manifest.groups(by, table.rows,
                                                             detector.category_normalization(by)).items()}}
    return out


def evaluation_targets(detector: AnomalyDetector, target: str | None, normal: Sequence[Any] | None
                       ) -> tuple[AnomalyTargets, bool]:
    """What :func:`evaluate_detector` scores rows against: the fitted target encoder, or one of the
    column ``target`` with the ``normal`` labels; and whether the column is the config's own
    (whose presence reading the data checks).

    Raises:
        SchemaMismatchError: neither ``target`` nor a target column in the config.
        OptionError: ``normal`` is empty or a bare string.
    """
    pipeline, _ = detector.require_fitted()
    config = detector.config
    if target is None and not config.targets:
        raise SchemaMismatchError(
            "evaluate needs labels, but this anomaly config has no target column (target: null); name the "
            "column of the data that holds them: evaluate(data, target=COLUMN, normal=[...]) in Python, "
            "'polymodal evaluate RUN --data X --target COLUMN [--normal VALUE ...]' on the command line "
            f"(normal defaults to anomaly.normal {detector.settings.normal})")
    if normal is not None and (isinstance(normal, str) or not len(normal)):
        raise OptionError([f"normal must be a non-empty list of labels (e.g. ['Normal']); got {normal!r}"])
    column = config.targets[0] if target is None else target
    own = bool(config.targets) and column == config.targets[0]
    if own and normal is None:
        return pipeline.targets, True
    return AnomalyTargets([column], detector.settings.normal if normal is None else list(normal)), own


def labelled_metrics(detector: AnomalyDetector, scores: np.ndarray, y: np.ndarray, labels: list[Any],
                     held: np.ndarray, subject: str = "the evaluated rows hold", validation: bool = False
                     ) -> dict[str, Any]:
    """:func:`anomaly_metrics` of the labelled rows (the flag rates each row's at the threshold
    of the modalities it holds, ``held``: bit masks), with ``per_label_auroc``, ``rows`` and,
    where a metric is undefined, a ``note`` saying why (see :func:`undefined_note`)."""
    known = y >= 0
    out = anomaly_metrics(scores[known], y[known], detector.row_thresholds(held)[known])
    normal = known & (y == 0)
    per_label = {}
    for label in sorted({str(v) for v, k in zip(labels, y, strict=True) if k == 1}):
        rows = np.asarray([str(v) == label for v in labels]) | normal
        per_label[label] = anomaly_metrics(scores[rows], y[rows])["auroc"]
    out["per_label_auroc"] = per_label
    out["rows"] = int(len(scores))
    notes = [undefined_note(out, subject, validation)]
    if out["unscored"]:
        notes.append(f"{out['unscored']} labelled row(s) have no score ({detector.model.scorer.unscored_reason}) "
                     "and are left out of every metric")
    if any(note is not None for note in notes):
        out["note"] = "; ".join(note for note in notes if note is not None)
    return out
