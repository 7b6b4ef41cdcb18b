"""Metrics with only a subset of the modalities present: every non-empty subset by default.

A modality outside the subset is hidden through the model's missing path, exactly as if its
cells were empty (see :mod:`polymodal.evaluation.coalitions`), so the table answers "how good
is this model when only these sensors work?".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from polymodal.errors import SchemaMismatchError
from polymodal.evaluation.coalitions import coalition_outputs
from polymodal.evaluation.data import EvalData, check_max_rows, load_eval_data
from polymodal.metrics.tasks import flat_metrics
from polymodal.utils.coalitions import Coalition, all_subsets, held_masks, mask_of, subset_label
from polymodal.utils.warn import warn_user

if TYPE_CHECKING:
    from polymodal.data.pipeline import DataSource
    from polymodal.estimator import Estimator


def evaluate_subsets(predictor: Estimator, data: DataSource | EvalData,
                     subsets: str | Sequence[str | Iterable[str]] | None = None, *, max_rows: int | None = None,
                     seed: int = 0) -> pd.DataFrame:
    """One row of metrics per modality subset.

    Args:
        data: a labelled manifest (or an encoded :class:`EvalData`).
        subsets: the subsets to evaluate (default: every non-empty one, largest first); a bare
            modality name is the subset of that modality alone, and a single name given instead of
            a list (``"audio"``) is that one subset.
        max_rows: evaluate a seeded random sample of at most this many rows (at least 1).

    Returns:
        Columns ``modalities`` (e.g. ``audio+image``), ``n_modalities``, ``rows_with_any`` (rows
        holding at least one of them), then the task metrics (:func:`~polymodal.metrics.tasks.flat_metrics`:
        with several regression targets, each target's own as ``rmse_per_target.<target>``...).

    Raises:
        SchemaMismatchError: a subset names an unknown modality or is empty.
        OptionError: ``max_rows`` is below 1.
    """
    check_max_rows(max_rows)
    if isinstance(subsets, str):  # one modality's subset, not one subset per letter
        subsets = [subsets]
    names = predictor.config.modality_names
    chosen: list[Coalition] = all_subsets(names) if subsets is None else [
        frozenset([s] if isinstance(s, str) else s) for s in subsets]  # a bare name: that modality alone
    for subset in chosen:
        unknown = sorted(subset - set(names))
        if unknown or not subset:
            raise SchemaMismatchError(f"modality subset {sorted(subset)} must be non-empty and use this model's "
                                      f"modalities {names}; unknown: {unknown}")
    if not isinstance(data, EvalData):
        data = load_eval_data(predictor, data, require_target=True, max_rows=max_rows, seed=seed)
    if data.targets is None:
        raise SchemaMismatchError("evaluating modality subsets needs labelled data")
    outputs = coalition_outputs(predictor, data.features, chosen)
    ordered = sorted(names)  # bit i: the i-th modality in sorted order
    row_masks = held_masks(np.stack([data.table.modalities[n].present for n in ordered], axis=1))  # (N,)
    rows, unheld = [], []
    for subset, out in zip(chosen, outputs):
        held = sum(data.table.modalities[n].present for n in subset) > 0
        # each row scored with the subset's modalities it holds (an anomaly detector flags it at their threshold)
        metrics = flat_metrics(predictor.score_outputs(out, data.targets, row_masks & mask_of(subset, ordered)))
        if not held.any():  # every row predicted from nothing: no measure of these modalities
            metrics = dict.fromkeys(metrics)
            unheld.append(subset_label(subset))
        rows.append({"modalities": subset_label(subset), "n_modalities": len(subset),
                     "rows_with_any": int(held.sum()), **metrics})
    if unheld:
        warn_user(f"no row holds any of {', '.join(unheld)}: their metrics are left empty (they would score "
                  "predictions made with no modality present)")
    return pd.DataFrame(rows)
