"""Reading and encoding a manifest for an evaluation (optionally a seeded sample of its rows),
batching it for the network, and turning outputs into the scores attributions explain."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from polymodal.data.dataset import inference_loader
from polymodal.data.encode import EncodedTable
from polymodal.data.manifest import Manifest
from polymodal.errors import OptionError
from polymodal.utils.device import move_to
from polymodal.utils.scores import ANOMALY_SCORE, probabilities

if TYPE_CHECKING:
    from polymodal.data.pipeline import DataSource
    from polymodal.estimator import Estimator

BATCH = 64


@dataclass
class EvalData:
    """An encoded manifest ready for evaluation.

    Attributes:
        manifest: the rows evaluated (a sample of the source when ``max_rows`` cut it).
        table: the encoded rows (rows that failed to decode are dropped, as in ``evaluate``).
        targets: encoded targets aligned with ``table``, or None without labels.
        sampled: (len(manifest),) the source manifest's row number of each manifest row.
        features: ``table`` as the network reads it: a cached frozen encoder's stored outputs in
            place of its inputs (:meth:`~polymodal.estimator.Estimator.network_table`), so that
            analyses running the network many times on these rows (subsets, Shapley values,
            calibration, the uncorrupted modalities of a robustness sweep) never run that encoder
            again; ``table`` itself when no encoder is cached. What needs the inputs (gradients
            inside a modality, the forward-pass latency, a corruption) reads ``table``.
    """

    manifest: Manifest
    table: EncodedTable
    targets: np.ndarray | None
    sampled: np.ndarray
    features: EncodedTable | None = None

    def __post_init__(self) -> None:
        if self.features is None:
            self.features = self.table

    def __len__(self) -> int:
        return len(self.table)

    @property
    def source_rows(self) -> np.ndarray:
        """(N,) the source manifest's row number of each table row."""
        return self.sampled[self.table.rows]


def check_max_rows(max_rows: int | None, option: str = "max_rows") -> None:
    """Refuse a row sample that is not a whole number of at least 1 row (None: every row).

    Raises:
        OptionError: ``max_rows`` is below 1 or not an integer, named as ``option``.
    """
    if max_rows is None:
        return
    if isinstance(max_rows, bool) or not isinstance(max_rows, numbers.Integral) or max_rows < 1:
        raise OptionError([f"{option}: the number of rows to sample must be an integer of at least 1 (None: every "
                           f"row); got {max_rows!r}"])


def sample_rows(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """Sorted row numbers: all ``n`` rows, or a seeded random ``max_rows`` of them."""
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


def load_eval_data(predictor: Estimator, data: DataSource, *, require_target: bool | None,
                   max_rows: int | None = None, seed: int = 0) -> EvalData:
    """Read, validate, optionally sample and encode ``data`` with the predictor's pipeline.

    Args:
        require_target: True: the manifest must hold the target column(s); None: encode the
            targets when the manifest has their columns.
        max_rows: encode at most this many rows (a seeded random sample).
    """
    pipeline, _ = predictor.require_fitted()
    if require_target is None:
        data = pipeline.read_raw(data)
        columns = predictor.config.targets
        require_target = bool(columns) and all(c in data.frame.columns for c in columns)
    manifest = pipeline.read(data, require_target=require_target)
    chosen = sample_rows(len(manifest), max_rows, seed)
    if len(chosen) < len(manifest):
        manifest = manifest.subset(chosen)
    table = pipeline.encode(manifest, progress=False, modalities=pipeline.check_modalities(None, manifest))
    targets = pipeline.encode_targets(manifest, table, scorable=True) if require_target else None
    return EvalData(manifest, table, targets, chosen, predictor.network_table(manifest, table, in_memory=True))


def batches(predictor: Estimator, table: EncodedTable, batch_size: int = BATCH) -> Iterator[dict[str, Any]]:
    """Evaluation batches of ``table`` (no augmentation, table order) on the inference device."""
    pipeline, _ = predictor.require_fitted()
    loader = inference_loader(pipeline.dataset(table), batch_size)
    device = predictor.device
    for batch in loader:
        yield move_to(batch, device)


def to_scores(predictor: Estimator, outputs: np.ndarray) -> np.ndarray:
    """Raw outputs (..., K) -> what attributions explain: class probabilities (classification:
    softmax; multilabel: sigmoid), regression values on the target's scale or anomaly scores."""
    task, outputs = predictor.config.task, outputs.astype(np.float64)
    if task == "anomaly":
        return outputs
    if task == "regression":
        return predictor.pipeline.targets.decode_values(outputs)
    return probabilities(task, outputs)


def output_names(predictor: Estimator) -> list[Any]:
    """One name per output: class labels, multilabel columns, regression targets or an anomaly
    detector's ``score``."""
    if predictor.config.task == "anomaly":
        return [ANOMALY_SCORE]
    if predictor.config.task == "classification":
        return list(predictor.pipeline.targets.classes)
    return list(predictor.config.targets)
