"""Targets of a multi-task config: the main task's :class:`TargetEncoder` plus one per further task.

Encoded targets are one float32 matrix (N, sum C_t): the main task's columns first, then each
further task in sorted name order; a classification task takes one column (its class index), a
multilabel or regression task one column per target. Model outputs follow the same order,
K_t columns per task (see :class:`TaskSlot`).

Towards single-task code the encoder looks like the main task's encoder (``task``, ``columns``,
``classes``, ``decode_values``), so the main task is predicted, scored and reported as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from polymodal.config.tasks import MAIN_TASK
from polymodal.data.manifest import Manifest
from polymodal.data.targets import TargetEncoder
from polymodal.data.validation import target_cells, target_problems
from polymodal.errors import ManifestError, SchemaMismatchError
from polymodal.utils.warn import warn_user

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TaskSlot:
    """Where one task's outputs and targets sit.

    Attributes:
        name: the task's name (``main`` for the main task).
        task: ``classification``, ``multilabel`` or ``regression``.
        outputs: (start, stop) columns of the outputs.
        targets: (start, stop) columns of the target matrix.
    """

    name: str
    task: str
    outputs: tuple[int, int]
    targets: tuple[int, int]

    def take_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, self.outputs[0]:self.outputs[1]]

    def take_targets(self, target: torch.Tensor) -> torch.Tensor:
        """The task's targets: (B,) long class indices for classification, else (B, C) float."""
        part = target[:, self.targets[0]:self.targets[1]]
        return part[:, 0].round().long() if self.task == "classification" else part


