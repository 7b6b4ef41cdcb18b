"""The training phases of an anomaly scorer (Deep SVDD: ``pretrain`` then ``svdd``): ``train.epochs``
shared between them (:func:`split_epochs`, :func:`phase_epochs`), each phase's ``train`` settings
(:func:`phase_train_config`), the rows its validation loss sees (:func:`validation_rows`) and the
loop that trains them one after another (:func:`train_phases`, run by ``AnomalyDetector.fit``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from polymodal.anomaly.model import AnomalyModel
from polymodal.anomaly.scorers import build_scorer
from polymodal.data.encode import EncodedTable
from polymodal.utils.warn import warn_user

if TYPE_CHECKING:
    from polymodal.anomaly.detector import AnomalyDetector
    from polymodal.training.trainer import FitResult


def split_epochs(epochs: int, shares: list[float]) -> list[int]:
    """``epochs`` shared between training phases by their ``shares`` (fractions summing to 1),
    each rounded half up, every phase at least 1 and the last taking what is left, so that they
    sum to ``epochs`` (Deep SVDD's ``pretrain_fraction`` 0.5 of 5 epochs: 3 then 2); one each
    where ``epochs`` is fewer than the phases."""
    if epochs <= len(shares):
        return [1] * len(shares)
    counts: list[int] = []
    for k, share in enumerate(shares[:-1]):
        later = len(shares) - k - 1  # phases after this one, each at least 1
        counts.append(min(max(1, math.floor(epochs * share + 0.5 + 1e-9)), epochs - sum(counts) - later))
    return [*counts, epochs - sum(counts)]


def phase_epochs(detector: AnomalyDetector) -> list[tuple[str, int]]:
    """The scorer's training phases and the epochs of each (:func:`split_epochs` of
    ``train.epochs``: their sum, each at least 1); warns when ``train.epochs`` is too few
    for one epoch per phase."""
    scorer = build_scorer(detector.settings, len(detector.config.modalities))
    epochs = detector.config.train.epochs
    names = [phase for phase, _ in scorer.phases]
    if epochs < len(names):
        warn_user(f"train.epochs {epochs} is fewer than the {len(names)} training phases of anomaly.scorer "
                  f"'{scorer.name}' ({', then '.join(names)}): each runs one epoch, {len(names)} in all")
    return list(zip(names, split_epochs(epochs, [share for _, share in scorer.phases])))


def phase_train_config(detector: AnomalyDetector, epochs: int) -> Any:
    """``train`` for a phase of ``epochs``; ``max_minutes`` shared out as the epochs are."""
    train = detector.config.train
    phases = len(build_scorer(detector.settings, len(detector.config.modalities)).phases)
    minutes = None if train.max_minutes is None else train.max_minutes * epochs / max(train.epochs, phases)
    return train.model_copy(update={"epochs": epochs, "max_minutes": minutes})


def validation_rows(detector: AnomalyDetector, table: EncodedTable, y: np.ndarray) -> tuple[EncodedTable, np.ndarray]:
    """What the validation loss sees: every row (labelled anomalies as such) with
    ``use_labelled_anomalies``, else the normal rows only."""
    if detector.settings.use_labelled_anomalies:
        return table, np.where(y == 1, 1, 0)
    keep = y != 1
    return table.select(keep), np.zeros(int(keep.sum()), np.int64)


class PhaseRuns(NamedTuple):
    """What :func:`train_phases` returns."""

    result: FitResult  # the last phase's
    histories: list[pd.DataFrame]  # one per phase, each with its ``phase`` column
    seconds: float  # trained in this session
    before: float  # a resumed fit's earlier sessions


def train_phases(detector: AnomalyDetector, model: AnomalyModel, phases: list[tuple[str, int]],
                 train: tuple[EncodedTable, np.ndarray], valid: tuple[EncodedTable, np.ndarray], *,
                 run_dir: Path | None, resume: bool, callbacks: list[Any] | None) -> PhaseRuns:
    """Train ``model`` through its scorer's ``phases`` (:func:`phase_epochs`) on the ``train`` and
    ``valid`` (table, encoded labels) pairs, each phase starting where the scorer says (Deep SVDD's
    centre). Only the last phase writes checkpoints into ``run_dir`` and gets ``callbacks``; a
    ``resume`` runs only that phase, from its checkpoint (which holds the earlier ones' history)."""
    from polymodal.anomaly.module import AnomalyModule  # Lightning: imported for training only
    from polymodal.training.module import OptimSettings
    from polymodal.training.trainer import fit_module

    train_table, train_y = train
    optim = OptimSettings.from_config(detector.config.train)
    train_loader = detector._loader(train_table, train_y, train=True)
    histories, seconds, before = [], 0.0, 0.0  # before: a resumed fit's earlier sessions
    for k, (phase, epochs) in enumerate(phases):
        last = k == len(phases) - 1
        if resume and not last:  # only the last phase writes checkpoints: its own holds the earlier ones' work
            continue
        if not resume:  # resumed: what the phase starts from (Deep SVDD's centre) is in its checkpoint
            model.scorer.start_phase(model.net.eval(), phase,
                                     lambda: detector._loader(train_table, train_y, train=False))
        earlier = pd.concat(histories, ignore_index=True).to_dict("records") if histories else None
        module = AnomalyModule(model.train(), phase, optim, callbacks=callbacks if last else None, earlier=earlier,
                               modality_dropout=detector._dropout_rates())
        result = fit_module(module, train_loader,
                            detector._loader(*validation_rows(detector, *valid), train=False),
                            phase_train_config(detector, epochs), run_dir=run_dir if last else None,
                            monitor="loss", mode="min", resume=resume)
        if resume:  # the earlier phases' rows, from the checkpoint, and the time trained before this session
            histories = [pd.DataFrame(module.earlier)] if module.earlier else []
            before = result.earlier_seconds + sum(float(row.get("seconds", 0.0)) for row in module.earlier)
        histories.append(result.history.assign(phase=phase))
        seconds += result.seconds
    return PhaseRuns(result, histories, seconds, before)
