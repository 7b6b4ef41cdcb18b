"""The Lightning module of anomaly training: one scorer's loss in one training phase."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from polymodal.anomaly.model import AnomalyModel
from polymodal.anomaly.scorers import OPTIONAL_STATE
from polymodal.training.module import BatchModule, OptimSettings, configure_adamw, drop_modalities
from polymodal.training.progress import EpochLines, TrainingProgressBar


class AnomalyModule(BatchModule):
    """Trains ``model.net`` with ``model.scorer.loss(..., phase)``; logs ``train_loss``/``val_loss``.

    Args:
        model: network and scorer.
        phase: the scorer's training phase (e.g. Deep SVDD's ``pretrain`` then ``svdd``).
        optim: optimiser and schedule settings (``train`` in the config).
        callbacks: extra Lightning callbacks for this phase's run (e.g. a tuner's pruning).
        earlier: the history rows of the phases before this one: they travel in its checkpoints,
            so a run resumed in its last phase (the one that writes checkpoints) still reports them.
        modality_dropout: per-modality probability of hiding a present modality from a training
            row (``train.modality_dropout``), so that the detector learns to score any subset of
            its sensors, as a row with a missing cell or modality attribution presents it; the
            validation loss sees whole rows.
    """

    def __init__(self, model: AnomalyModel, phase: str, optim: OptimSettings,
                 callbacks: list[L.Callback] | None = None, earlier: list[dict[str, Any]] | None = None,
                 modality_dropout: Mapping[str, float] | None = None):
        super().__init__()
        self.model = model
        self.phase = phase
        self.optim = optim
        self.earlier = list(earlier or [])
        self._callbacks = list(callbacks or [])
        self.modality_dropout = {k: v for k, v in (modality_dropout or {}).items() if v > 0}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["earlier_phases_history"] = self.earlier

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.earlier = list(checkpoint.get("earlier_phases_history", []))
        state, own = checkpoint.get("state_dict", {}), self.state_dict()
        for key in OPTIONAL_STATE:  # a checkpoint written by an earlier version lacks them: kept as built
            state.setdefault(f"model.{key}", own[f"model.{key}"])

    def configure_callbacks(self) -> list[L.Callback]:
        return list(self._callbacks)

    def on_train_start(self) -> None:
        """Where the fit shows its progress (a bar, or a line per epoch), a scorer trained in
        phases names the phase before its epochs (each counted within its phase):
        ``deep_svdd phase 1 of 2, pretrain: 3 epochs``."""
        phases = [name for name, _ in self.model.scorer.phases]
        trainer = self.trainer
        shown = any(isinstance(c, EpochLines | TrainingProgressBar) for c in trainer.callbacks)
        if len(phases) > 1 and shown and trainer.is_global_zero and self.phase in phases:
            epochs = trainer.max_epochs
            print(f"{self.model.scorer.name} phase {phases.index(self.phase) + 1} of {len(phases)}, {self.phase}: "
                  f"{epochs} epoch{'' if epochs == 1 else 's'}", file=sys.stderr, flush=True)

    def _step(self, batch: Mapping[str, Any], prefix: str) -> torch.Tensor:
        result = self.model.scorer.loss(self.model.net, batch, self.phase)
        self.log_epoch_mean(prefix, {f"{prefix}_loss": result.loss, **{f"{prefix}_{k}": v for k, v in result.logs.items()}},
                            batch["index"].shape[0])
        return result.loss

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        if self.modality_dropout:
            batch = {**batch, "present": drop_modalities(batch["present"], self.modality_dropout)}
        return self._step(batch, "train")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_adamw(self.model.net, self.model.net.encoders, self.optim, self.trainer)