class MultiTargetEncoder:
    """Encodes the main target and every further task's target.

    Args:
        main: the main task's encoder.
        extras: further tasks' encoders by name.
    """

    def __init__(self, main: TargetEncoder, extras: Mapping[str, TargetEncoder]):
        self.main = main
        self.extras = {name: extras[name] for name in sorted(extras)}

    # -- what single-task code reads: the main task ----------------------------------------------
    @property
    def task(self) -> str:
        return self.main.task

    @property
    def columns(self) -> list[str]:
        return self.main.columns

    @property
    def classes(self) -> list[Any] | None:
        return self.main.classes

    @property
    def threshold(self) -> float | None:
        """The main task's decision threshold (``decision.threshold``; further tasks take none)."""
        return self.main.threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self.main.threshold = value

    def decode_values(self, outputs: np.ndarray) -> np.ndarray:
        return self.main.decode_values(outputs)

    # -- every task ---------------------------------------------------------------------------
    @property
    def encoders(self) -> dict[str, TargetEncoder]:
        """Every task's encoder, the main one first."""
        return {MAIN_TASK: self.main, **self.extras}

    @property
    def task_outputs(self) -> dict[str, int]:
        """Output columns per task, in output order."""
        return {name: enc.n_outputs for name, enc in self.encoders.items()}

    @property
    def n_outputs(self) -> int:
        """The main task's outputs (as single-task code expects); :attr:`task_outputs` has every task's."""
        return self.main.n_outputs

    @property
    def slots(self) -> list[TaskSlot]:
        """Where each task sits in the outputs and the target matrix."""
        slots, out, col = [], 0, 0
        for name, enc in self.encoders.items():
            width = 1 if enc.task == "classification" else len(enc.columns)
            slots.append(TaskSlot(name, enc.task, (out, out + enc.n_outputs), (col, col + width)))
            out, col = out + enc.n_outputs, col + width
        return slots

    def _check(self, manifest: Manifest, training: bool = False) -> None:
        """Every further task's target columns are there and hold values it can use; an empty cell is
        a row without that label. ``training``: each column must hold a label in some row."""
        problems = []
        for name, enc in self.extras.items():
            for column in enc.columns:
                what = f"target column '{column}' of tasks.{name}"
                found = target_problems(manifest, column, enc.task, what, optional=True)
                if training and not found and target_cells(manifest.column(column), enc.task).empty.all():
                    found = [f"{what} is empty in every row of {manifest.name}: a further task learns from the rows "
                             "that hold its label (the others train the other tasks), and none does; fill it where "
                             f"known, or leave the column out of tasks.{name}"]
                problems += found
        if problems:
            raise ManifestError(problems, source=manifest.name)

    def fit(self, manifest: Manifest) -> MultiTargetEncoder:
        self._check(manifest, training=True)
        for enc in self.encoders.values():
            enc.fit(manifest)
        for name, enc in self.extras.items():
            _warn_if_few_labels(manifest, name, enc)
        return self

    def encode(self, manifest: Manifest, rows: np.ndarray | None = None) -> np.ndarray:
        """(N, sum C_t) float32: every task's encoded targets side by side; NaN where a further
        task's target cell is empty (a row without that label, which its loss and metrics leave out).

        Raises:
            ManifestError: a further task's column is missing or holds a value it cannot use
                (not numeric, infinite, not 0/1).
            SchemaMismatchError: a class label not seen in training.
        """
        self._check(manifest)
        rows = np.arange(len(manifest)) if rows is None else np.asarray(rows)
        main = self.main.encode(manifest, rows)
        parts = [main.astype(np.float32).reshape(len(main), -1)]
        for enc in self.extras.values():
            values, _, unseen = _encode_labelled(enc, manifest, rows)
            if unseen:
                raise SchemaMismatchError(enc.unseen_message(manifest, unseen))
            parts.append(values)
        return np.concatenate(parts, axis=1)

    def encode_scorable(self, manifest: Manifest, rows: np.ndarray | None = None) -> np.ndarray:
        """:meth:`encode` for an evaluation: each further task is scored on the rows holding a label
        it can use. The other rows get NaN targets, which its metrics leave out: rows without its
        label silently (its ``<task>/rows`` counts the rows scored), rows holding a value it cannot
        use (not numeric, infinite, not 0/1, a class the training never saw) with a warning naming
        the column, the values and the rows. A task whose column is absent, or that no row can
        score, is left out with a warning. The main task is encoded as :meth:`encode` does (its
        problems are errors)."""
        rows = np.arange(len(manifest)) if rows is None else np.asarray(rows)
        main = self.main.encode(manifest, rows)
        parts = [main.astype(np.float32).reshape(len(main), -1)]
        parts += [_scorable(name, enc, manifest, rows) for name, enc in self.extras.items()]
        return np.concatenate(parts, axis=1)

    def main_targets(self, encoded: np.ndarray) -> np.ndarray:
        """The main task's part of an encoded target matrix, as the main encoder would give it."""
        slot = self.slots[0]
        part = encoded[:, slot.targets[0]:slot.targets[1]]
        return part[:, 0].round().astype(np.int64) if slot.task == "classification" else part

    def get_state(self) -> dict[str, Any]:
        return {"multitask": True, "main": self.main.get_state(),
                "tasks": {name: enc.get_state() for name, enc in self.extras.items()}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> MultiTargetEncoder:
        return cls(TargetEncoder.from_state(state["main"]),
                   {name: TargetEncoder.from_state(s) for name, s in state["tasks"].items()})


FEW_LABELLED_ROWS = 10  # a further task labelled in fewer training rows (some rows without) is warned about


def _encode_labelled(encoder: TargetEncoder, manifest: Manifest, rows: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, Any]]]:
    """A further task's targets at ``rows``: (N, C_t) float32 (a class index, or one value per
    column), NaN where a cell is empty or holds a value the task cannot use (not numeric,
    infinite, not 0/1, a class the training never saw); the (N, C_t) mask of the empty cells; and
    the ``(row, label)`` of each class the training never saw."""
    frame = manifest.select(encoder.columns, rows)
    cells = [target_cells(frame[c], encoder.task) for c in encoder.columns]
    empty = np.stack([c.empty for c in cells], axis=1)
    if encoder.task == "classification":
        out = np.full((len(rows), 1), np.nan, np.float32)
        filled = np.flatnonzero(~empty[:, 0])
        codes, unseen = encoder.encode_classes(manifest, rows[filled])
        out[filled[codes >= 0], 0] = codes[codes >= 0]
        return out, empty, unseen
    values = np.stack([np.where(c.invalid, np.nan, c.numbers) for c in cells], axis=1)
    if encoder.task == "regression":
        values = (values - encoder.mean) / encoder.std
    return values.astype(np.float32), empty, []


