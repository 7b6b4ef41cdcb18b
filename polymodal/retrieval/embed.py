"""Per-row vectors of one modality from a fitted predictor: shared-space embeddings, frozen encoder
features, or the preprocessed inputs themselves (for baselines), plus their file format.

An embedding table is a DataFrame indexed by manifest row (``row``) with columns ``e0 .. e{D-1}``;
on disk it is Parquet (or CSV), with the row as a column.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from polymodal.config.align import aligned_modalities
from polymodal.config.modalities import modality_columns
from polymodal.data.embeddings import attach_cached_features
from polymodal.data.encode import EncodedTable
from polymodal.data.manifest import Manifest
from polymodal.data.pipeline import DataSource
from polymodal.errors import ManifestError, SchemaMismatchError, option
from polymodal.estimator import EMBEDDINGS
from polymodal.predictor import MultimodalPredictor
from polymodal.utils.io import write_table
from polymodal.utils.suggest import did_you_mean
from polymodal.utils.warn import warn_user

Kind = Literal["embedding", "encoder", "input"]
KINDS = ("embedding", "encoder", "input")


def modality_option() -> str:
    """How errors name the modality of embed, index build, retrieve and zero-shot: ``--modality`` in
    a command, ``modality=`` in a Python call (:func:`~polymodal.errors.option`)."""
    return option("--modality", "modality=")


def check_aligned(predictor: MultimodalPredictor, modality: str, given: str | None = None) -> None:
    """Raise unless ``modality`` has a projection into the predictor's shared space (an estimator
    that can have none, an anomaly detector, says so with what to use instead).

    Args:
        given: the option or argument that named ``modality``, as the errors begin (``--query`` in
            a command, ``query=`` in a call: :func:`~polymodal.errors.option`); default
            :func:`modality_option`. A name the model lacks is followed by the one likely meant.

    Raises:
        SchemaMismatchError: no shared space, an unknown modality or one outside the space.
    """
    predictor.require(EMBEDDINGS)
    given = modality_option() if given is None else given
    names = aligned_modalities(predictor.config)
    if not names:
        raise SchemaMismatchError("this model has no shared embedding space: its config has no 'align' section; "
                                  "train it with align: {objective: contrastive, ...}")
    if modality not in names:
        known = list(predictor.config.modalities)
        if modality not in known:
            raise SchemaMismatchError(f"{given}: this model has no modality '{modality}'{did_you_mean(modality, known)}; "
                                      f"its modalities are {known}, of which it embeds (aligns) {names}")
        raise SchemaMismatchError(f"{given}: modality '{modality}' is not aligned; this model embeds {names}")


def warn_left_out(manifest: Manifest, table: EncodedTable, modality: str, columns: list[str]) -> None:
    """Warn how many rows of ``manifest`` hold no ``modality`` in ``table`` (encoded from it) and
    are left out of what is computed from it (embeddings, queries, a gallery), and how many of those had a
    file that could not be read (listed with the skipped files); nothing when every row holds it.

    Args:
        columns: the modality's manifest column(s), as the warning names them.
    """
    embedded = int(table.modalities[modality].present.sum())
    missing = len(manifest) - embedded  # counted on the manifest: encoding drops rows once a file is skipped
    if missing == 0:
        return
    unreadable = len({s.row for s in table.skipped if s.modality == modality})
    why = f"column(s) {columns} empty" + (f", or for {unreadable} of them a file that could not be read (listed "
                                         "with the skipped files)" if unreadable else "")
    warn_user(f"{missing} of {len(manifest)} rows of {manifest.name} hold no '{modality}' ({why}): they are left "
              f"out, and the other {embedded} embedded")


def _run(predictor: MultimodalPredictor, table: EncodedTable, fn: Callable[[dict], torch.Tensor]) -> np.ndarray:
    """``fn(batch) -> (B, D)`` over an encoded table, batched, on the default device."""
    _, net = predictor.require_fitted()
    return predictor.infer(net, table, fn, (0, 0))


def encoder_instead() -> str:
    """How a message says to use a modality's encoder features instead of its inputs: the option of
    ``evaluate --retrieval`` in a command, the arguments of the calls in Python."""
    return option("--cca-features encoder", "features='encoder' in cca_baseline, kind='encoder' in embed_rows")


class NoInputFeatures(SchemaMismatchError):
    """A modality's preprocessed inputs hold no numeric arrays (a text modality's are token ids),
    so they cannot serve as ``input`` features.

    Attributes:
        modality: the modality.
    """

    def __init__(self, modality: str, arrays: list[str]):
        self.modality = modality
        super().__init__(f"modality '{modality}' has no numeric input arrays to use as 'input' features (its "
                         f"preprocessed inputs: {arrays}; a text modality's are token ids); use its 'encoder' "
                         f"features instead ({encoder_instead()})")


def input_vectors(table: EncodedTable, modality: str) -> np.ndarray:
    """The preprocessed inputs of a modality flattened to (N, F) float32 (numeric arrays only).

    Raises:
        NoInputFeatures: the modality has no numeric input arrays.
    """
    arrays = table.modalities[modality].arrays
    parts = [np.asarray(v[np.arange(len(table))]).reshape(len(table), -1).astype(np.float32)
             for k, v in sorted(arrays.items())
             if np.dtype(v.dtype).kind in "fu" and v.ndim > 1]
    if not parts:
        raise NoInputFeatures(modality, sorted(arrays))
    return np.concatenate(parts, axis=1)


def embed_rows(predictor: MultimodalPredictor, data: DataSource, modality: str, kind: Kind = "embedding",
               *, labelled: bool = False, warn: bool = True) -> pd.DataFrame:
    """One vector per manifest row that holds ``modality``; rows without it are left out, with a
    warning that counts them (:func:`warn_left_out`).

    Args:
        kind: ``embedding``: the L2-normalised shared-space embedding (needs ``align``);
            ``encoder``: the encoder's pooled features (frozen features for a frozen encoder);
            ``input``: the preprocessed input arrays, flattened.

        labelled: index a DataFrame's rows by its own index (as ``predict_proba`` does) rather
            than by row number (what metrics that look rows up by position need).
        warn: warn about the rows left out; off where a caller embeds rows another call of its
            own already warned about (the linear-CCA baseline beside the model's evaluation).

    Returns:
        (N, D) float32 values indexed by manifest row, columns ``e0 .. e{D-1}``.

    Raises:
        SchemaMismatchError: no row of ``data`` holds ``modality``; (``embedding``) the model has
            no such modality or does not align it.
        NoInputFeatures: ``input`` of a modality without numeric input arrays (text).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}; got '{kind}'")
    if kind == "embedding":
        check_aligned(predictor, modality)
    manifest, table = predictor.encode_data(data, require_target=False, modalities=[modality])
    columns = modality_columns(predictor.config.modalities[modality])
    if not table.modalities[modality].present.any():
        raise SchemaMismatchError(f"no row of {manifest.name} holds modality '{modality}' (column(s) {columns} are "
                                  f"empty or absent in all {len(manifest)} rows); nothing to embed")
    if warn:
        warn_left_out(manifest, table, modality, columns)
    table = table.select(table.modalities[modality].present)
    if kind == "input":
        values = input_vectors(table, modality)
    else:  # a frozen encoder with ``cache: true`` is served from its feature store
        table = attach_cached_features(predictor.config, predictor.net, predictor.pipeline, manifest, table)
        net = predictor.net
        if kind == "embedding":
            values = _run(predictor, table, lambda b: net.embed(b["inputs"], b["present"])[modality])
        else:
            values = _run(predictor, table, lambda b: net.encode(b["inputs"], b["present"])[modality].pooled)
    columns = [f"e{i}" for i in range(values.shape[1])]
    index = manifest.row_index(table.rows) if labelled else pd.Index(table.rows, name="row")
    return pd.DataFrame(values, index=index, columns=columns)


def save_embeddings(frame: pd.DataFrame, path: str | os.PathLike, what: str = "path") -> Path:
    """Write an embedding table (``.parquet`` or ``.csv``) atomically, the row index as a column."""
    return write_table(frame.reset_index(), path, what=what, float_format="%.9g")


def load_embeddings(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`save_embeddings` (float32 values indexed by ``row``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embedding file not found: {path}")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    columns = [c for c in frame.columns if c != "row"]
    if "row" not in frame.columns or any(not (c.startswith("e") and c[1:].isdigit()) for c in columns):
        raise ManifestError([f"{path.name}: expected columns row, e0, e1, ...; got {list(frame.columns)[:8]}"],
                            source=str(path))
    return frame.set_index("row")[columns].astype(np.float32)
