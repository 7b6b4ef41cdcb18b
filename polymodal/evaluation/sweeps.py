"""What ``polymodal evaluate --missing / --robustness`` compute and save (the CLI only prints).

Files written into the output folder: ``missing.csv``; ``robustness_curves.csv``,
``robustness_summary.csv`` and ``robustness.png``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from polymodal.estimator import ROBUSTNESS, SUBSETS
from polymodal.evaluation.data import load_eval_data
from polymodal.evaluation.plots import robustness_plot
from polymodal.evaluation.robustness import (
    RobustnessResult,
    check_corruption_map,
    check_reference,
    parse_corruptions,
    robustness_sweep,
)
from polymodal.evaluation.subsets import evaluate_subsets
from polymodal.utils.io import atomic_write

if TYPE_CHECKING:
    from polymodal.data.pipeline import DataSource
    from polymodal.estimator import Estimator
    from polymodal.predictor import MultimodalPredictor


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def curves_wide(result: RobustnessResult) -> pd.DataFrame:
    """One row per (modality, corruption): the metric at severities 0-5 (``s0``..``s5``), then every
    column of the summary (``clean``, ``worst``, ``relative_robustness``, with a reference
    ``effective_robustness`` and the reference's ``reference_clean`` and ``reference_relative_robustness``);
    no rows when the data held none of the swept modalities."""
    if result.curves.empty:
        return result.summary
    wide = result.curves.pivot(index=["modality", "corruption"], columns="severity", values=result.metric)  # NaN: kept
    wide = wide.reindex(result.summary.set_index(["modality", "corruption"]).index)  # in the sweep's order
    wide.columns = [f"s{int(c)}" for c in wide.columns]
    return wide.join(result.summary.set_index(["modality", "corruption"])).reset_index()


def run_evaluations(predictor: Estimator, data: DataSource, out: Path, *, missing: bool, robustness: bool,
                    corruptions: Mapping[str, str | Sequence[str]] | Sequence[str] | None = None,
                    reference: MultimodalPredictor | None = None, max_rows: int | None = None,
                    seed: int = 0, checked: bool = False) -> dict[str, Any]:
    """Run the requested evaluations on one encoding of ``data`` and save their tables in ``out``.

    Args:
        corruptions: specs (``"image:blur"``, named ``corruptions=`` in errors) or ``{modality:
            [corruption, ...]}``; None: every corruption of every modality.
        reference: checked against ``data`` (task, swept modalities, labels) before anything is evaluated.
        checked: the caller parsed ``corruptions`` into a mapping and checked ``reference`` against
            ``data`` already (the command line does, before its plain evaluation): not done again.

    Returns:
        ``{"sweep_rows": rows swept, "missing": [rows], "robustness": {"metric", "table": [wide rows],
        "curves": [rows]}}`` for the evaluations asked for; the ``robustness_summary.csv`` written
        and the table are :func:`curves_wide`.
    """
    if missing:
        predictor.require(SUBSETS)
    if robustness:
        predictor.require(ROBUSTNESS)
        if not checked:
            corruptions = check_corruption_map(corruptions, predictor) if isinstance(corruptions, Mapping) else \
                parse_corruptions(corruptions, predictor)
            if reference is not None:  # a wrong one: refused before the subsets and either sweep run
                check_reference(predictor, reference, corruptions, data)
    encoded = load_eval_data(predictor, data, require_target=True, max_rows=max_rows, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"sweep_rows": len(encoded)}  # fewer than the manifest's with max_rows
    if missing:
        table = evaluate_subsets(predictor, encoded)
        atomic_write(out / "missing.csv", lambda tmp: table.to_csv(tmp, index=False))
        result["missing"] = _records(table)
    if robustness:
        sweep = robustness_sweep(predictor, encoded, corruptions, seed=seed, reference=reference, progress=True)
        wide = curves_wide(sweep)
        atomic_write(out / "robustness_curves.csv", lambda tmp: sweep.curves.to_csv(tmp, index=False))
        atomic_write(out / "robustness_summary.csv", lambda tmp: wide.to_csv(tmp, index=False))
        if not sweep.curves.empty:
            png = robustness_plot(sweep.curves, sweep.metric, sweep.chance)
            atomic_write(out / "robustness.png", lambda tmp: tmp.write_bytes(png))
        result["robustness"] = {"metric": sweep.metric, "rows": sweep.rows, "chance": sweep.chance, "table": _records(wide),
                                "curves": _records(sweep.curves)}
    return result
