"""Manifests checked against a config before training (``polymodal config check --data``): each
read and validated as a fit reads its training or validation manifest, nothing decoded or
trained. The first is the training manifest (every modality needs rows to fit its preprocessing
on, the target encoder is fitted on its labels); a later one's labels must be classes of the
first's, as a validation manifest's must be of training's.

    from polymodal import check_manifests, load_config
    for check in check_manifests(load_config("config.yaml"), ["train.csv", "valid.csv"]):
        print(check.path, check.said if check.ok else check.error)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.config import Config
from polymodal.config.anomaly import anomaly_settings
from polymodal.config.modalities import modality_columns
from polymodal.data.encode import manifest_cells
from polymodal.data.manifest import WHOLE_ROW, Manifest
from polymodal.data.pipeline import DataPipeline
from polymodal.data.targets import normal_value_problems
from polymodal.errors import PATH_ERRORS, ManifestError, PolymodalError
from polymodal.utils.warn import warn_user


@dataclass(frozen=True)
class ManifestCheck:
    """What checking one manifest found.

    Attributes:
        path: the manifest, as given.
        said: what it holds, in words (rows, and the files ``data.on_error`` would skip); None
            when it has a problem.
        error: why it was refused (a :class:`~polymodal.errors.PolymodalError` naming every
            problem, or the ``OSError`` of a path that cannot be read); None when it passed.
    """

    path: Path
    said: str | None = None
    error: PolymodalError | OSError | None = None

    @property
    def ok(self) -> bool:
        """Whether the manifest passed."""
        return self.error is None


def check_manifests(config: Config, paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[ManifestCheck]:
    """Check each of ``paths`` against ``config`` as a fit reads it, every manifest and every
    problem of each (see :func:`iter_manifest_checks`); the warnings training would give (a
    constant target, a validation manifest without a modality) are given too.

    Args:
        config: the config the manifests are read with.
        paths: the manifests, the training one first; a single path is a list of one.

    Returns:
        One :class:`ManifestCheck` per path, in order.
    """
    return list(iter_manifest_checks(config, paths))


def iter_manifest_checks(config: Config,
                         paths: str | os.PathLike | Iterable[str | os.PathLike]) -> Iterator[ManifestCheck]:
    """:func:`check_manifests` one manifest at a time, each yielded as soon as it is checked. The
    first path is read as the training manifest, the later ones as validation manifests, whose
    labels are encoded with the classes fitted on the first (a class training never saw is refused
    with training's own message); when the first has a problem, their labels are not compared."""
    if isinstance(paths, (str, os.PathLike)):  # one manifest, not a list of its letters
        paths = [paths]
    targets = None  # fitted on the first manifest, as training fits them on its training manifest
    for number, path in enumerate(paths):
        try:
            said, targets = _check_manifest(config, path, targets, training=number == 0)
        except (PolymodalError, *PATH_ERRORS) as err:  # said, and the next manifest checked
            yield ManifestCheck(Path(path), error=err)
            continue
        yield ManifestCheck(Path(path), said=said)


def _check_manifest(config: Config, path: str | os.PathLike, targets: Any = None, *,
                    training: bool = True) -> tuple[str, Any]:
    """Read and validate ``path`` as a fit reads a training or validation manifest (every problem
    raised at once, and the warnings about its target columns given). The first manifest
    (``training``) is read as the training one: every modality must have rows to fit its
    preprocessing on, and the target encoder is fitted on its labels; a later one's labels are
    encoded with it (``targets``), so a class training never saw is refused with training's own
    message, and a modality it holds nowhere is warned about (validated without it).

    Returns:
        What the manifest holds, in words (rows, and the files ``data.on_error`` would skip), and
        the target encoder fitted on the first manifest (None when the config has no labels to fit,
        or the first manifest's could not be).
    """
    pipeline = DataPipeline(config)
    manifest = pipeline.read(path, require_target=bool(config.targets), training=True)
    _check_fit_rows(pipeline, manifest, training)
    pipeline.warn_about_targets(manifest)  # as training would: a continuous-looking class, a constant label
    _check_normal_values(config, manifest)
    unchecked = not training and targets is None and bool(config.targets) and config.task != "anomaly"
    if not unchecked:  # else the first manifest's labels could not be fitted: no classes to compare with
        targets = _check_labels(config, pipeline, manifest, targets)
    said = f"{len(manifest):,} rows" + ("; labels not checked against the first --data's classes (it has problems)"
                                        if unchecked else "")
    if any(m.file_based for m in config.modalities.values()):
        said += " (files found to exist, not decoded: an unreadable one is found when training reads it)"
    absent = {column: len(manifest.absent(column)[0]) for m in config.modalities.values() if m.file_based
              for column in modality_columns(m)}
    absent = {column: n for column, n in absent.items() if n}
    unreadable = {column: len(manifest.absent(column)[0]) for m in config.modalities.values() if m.kind == "tabular"
                  for column in m.columns}
    unreadable = {column: n for column, n in unreadable.items() if n}
    empty = len(manifest.absent(WHOLE_ROW)[0])
    if absent or empty:
        said += (f"; data.on_error: {config.data.on_error} skips "
                 + ", ".join([f"{n} missing file(s) of '{c}'" for c, n in absent.items()]
                             + ([f"{empty} row(s) with no modality present"] if empty else [])))
    if unreadable:
        said += ("; data.on_error: missing reads as missing "
                 + ", ".join(f"{n} value(s) of '{c}' that are no number" for c, n in unreadable.items()))
    return said, targets


def _check_fit_rows(pipeline: DataPipeline, manifest: Manifest, training: bool) -> None:
    """Training's own check that each modality has rows of a training manifest to fit its
    preprocessing on (:meth:`~polymodal.data.pipeline.DataPipeline.fit_rows`): every modality's
    problem at once. A validation manifest (not ``training``) may lack a modality in every row:
    the model is validated without it, which is warned about.

    Raises:
        ManifestError: ``training``, and a modality has no value (or no file that exists) in any row.
    """
    problems = []
    for name in pipeline.config.modality_names:
        try:
            pipeline.fit_rows(manifest, name)
        except ManifestError as err:
            if training:
                problems += err.problems
            else:
                warn_user(f"{manifest.name}: modality '{name}' has no value (or no file that exists) in any row: "
                          "training validates the model without it")
    if problems:
        raise ManifestError(problems, source=manifest.name)


def _check_labels(config: Config, pipeline: DataPipeline, manifest: Manifest, targets: Any) -> Any:
    """Fit ``pipeline``'s target encoder on ``manifest`` when ``targets`` is None (the training
    manifest), else encode ``manifest``'s labels with ``targets``, as training does with a
    validation manifest (an anomaly detector's labels only say normal or not: none is unseen).
    Only the rows training would keep are used (:func:`_kept_rows`).

    Returns:
        The fitted target encoder; None for a config without labels to fit.

    Raises:
        SchemaMismatchError: a label of a later manifest not among the first one's classes (or
            fewer than two classes in the first, for a classifier).
    """
    if not config.targets or config.task == "anomaly":
        return None
    rows = _kept_rows(config, manifest)
    if targets is None:
        return pipeline.targets.fit(manifest if len(rows) == len(manifest) else manifest.subset(rows))
    targets.encode(manifest, rows)
    return targets


def _kept_rows(config: Config, manifest: Manifest) -> np.ndarray:
    """The rows of a validated manifest that encoding keeps, as far as is known without decoding a
    file: rows holding at least one modality whose file validation found (``data.on_error``
    ``skip``: no file of the row is missing). A file that is there but does not decode is only
    found by training."""
    keep = np.zeros(len(manifest), bool)
    missing = np.zeros(len(manifest), bool)
    for modality in config.modalities.values():
        present = manifest_cells(manifest, modality, modality.file_based).present()
        for column in modality_columns(modality):
            rows = manifest.absent(column)[0]
            present[rows] = False
            missing[rows] = True
        keep |= present
    if config.data.on_error == "skip":
        keep &= ~missing
    return np.flatnonzero(keep)


def _check_normal_values(config: Config, manifest: Manifest) -> None:
    """An anomaly detector's ``anomaly.normal`` against the manifest's target column: each value the
    config sets must be one of its labels (a misspelt one, ``normal`` for ``Normal``, would make
    every row of that label an anomaly), and one of the defaults must be, when the config sets none.

    Raises:
        ManifestError: the values absent, the column's labels and the close one meant.
    """
    if config.task != "anomaly" or not config.targets:
        return
    explicit = config.anomaly is not None and "normal" in config.anomaly.model_fields_set
    problems = normal_value_problems(manifest, config.targets[0], anomaly_settings(config).normal, every=explicit)
    if problems:
        raise ManifestError(problems, source=manifest.name)