def _scorable(name: str, encoder: TargetEncoder, manifest: Manifest, rows: np.ndarray) -> np.ndarray:
    """Further task ``name``'s targets at ``rows`` for an evaluation, (N, C_t) float32, NaN in the
    rows that cannot score it, with the warnings of
    :meth:`MultiTargetEncoder.encode_scorable`."""
    width = 1 if encoder.task == "classification" else len(encoder.columns)
    absent = [p for column in encoder.columns if column not in manifest.columns
              for p in target_problems(manifest, column, encoder.task, f"target column '{column}'")]
    if absent:
        warn_user(f"tasks.{name} is not scored on {manifest.name} (the other tasks are): {absent[0]}"
                  + (f" (and {len(absent) - 1} more problem(s))" if len(absent) > 1 else ""))
        return np.full((len(rows), width), np.nan, np.float32)
    kept = manifest if len(rows) == len(manifest) else manifest.subset(rows)  # messages name the rows scored
    values, empty, unseen = _encode_labelled(encoder, manifest, rows)
    unusable = (np.isnan(values) & ~empty).any(axis=1)  # rows holding a value the task cannot use
    bad = [p for column in encoder.columns
           for p in target_problems(kept, column, encoder.task, f"target column '{column}'", optional=True)]
    if unseen:
        bad.append(encoder.unseen_message(manifest, unseen))
    if bad:
        left_out = int(unusable.sum())
        warn_user(f"tasks.{name}: {bad[0]}" + (f" (and {len(bad) - 1} more problem(s))" if len(bad) > 1 else "")
                  + f"; {'that row is' if left_out == 1 else f'those {left_out} rows are'} left out of its metrics "
                  "(the other rows and tasks are scored)")
    partial = np.flatnonzero(empty.any(axis=1) & ~empty.all(axis=1) & ~unusable)  # some of its columns, not all
    if np.isnan(values).any(axis=1).all():
        warn_user(f"tasks.{name} is not scored on {manifest.name} (the other tasks are): no row holds "
                  f"{'a label' if width == 1 else 'every label'} of it that it can score "
                  f"(its target column{'s' if width > 1 else ''}: {', '.join(encoder.columns)})")
    elif len(partial):
        warn_user(f"tasks.{name}: {manifest.name} {kept.rows_text(partial)} {'holds' if len(partial) == 1 else 'hold'} "
                  f"some of its labels ({', '.join(encoder.columns)}) but not all: left out of its metrics, which "
                  "score a row on all of them (its training learns from every label given)")
    return values


def _warn_if_few_labels(manifest: Manifest, name: str, encoder: TargetEncoder) -> None:
    """Warn when fewer than :data:`FEW_LABELLED_ROWS` rows of a training manifest, where some rows
    lack it, hold a label of further task ``name``: its head learns from those rows alone."""
    frame = manifest.select(encoder.columns)
    labelled = int((~np.stack([target_cells(frame[c], encoder.task).empty for c in encoder.columns], axis=1)
                    ).any(axis=1).sum())
    if labelled < min(len(manifest), FEW_LABELLED_ROWS):
        columns = f"column '{encoder.columns[0]}'" if len(encoder.columns) == 1 else f"columns {encoder.columns}"
        warn_user(f"tasks.{name} has a label in only {labelled} of the {len(manifest)} training rows of "
                  f"{manifest.name} ({columns}): its head learns from those rows alone, and its metrics on so few "
                  "say little; label more rows, or leave the task out")


def classes_fitted_on(config: Any) -> str:
    """What a fitted model's classes were fitted on, as the error about a label it never saw says:
    a few-shot model's adds how it classifies new classes (not while it trains: a validation label
    it never saw is an error there, and ``train`` takes no support set)."""
    if getattr(config, "protonet", None) is not None:
        return ("training (a few-shot model: it classifies classes it never trained on given a support set of "
                "labelled examples of them: --support SUPPORT.csv, support= in Python)")
    return "training"


def build_targets(config: Any) -> TargetEncoder | MultiTargetEncoder:
    """The target encoder of a config: one task, or the main task plus ``tasks``."""
    main = TargetEncoder(config.task, config.targets)
    if not config.tasks:
        return main
    return MultiTargetEncoder(main, {name: TargetEncoder(spec.task, spec.targets) for name, spec in config.tasks.items()})


def targets_from_state(state: Mapping[str, Any]) -> TargetEncoder | MultiTargetEncoder:
    """Restore what ``get_state`` of either encoder wrote."""
    return MultiTargetEncoder.from_state(state) if state.get("multitask") else TargetEncoder.from_state(state)
