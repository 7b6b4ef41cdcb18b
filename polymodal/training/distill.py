"""Cross-modal distillation: a trained run teaches this one on paired training rows.

The teacher (e.g. image + audio) runs once over the training rows (and the unlabelled rows, when
the run has them) before training, in eval mode and without augmentation; its class logits and
fused representations are kept in memory (``teacher_outputs``). At each step the
:class:`DistillTerm` looks up the rows of the batch (and of the unlabelled batch) and adds the KL
divergence between the softened class distributions plus matching of the student's fused
representation, through a learned linear map, to the teacher's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from polymodal.config.transfer import DistillConfig
from polymodal.data.dataset import collate
from polymodal.errors import ManifestError, SchemaMismatchError
from polymodal.models.objectives import LossOutput
from polymodal.models.objectives.distill import DistillLoss
from polymodal.training.terms import TRANSFER_TERMS, StepContext, Term
from polymodal.training.unlabeled import view_rows
from polymodal.utils.device import run_batches


@dataclass
class TeacherOutputs:
    """The teacher's (logits (N, K), fused representation (N, D)) on the student's training-table
    rows, and on its unlabelled table's rows when it has one."""

    labeled: tuple[torch.Tensor, torch.Tensor]
    unlabeled: tuple[torch.Tensor, torch.Tensor] | None = None


def teacher_outputs(teacher: Any, manifest: Any, rows: np.ndarray, device: torch.device,
                    run: str | os.PathLike | None = None, hint: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's outputs (N, K) (a multi-task teacher's: every task's columns) and fused
    representations (N, D) on ``rows`` of a manifest.

    Args:
        teacher: a fitted :class:`~polymodal.predictor.MultimodalPredictor`.
        manifest: the student's training (or unlabelled) manifest; it must hold every teacher
            modality's column.
        rows: manifest rows of the student's encoded table, in its order.
        run: the teacher's run folder, named by the errors.
        hint: what else the user may do about a missing column (said after the error).

    Raises:
        ManifestError: a teacher modality's column is missing (named as the teacher run's).
        SchemaMismatchError: the teacher could not encode every row the student trains on.
    """
    names = teacher.config.modality_names
    subset = manifest.subset(rows)
    try:
        checked = teacher.pipeline.read(subset, require_target=False, modalities=names)
    except ManifestError as err:  # the student's config may not have the modality: say whose it is
        teacher_run = f"the teacher run {run}" if run is not None else "the teacher run"
        problems = [f"{teacher_run} (transfer.teacher): {p}" for p in err.problems]
        problems[:1] = [p + ("; distillation runs the teacher on the student's training (and unlabelled) rows, whose "
                             "manifest must hold every column the teacher's modalities read")
                        + (f"; {hint}" if hint else "") for p in problems[:1]]
        raise ManifestError(problems, source=err.source) from None
    table = teacher.pipeline.encode(checked, modalities=names)
    if len(table) != len(rows):
        raise SchemaMismatchError(f"the teacher encoded {len(table)} of the {len(rows)} rows of {manifest.name} the "
                                  "student trains on (the others failed to decode for it); distillation needs the "
                                  "teacher's view of every row")
    def forward(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        out = teacher.net.forward_train(batch["inputs"], batch["present"])
        return out.outputs, out.fused.pooled

    loader = DataLoader(teacher.pipeline.dataset(table), batch_size=256, collate_fn=collate)
    logits, fused = run_batches(teacher.net, loader, forward, device)
    return logits, fused


@TRANSFER_TERMS.register(DistillConfig)
class DistillTerm(Term):
    """KL on softened logits plus feature matching against precomputed teacher outputs.

    Args:
        teacher: the teacher's (N, K) logits and (N, D_t) fused representation per training-table
            row (looked up with the batch's ``index``), and per unlabelled-table row: the term then
            covers the unlabelled batch's rows too, their only targets.
        student_dim: width of the student's fused representation.
        classes: the main task's columns of the student's outputs.
    """

    name = "distill"

    def __init__(self, teacher: TeacherOutputs, student_dim: int, temperature: float, feature_weight: float,
                 weight: float, classes: slice):
        super().__init__(weight)
        # plain CPU tensors, not buffers: DDP would broadcast buffers from rank 0 at every step, and a
        # GPU needs only each batch's rows
        self.labeled = tuple(t.cpu() for t in teacher.labeled)
        self.unlabeled = None if teacher.unlabeled is None else tuple(t.cpu() for t in teacher.unlabeled)
        self.loss = DistillLoss(student_dim, teacher.labeled[1].shape[1], temperature, feature_weight)
        self.classes = classes

    @classmethod
    def from_config(cls, cfg: DistillConfig, *, net: Any, classes: slice, teacher: TeacherOutputs,
                    **_: Any) -> DistillTerm:
        return cls(teacher, distill_feature_dim(net), cfg.temperature, cfg.feature_weight, cfg.weight, classes)

    def forward(self, ctx: StepContext) -> LossOutput:
        out, index = ctx.out, ctx.batch["index"].cpu()
        logits, features = [out.outputs[:, self.classes]], [out.fused.pooled]
        teacher_logits, teacher_features = [self.labeled[0][index]], [self.labeled[1][index]]
        if self.unlabeled is not None and ctx.unlabeled is not None and ctx.unlabeled_out is not None:
            rows = view_rows(ctx.unlabeled)  # the rows as loaded (FixMatch may have appended views)
            out, index = ctx.unlabeled_out, ctx.unlabeled["index"].cpu()
            logits.append(out.outputs[rows, self.classes])
            features.append(out.fused.pooled[rows])
            teacher_logits.append(self.unlabeled[0][index])
            teacher_features.append(self.unlabeled[1][index])
        device = ctx.out.outputs.device
        return self.loss(torch.cat(logits), torch.cat(teacher_logits).to(device), torch.cat(features),
                         torch.cat(teacher_features).to(device))


def check_teacher(teacher: Any, classes: list[Any] | None) -> None:
    """The teacher predicts the same classes, in the same order, as the student will.

    Raises:
        SchemaMismatchError: it does not, or it is not a classification model.
    """
    if teacher.config.task != "classification":
        raise SchemaMismatchError(f"transfer.teacher must be a classification run; it does '{teacher.config.task}'")
    if list(teacher.pipeline.targets.classes) != list(classes or []):
        raise SchemaMismatchError(f"transfer.teacher predicts classes {teacher.pipeline.targets.classes}, but this "
                                  f"run's training data has {classes}")


def distill_feature_dim(net: nn.Module) -> int:
    """Width of a network's fused representation."""
    return int(net.fusion.output_dim)
