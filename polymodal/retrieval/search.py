"""Cross-modal retrieval with a fitted predictor: build a gallery index from one modality,
query it from another, and score a labelled manifest (Recall@K, mAP, median rank), beside the
linear-CCA baseline on frozen features.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import permutations
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from polymodal.config.align import aligned_modalities
from polymodal.data.manifest import read_manifest
from polymodal.data.pipeline import DataSource
from polymodal.errors import OptionError, SchemaMismatchError
from polymodal.evaluation.cca_baseline import LinearCca
from polymodal.evaluation.retrieval import DEFAULT_KS, cross_modal_metrics
from polymodal.predictor import MultimodalPredictor
from polymodal.retrieval.embed import Kind, check_aligned, embed_rows
from polymodal.retrieval.index import EmbeddingIndex, file_digest
from polymodal.runfolder import MODEL_FILE

By = Literal["auto", "pair", "label"]


def model_digest(run: str | os.PathLike | None) -> str | None:
    """The content hash of a run's model file, or None without a run folder."""
    if run is None or not (Path(run) / MODEL_FILE).is_file():
        return None
    return file_digest(Path(run) / MODEL_FILE)


def build_index(predictor: MultimodalPredictor, data: DataSource, modality: str, *, id_column: str | None = None,
                run: str | os.PathLike | None = None) -> EmbeddingIndex:
    """Embed every row of ``data`` holding ``modality`` and index the embeddings.

    Args:
        id_column: the manifest column naming each item (default: the manifest row number).
        run: the run folder the predictor came from (its model digest is stored, so queries
            from another model are refused).
    """
    frame = embed_rows(predictor, data, modality)
    if len(frame) == 0:
        raise SchemaMismatchError(f"no row of the data holds modality '{modality}'; nothing to index")
    ids: Sequence[Any] = frame.index.tolist()
    if id_column is not None:
        manifest = read_manifest(data, text_columns=[id_column])  # ids '007' stay '007'
        if id_column not in manifest.frame.columns:
            raise SchemaMismatchError(f"id column '{id_column}' is not in {manifest.name} "
                                      f"(columns: {list(manifest.frame.columns)})")
        ids = manifest.frame[id_column].iloc[frame.index.to_numpy()].tolist()
    meta = {"modality": modality, "model": model_digest(run), "id_column": id_column}
    return EmbeddingIndex.build(frame.to_numpy(), ids, meta)


def retrieve(predictor: MultimodalPredictor, index: EmbeddingIndex, queries: DataSource, modality: str, k: int = 10,
             run: str | os.PathLike | None = None) -> pd.DataFrame:
    """The ``k`` best gallery items for every query row holding ``modality``.

    Returns:
        One line per (query, rank): ``query`` (manifest row, or a DataFrame's own index), ``rank``
        (1 = best), ``id``, ``score``.

    Raises:
        SchemaMismatchError: the index was built by another model or has another width.
    """
    check_aligned(predictor, modality)
    built_with, using = index.meta.get("model"), model_digest(run)
    if built_with is not None and using is not None and built_with != using:
        raise SchemaMismatchError(f"the index was built with another model (digest {built_with}); this run's model "
                                  f"is {using}: rebuild the index with 'polymodal index build'")
    frame = embed_rows(predictor, queries, modality, labelled=True)
    if len(frame) == 0:
        raise SchemaMismatchError(f"no query row holds modality '{modality}'")
    return index.search_frame(frame.to_numpy(), k, query_ids=frame.index.tolist())


def _keys(data: DataSource, by: By, labels: str | None, predictor: MultimodalPredictor) -> tuple[np.ndarray, str]:
    """Per manifest row, what decides relevance: the row itself, or its label."""
    column = labels if labels is not None else (predictor.config.targets[0] if predictor.config.targets else None)
    frame = read_manifest(data, label_columns=[column] if column is not None else []).frame
    if by == "auto":
        by = "label" if column is not None and column in frame.columns else "pair"
    if by == "pair":
        return np.arange(len(frame)), "pair"
    if column is None or column not in frame.columns:
        raise SchemaMismatchError(f"label-level retrieval needs a label column in the data; got "
                                  f"{column!r}, columns {list(frame.columns)}")
    return frame[column].astype(str).to_numpy(), "label"


def directions(predictor: MultimodalPredictor, query: str | None, gallery: str | None) -> list[tuple[str, str]]:
    """The (query, gallery) modality pairs to score: the given one, or every ordered pair."""
    names = aligned_modalities(predictor.config)
    if not names:  # the same message as embedding from such a model
        check_aligned(predictor, query or gallery or "")
    if query is not None and gallery is not None:
        for name in (query, gallery):
            check_aligned(predictor, name)
        return [(query, gallery)]
    chosen = [(q, g) for q, g in permutations(names, 2) if (query is None or q == query) and (gallery is None or g == gallery)]
    if not chosen:
        raise SchemaMismatchError(f"no direction matches query={query!r}, gallery={gallery!r}; aligned modalities: {names}")
    return chosen


def evaluate_retrieval(predictor: MultimodalPredictor, data: DataSource, query: str | None = None,
                       gallery: str | None = None, *, by: By = "auto", labels: str | None = None,
                       ks: Sequence[int] = DEFAULT_KS) -> dict[str, dict[str, Any]]:
    """Retrieval metrics of a manifest's rows against each other, per direction ``query->gallery``.

    Queries are the rows holding the query modality, the gallery the rows holding the gallery
    modality. A hit is the query's own row (``by: pair``) or a row with the same label
    (``by: label``; ``labels`` names the column, default the config's target); ``auto`` uses
    labels when the data has that column.
    """
    keys, how = _keys(data, by, labels, predictor)
    results = {}
    cache: dict[str, pd.DataFrame] = {}
    for q, g in directions(predictor, query, gallery):
        for name in (q, g):
            if name not in cache:
                cache[name] = embed_rows(predictor, data, name)
        qf, gf = cache[q], cache[g]
        scores = cross_modal_metrics(qf.to_numpy(), gf.to_numpy(), keys[qf.index.to_numpy()], keys[gf.index.to_numpy()], ks)
        results[f"{q}->{g}"] = {"hits": how, **scores}
    return results


def cca_baseline(predictor: MultimodalPredictor, train: DataSource, data: DataSource, query: str | None = None,
                 gallery: str | None = None, *, features: Kind = "encoder", by: By = "auto", labels: str | None = None,
                 dim: int = 64, pca: int | None = 256, ks: Sequence[int] = DEFAULT_KS) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_retrieval` for linear CCA fitted on ``train``'s paired rows.

    Args:
        features: ``encoder`` (the encoders' pooled outputs: the frozen features of frozen
            pretrained encoders) or ``input`` (the preprocessed inputs, flattened).
        dim, pca: see :class:`~polymodal.evaluation.cca_baseline.LinearCca`.
    """
    if features not in ("encoder", "input"):
        raise OptionError([f"--cca-features: the CCA baseline runs on 'encoder' or 'input' features; got {features!r}"])
    keys, how = _keys(data, by, labels, predictor)
    train_features: dict[str, pd.DataFrame] = {}
    test_features: dict[str, pd.DataFrame] = {}
    models: dict[tuple[str, str], LinearCca] = {}
    results = {}
    for q, g in directions(predictor, query, gallery):
        for name in (q, g):
            if name not in train_features:
                train_features[name] = embed_rows(predictor, train, name, features)
                test_features[name] = embed_rows(predictor, data, name, features)
        a, b = sorted((q, g))
        if (a, b) not in models:  # one fit serves both directions
            paired = train_features[a].index.intersection(train_features[b].index)
            models[(a, b)] = LinearCca(dim, pca).fit(train_features[a].loc[paired].to_numpy(),
                                                    train_features[b].loc[paired].to_numpy())
        model = models[(a, b)]
        qf, gf = test_features[q], test_features[g]
        scores = cross_modal_metrics(model.transform(qf.to_numpy(), int(q == b)), model.transform(gf.to_numpy(), int(g == b)),
                                     keys[qf.index.to_numpy()], keys[gf.index.to_numpy()], ks)
        results[f"{q}->{g}"] = {"hits": how, **scores}
    return results
