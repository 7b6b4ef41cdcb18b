"""Cross-modal retrieval with a fitted predictor: build a gallery index from one modality,
query it from another, and score a labelled manifest (Recall@K, mAP, median rank), beside the
linear-CCA baseline (on the encoders' features or the preprocessed inputs).
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
from polymodal.config.modalities import modality_columns
from polymodal.data.content_keys import content_key
from polymodal.data.manifest import Manifest, read_manifest
from polymodal.data.pipeline import DataSource
from polymodal.data.targets import distinct_labels
from polymodal.errors import DecodeError, ManifestError, OptionError, SchemaMismatchError, option
from polymodal.metrics.retrieval import DEFAULT_KS, Ties, cross_modal_metrics, tie_warning, tied_rows
from polymodal.models.weights import state_digest
from polymodal.predictor import MultimodalPredictor
from polymodal.retrieval.cca import MIN_CCA_ROWS, LinearCca
from polymodal.retrieval.embed import (
    Kind,
    NoInputFeatures,
    check_aligned,
    embed_rows,
    encoder_instead,
    modality_option,
)
from polymodal.retrieval.index import EmbeddingIndex, file_digest, id_problems
from polymodal.run_files import MODEL_FILE
from polymodal.utils.io import python_scalar
from polymodal.utils.warn import warn_user

Hits = Literal["auto", "pair", "label"]
HITS = ("pair", "label", "auto")
HIT_COLUMNS = ("query", "rank", "id", "score")  # what every retrieval hit holds
LABEL_LIKE = ("label", "labels", "class", "category", "target", "tag", "y")  # columns a message suggests for --labels


def model_digest(run: str | os.PathLike | None) -> str | None:
    """The content hash of a run's model file, or None without a run folder (what an index saved
    in format 1 recorded as ``model``; see :func:`check_index_model`)."""
    if run is None or not (Path(run) / MODEL_FILE).is_file():
        return None
    return file_digest(Path(run) / MODEL_FILE)


def predictor_digest(predictor: MultimodalPredictor) -> str:
    """The :func:`~polymodal.models.weights.state_digest` of a fitted predictor's network: the
    same for the predictor that was fitted and for its run folder loaded again."""
    _, net = predictor.require_fitted()
    return state_digest(net)


def check_index_model(predictor: MultimodalPredictor, index: EmbeddingIndex,
                      run: str | os.PathLike | None = None) -> None:
    """Refuse an index built with another model; warn when that cannot be checked.

    Args:
        run: the predictor's run folder: only an index saved in format 1 needs it (it recorded
            the digest of the run's model file, not of the weights).

    Raises:
        SchemaMismatchError: the index records another model.
    """
    rebuild = "rebuild the index with this model ('polymodal index build', or build_index)"
    built_with = index.meta.get("model")
    if built_with is not None:
        using = predictor_digest(predictor)
        if built_with != using:
            raise SchemaMismatchError(f"the index was built with another model (weights digest {built_with}); this "
                                      f"model's is {using}: {rebuild}")
        return
    legacy = index.meta.get("model_file")
    if legacy is not None:
        using = model_digest(run)
        if using is None:
            warn_user(f"the index (format 1) records only the digest of its run's {MODEL_FILE}, and no run folder was "
                      f"given (run=): whether it was built with this model is not checked; {rebuild}")
        elif legacy != using:
            raise SchemaMismatchError(f"the index was built with another model ({MODEL_FILE} digest {legacy}); the run "
                                      f"{run} has {using}: {rebuild}")
        return
    warn_user(f"the index records no model (made with EmbeddingIndex.build, or by build_index before it recorded "
              f"one): it is not checked that its vectors come from this model (another model's would give meaningless "
              f"scores); {rebuild}")


def build_index(predictor: MultimodalPredictor, data: DataSource, modality: str, *, id_column: str | None = None,
                run: str | os.PathLike | None = None, keep: Sequence[str] = ()) -> EmbeddingIndex:
    """Embed every row of ``data`` holding ``modality`` and index the embeddings.

    The index records the digest of the predictor's weights, so :func:`retrieve` refuses queries
    from another model.

    Args:
        id_column: the manifest column naming each item (default: the manifest row number, or a
            DataFrame's own index, as :func:`retrieve` and ``embed`` name rows). Ids must be
            unique and non-empty.
        run: accepted for older calls; not needed (the weights identify the model).
        keep: manifest columns kept in the index and shown beside every hit (a label, a
            caption, a path).

    Raises:
        SchemaMismatchError: no row holds ``modality``, or ``id_column`` is not a column.
        ManifestError: the ids repeat or are empty, or a kept column is not in the manifest.
    """
    del run  # the weights digest replaces the run folder's file digest
    taken = [c for c in keep if c in HIT_COLUMNS or c.startswith("query_")]
    if taken:
        raise OptionError([f"{option('--keep', 'keep=')}: kept columns {taken} would stand beside the hit columns "
                           f"{list(HIT_COLUMNS)} and the queries' query_<column>; rename the column, or name items by "
                           "it as their id column"])
    kept = read_kept(data, keep)  # read once; a mistyped column is named before the gallery is embedded
    frame = embed_rows(predictor, data, modality)  # indexed by position in the manifest
    positions = frame.index.to_numpy()
    ids = row_ids(data, positions, id_column, "the DataFrame's index")
    meta = {"modality": modality, "model": predictor_digest(predictor), "id_column": id_column}
    return EmbeddingIndex.build(frame.to_numpy(), ids, meta, kept_values(kept, keep, positions))


def read_kept(data: DataSource, columns: Sequence[str]) -> Manifest | None:
    """``data`` read for its kept ``columns`` (as text, so '007' stays '007'), each checked to be
    there before anything is embedded; None without columns.

    Raises:
        ManifestError: a column is not in the manifest.
    """
    if not columns:
        return None
    manifest = read_manifest(data, text_columns=list(columns))
    for column in columns:
        manifest.require_column(column, "kept beside the hits")
    return manifest


def kept_values(kept: Manifest | None, columns: Sequence[str], positions: np.ndarray) -> dict[str, list[Any]]:
    """The cells of ``columns`` of :func:`read_kept`'s manifest at ``positions`` as JSON values
    (an empty cell: None)."""
    if kept is None:
        return {}
    return {column: [_json_cell(v) for v in kept.take(column, positions)] for column in columns}


def _json_cell(value: Any) -> Any:
    value = python_scalar(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value if isinstance(value, str | int | float | bool) else str(value)


def row_ids(data: DataSource, positions: np.ndarray, id_column: str | None, what: str) -> list[Any]:
    """How results name the manifest rows at ``positions``: by ``id_column``'s values when given;
    else a file's rows by their number, a DataFrame's by its own index (``what``). Named ids must
    be unique and non-empty.

    Raises:
        SchemaMismatchError: ``id_column`` is not a column.
        ManifestError: the ids repeat or are empty.
    """
    if id_column is None and isinstance(data, str | os.PathLike):
        return np.asarray(positions).tolist()
    manifest = read_manifest(data, text_columns=[id_column] if id_column is not None else [])  # '007' stays '007'
    if id_column is None:
        ids = [python_scalar(i) for i in manifest.row_index(positions)]
    else:
        if id_column not in manifest.columns:
            raise SchemaMismatchError(f"id column '{id_column}' is not in {manifest.name} "
                                      f"(columns: {list(manifest.columns)})")
        ids = [python_scalar(v) for v in manifest.take(id_column, positions)]
        what = f"id column '{id_column}'"
    _check_ids(ids, positions, manifest, what)
    return ids


def _check_ids(ids: list[Any], positions: np.ndarray, manifest: Manifest, what: str) -> None:
    """Refuse empty or repeated ids among the indexed rows, naming the rows and values
    (:func:`~polymodal.retrieval.index.id_problems`, as :meth:`EmbeddingIndex.build` checks its ids)."""
    problems, folded = id_problems(ids, positions, manifest.where, what)
    if problems:
        raise ManifestError(problems, source=manifest.name, folded=folded)


def retrieve(predictor: MultimodalPredictor, index: EmbeddingIndex, queries: DataSource, modality: str, k: int = 10,
             run: str | os.PathLike | None = None, *, id_column: str | None = None, keep: Sequence[str] = (),
             same_modality: bool = False) -> pd.DataFrame:
    """The ``k`` best gallery items for every query row holding ``modality``.

    Args:
        run: the predictor's run folder; needed only to check an index saved in format 1.
        same_modality: allow queries of the index's own modality (image -> image search with a
            query set apart from the gallery). Off by default: queries that are the gallery's own
            rows would each find themselves first (score 1.0), as would any query whose input
            the gallery holds. Refused for queries of another modality, where it does nothing.
        id_column: the queries' column naming each query (default: the manifest row number, or a
            DataFrame's own index); ids must be unique and non-empty.
        keep: the queries' columns shown beside each hit, as ``query_<column>``.

    Returns:
        One line per (query, rank): ``query`` (its id), ``query_<column>`` per kept query column,
        ``rank`` (1 = best), ``id`` (the gallery item's: see :func:`build_index`), the columns the
        index kept, ``score`` (cosine similarity, -1 to 1).

    Raises:
        SchemaMismatchError: the index was built by another model, has another width, no query
            row holds ``modality``, or ``id_column`` is not a column.
        OptionError: the index holds ``modality`` itself, without ``same_modality``; or
            ``same_modality`` with queries of a modality other than the index's.
        ManifestError: a DataFrame of queries has repeated or empty index values (results would
            not say which query they answer).
    """
    check_aligned(predictor, modality)
    held = index.meta.get("modality")
    if held == modality and not same_modality:  # the gallery's own rows would find themselves
        others = [name for name in aligned_modalities(predictor.config) if name != modality]
        same = option("--same-modality", "same_modality=True")
        raise OptionError([f"{modality_option()}: the index holds '{modality}' items, and queries of '{modality}' "
                           f"too would each find their own row first (score 1.0) if they are the gallery's rows: "
                           f"retrieval is across modalities unless you say the queries are a set apart from the "
                           f"gallery with {same}; else query it with another of {others}, or build the index over "
                           f"another modality"])
    if same_modality and held != modality:  # an option that would do nothing is refused, not ignored
        holds = f"holds '{held}' items" if held is not None else "records no modality (EmbeddingIndex.build)"
        raise OptionError([f"{option('--same-modality', 'same_modality=')}: allows queries of the index's own "
                           f"modality, and the index {holds} while the queries are '{modality}': it does nothing "
                           f"here; drop it"])
    check_index_model(predictor, index, run)
    if id_column is not None:  # a mistyped column is named before any query is embedded
        row_ids(queries, np.arange(0), id_column, "")
    kept = read_kept(queries, keep)
    frame = embed_rows(predictor, queries, modality)  # indexed by position in the manifest
    positions = frame.index.to_numpy()
    query_ids = row_ids(queries, positions, id_column, "the queries' DataFrame index")
    shown = kept_values(kept, keep, positions)
    return index.search_frame(frame.to_numpy(), k, query_ids=query_ids,
                              query_columns={f"query_{name}": values for name, values in shown.items()})


def label_keys(values: pd.Series) -> np.ndarray:
    """(N,) float: equal for rows whose labels match as training matches them
    (:func:`~polymodal.data.targets.label_key`: 7, 7.0 and '7' are one label); NaN for an empty
    label, which equals nothing, not even the same row's."""
    codes, _, keys = distinct_labels(values)
    classes = pd.factorize(pd.Series(keys, dtype=object))[0]  # distinct values -> the label they read as
    out = np.full(len(codes), np.nan)
    filled = codes >= 0
    out[filled] = classes[codes[filled]]
    return out


def _keys(data: DataSource, hits: Hits, labels: str | None, predictor: MultimodalPredictor
          ) -> tuple[np.ndarray, str, Manifest]:
    """Per manifest row, what decides relevance: the row itself, or its label (and the manifest)."""
    if hits not in HITS:
        raise OptionError([f"{option('--hits', 'hits=')}: pair, label or auto; got {hits!r}"])
    named = option("--labels", "labels=")  # the settings as the caller gave them (a command's options)
    by_pair, by_label = option("--hits pair", "hits='pair'"), option("--hits label", "hits='label'")
    if labels is not None and hits == "pair":  # the column would be read for nothing
        raise OptionError([f"{named}: {labels!r} names the labels of label-level hits, but with {by_pair} a hit is "
                           f"only the query's own row; drop {named}, or use {by_label}"])
    column = labels if labels is not None else (predictor.config.targets[0] if predictor.config.targets else None)
    manifest = read_manifest(data, label_columns=[column] if column is not None else [])
    columns = list(manifest.columns)
    if labels is not None and labels not in columns:
        raise OptionError([f"{named}: column {labels!r} is not in {manifest.name} (columns: {columns})"])
    if hits == "auto":
        hits = "label" if column is not None and column in columns else "pair"
    if hits == "pair":
        return np.arange(len(manifest)), "pair", manifest
    if column is None:
        like = next((c for c in columns if str(c).lower() in LABEL_LIKE), None)
        example = "" if like is None else ", e.g. " + option(f"--labels {like}", f"labels={like!r}")
        raise OptionError([f"{by_label}: a hit is a row with the same label, and this model has no target to take "
                           f"labels from: name the label column with {named}{example}; columns of {manifest.name}: "
                           f"{columns}"])
    if column not in columns:
        raise OptionError([f"{by_label}: the labels are the model's target {column!r} unless {named} names another "
                           f"column, and {manifest.name} has no column {column!r} (columns: {columns}); name the "
                           f"label column with {named}, or use {by_pair}"])
    return label_keys(manifest.column(column)), "label", manifest


def _input_key(value: object, file_based: bool) -> bytes | str:
    """What a row's input holds (:func:`~polymodal.data.content_keys.content_key`, as the feature
    cache keys it); an unreadable file by its path (it then counts as an input of its own)."""
    try:
        return content_key(value, file_based)
    except (OSError, DecodeError):
        return f"unreadable: {value}"


def _gallery_ties(predictor: MultimodalPredictor, manifest: Manifest, modality: str, gallery: pd.DataFrame,
                  keys: np.ndarray) -> Ties:
    """The gallery's tied rows, and how many of them tie with a row whose input differs: a file's
    content or a row's cells (read for the tied rows only; a twin of a tied row is tied too)."""
    vectors, row_keys = gallery.to_numpy(), keys[gallery.index.to_numpy()]
    tied = tied_rows(vectors, row_keys)
    if not tied.any():
        return Ties(0, len(gallery))
    rows = gallery.index.to_numpy()[tied]
    cfg = predictor.config.modalities[modality]
    columns = modality_columns(cfg)
    values = (manifest.resolve_all(manifest.take(columns[0], rows)) if cfg.file_based
              else list(manifest.select(columns, rows).itertuples(index=False, name=None)))
    inputs = [_input_key(value, cfg.file_based) for value in values]
    distinct = tied_rows(vectors[tied], row_keys[tied], np.asarray(inputs, dtype=object))
    return Ties(int(tied.sum()), len(gallery), int(distinct.sum()))


def _warn_unmatched(direction: str, scores: dict[str, Any], how: str) -> None:
    """Say how many queries had no relevant gallery item (they are left out of the metrics)."""
    missing = scores["queries_without_match"]
    if not missing:
        return
    total = missing + scores["queries"]
    why = ("no gallery row shares its label, or its label is empty" if how == "label"
           else "its own row does not hold the gallery modality")
    if missing == total:
        warn_user(f"{direction}: none of the {total} queries has a relevant gallery item ({why}; hits: {how}): the "
                  "metrics are undefined (NaN; null in JSON)")
    else:
        warn_user(f"{direction}: {missing} of {total} queries have no relevant gallery item ({why}; hits: {how}) "
                  "and are left out of the metrics")


def directions(predictor: MultimodalPredictor, query: str | None, gallery: str | None,
               *manifests: Manifest) -> list[tuple[str, str]]:
    """The (query, gallery) modality pairs to score: the given one, or every ordered pair; of
    every pair, only those whose modalities have a column in each of ``manifests`` (a test
    manifest without a caption column scores the other directions, saying which it leaves out).

    Raises:
        SchemaMismatchError: no pair is left.
    """
    chosen = _directions(predictor, query, gallery)
    if query is not None or gallery is not None or not manifests:
        return chosen  # a direction asked for by name: a manifest that lacks it is an error where it is read
    held = [m for m in {name for pair in chosen for name in pair}
            if all(any(c in manifest.columns for c in modality_columns(predictor.config.modalities[m]))
                   for manifest in manifests)]
    kept = [(q, g) for q, g in chosen if q in held and g in held]
    lacking = sorted({name for pair in chosen for name in pair} - set(held))
    if lacking and not kept:
        raise SchemaMismatchError(f"{', '.join(m.name for m in manifests)}: no two aligned modalities have columns "
                                  f"there to score a direction with (lacking: {lacking})")
    if lacking:
        warn_user(f"{', '.join(m.name for m in manifests)} {'has' if len(manifests) == 1 else 'have'} no column of "
                  f"{', '.join(lacking)}: the directions with {'it' if len(lacking) == 1 else 'them'} are left out")
    return kept


def _directions(predictor: MultimodalPredictor, query: str | None, gallery: str | None) -> list[tuple[str, str]]:
    """:func:`directions` before the manifests are consulted."""
    names = aligned_modalities(predictor.config)
    if not names:  # the same message as embedding from such a model
        check_aligned(predictor, query or gallery or "")
    for name, given in ((query, option("--query", "query=")), (gallery, option("--gallery", "gallery="))):
        if name is not None:  # named as embed, retrieve name theirs
            check_aligned(predictor, name, given)
    if query is not None and gallery is not None:
        if query == gallery:  # each query would find its own row first
            raise OptionError([f"{option('--gallery', 'gallery=')}: '{gallery}' is also the query modality; retrieval "
                               f"is scored across modalities (a query's own row would be its best hit: R@1 = 1.0); "
                               f"choose another of {names}"])
        return [(query, gallery)]
    chosen = [(q, g) for q, g in permutations(names, 2) if (query is None or q == query) and (gallery is None or g == gallery)]
    if not chosen:
        asked = [option(f"--{what} {name}", f"{what}={name!r}")
                 for what, name in (("query", query), ("gallery", gallery)) if name is not None]
        raise SchemaMismatchError(f"no direction matches {', '.join(asked) or 'two distinct modalities'}; aligned "
                                  f"modalities: {names}")
    return chosen


def evaluate_retrieval(predictor: MultimodalPredictor, data: DataSource, query: str | None = None,
                       gallery: str | None = None, *, hits: Hits = "auto", labels: str | None = None,
                       ks: Sequence[int] = DEFAULT_KS) -> dict[str, dict[str, Any]]:
    """Retrieval metrics of a manifest's rows against each other, per direction ``query->gallery``.

    Queries are the rows holding the query modality, the gallery the rows holding the gallery
    modality. A hit is the query's own row (``hits='pair'``) or a row with the same label
    (``hits='label'``; ``labels`` names the column, default the config's target; labels match as
    in training, 7 and 7.0 alike, and an empty label matches nothing); ``auto`` uses labels when
    the data has that column. The query and gallery modalities must differ. Queries without any
    relevant gallery item are left out of the metrics, with a warning; so is a gallery holding
    identical embeddings (repeated rows, or distinct inputs the model collapsed onto one point:
    the warning says which), which ties rank pessimistically.

    Raises:
        OptionError: ``hits`` is not pair, label or auto; ``labels`` is not a column, or is given
            with ``hits='pair'``; ``hits='label'`` without a label column; ``query == gallery``.
        SchemaMismatchError: no row holds one of the modalities; a modality is not aligned.
    """
    keys, how, manifest = _keys(data, hits, labels, predictor)
    results = {}
    cache: dict[str, pd.DataFrame] = {}
    galleries: dict[str, Ties] = {}
    for q, g in directions(predictor, query, gallery, manifest):
        for name in (q, g):
            if name not in cache:
                cache[name] = embed_rows(predictor, data, name)
        qf, gf = cache[q], cache[g]
        scores = cross_modal_metrics(qf.to_numpy(), gf.to_numpy(), keys[qf.index.to_numpy()], keys[gf.index.to_numpy()], ks)
        _warn_unmatched(f"{q}->{g}", scores, how)
        results[f"{q}->{g}"] = {"hits": how, **scores}
        if g not in galleries:
            galleries[g] = _gallery_ties(predictor, manifest, g, gf, keys)
    if (message := tie_warning(galleries, how)) is not None:
        warn_user(message)
    return results


Features = Literal["auto", "encoder", "input"]
FEATURES = ("auto", "encoder", "input")
TRAINED = "encoder (trained by this run)"  # how a row names CCA on the model's own encoder features
FROZEN = "encoder (frozen pretrained)"


def trained_by_run(predictor: MultimodalPredictor, modality: str) -> bool:
    """Whether the run trained (some of) ``modality``'s encoder: anything but pretrained weights
    kept frozen throughout (``freeze: all``, no gradual unfreezing, no LoRA adapters)."""
    _, net = predictor.require_fitted()
    encoder = net.encoders[modality]
    frozen = (not any(p.requires_grad for p in encoder.parameters())
              and getattr(predictor.config.modalities[modality].encoder, "unfreeze", None) is None)
    return not (encoder.pretrained and frozen)


def baseline_features(predictor: MultimodalPredictor, modality: str, features: Features = "auto") -> tuple[Kind, str]:
    """What the linear-CCA baseline is fitted on for ``modality``, and how its rows name that.

    ``auto`` takes the encoder's features only where they are independent of the model: a frozen
    pretrained encoder's (the classic baseline); an encoder the run trained gives its preprocessed
    inputs instead, since CCA on its features would be CCA on the model's own learned features.

    Returns:
        ``(kind, label)``: ``encoder`` or ``input``, and ``input``, ``encoder (frozen pretrained)``
        or ``encoder (trained by this run)``.
    """
    trained = trained_by_run(predictor, modality)
    kind: Kind = ("input" if trained else "encoder") if features == "auto" else features  # type: ignore[assignment]
    if kind == "input":
        return kind, "input"
    return kind, TRAINED if trained else FROZEN


def features_label(labels: dict[str, str], q: str, g: str) -> str:
    """One direction's features: ``input`` when both modalities had the same, else each named."""
    return labels[q] if labels[q] == labels[g] else f"{q}: {labels[q]}; {g}: {labels[g]}"


def cca_baseline(predictor: MultimodalPredictor, train: DataSource, data: DataSource, query: str | None = None,
                 gallery: str | None = None, *, features: Features = "auto", hits: Hits = "auto",
                 labels: str | None = None,
                 dim: int = 64, pca: int | None = 256, ks: Sequence[int] = DEFAULT_KS) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_retrieval` for linear CCA fitted on ``train``'s paired rows.

    Rows without a modality are left out without a warning of their own: the model's evaluation
    of ``data`` (:func:`evaluate_retrieval`) counts them, and CCA fits on the paired rows.

    Args:
        features: ``auto`` (the default: per modality, a frozen pretrained encoder's features,
            else the preprocessed inputs; see :func:`baseline_features`), ``encoder`` (the
            encoders' pooled outputs: for encoders the run trained, the model's own trained
            features, so the baseline is then not independent of the model) or ``input`` (the
            preprocessed inputs, flattened). A modality without numeric inputs, such as text,
            has no ``input`` features: its directions are left out of the result, with one warning.
        dim, pca: see :class:`~polymodal.retrieval.cca.LinearCca` (its PCA is seeded: one draw of
            a randomised solver on views wider than their rows).

    Returns:
        Per direction, as :func:`evaluate_retrieval`, plus ``features``: what CCA was fitted on
        (``input``, ``encoder (frozen pretrained)``, ``encoder (trained by this run)``; each
        modality named when they differ).
    """
    if features not in FEATURES:
        raise OptionError([f"{option('--cca-features', 'features=')}: the CCA baseline runs on 'auto', 'encoder' or "
                           f"'input' features; got {features!r}"])
    keys, how, manifest = _keys(data, hits, labels, predictor)
    train_features: dict[str, pd.DataFrame] = {}
    test_features: dict[str, pd.DataFrame] = {}
    used: dict[str, str] = {}  # modality -> what its features were, as rows name it
    lacking: list[str] = []  # modalities without numeric inputs (features: input)
    skipped: list[str] = []  # the directions they leave without a baseline
    models: dict[tuple[str, str], LinearCca] = {}
    results = {}
    for q, g in directions(predictor, query, gallery, manifest, predictor.pipeline.read_raw(train)):
        for name in (q, g):
            if name not in train_features and name not in lacking:
                kind, used[name] = baseline_features(predictor, name, features)
                try:
                    train_features[name] = embed_rows(predictor, train, name, kind, warn=False)  # CCA: paired rows
                except NoInputFeatures:
                    lacking.append(name)
                    continue
                test_features[name] = embed_rows(predictor, data, name, kind, warn=False)  # the model's rows: said there
        if q in lacking or g in lacking:
            skipped.append(f"{q}->{g}")
            continue
        a, b = sorted((q, g))
        if (a, b) not in models:  # one fit serves both directions
            paired = train_features[a].index.intersection(train_features[b].index)
            if len(paired) < MIN_CCA_ROWS:
                raise SchemaMismatchError(f"linear CCA is fitted on the rows holding both '{a}' and '{b}': "
                                          f"{_source_name(train)} has {len(paired)} such row(s); at least "
                                          f"{MIN_CCA_ROWS} are needed")
            models[(a, b)] = LinearCca(dim, pca).fit(train_features[a].loc[paired].to_numpy(),
                                                    train_features[b].loc[paired].to_numpy())
        model = models[(a, b)]
        qf, gf = test_features[q], test_features[g]
        scores = cross_modal_metrics(model.transform(qf.to_numpy(), int(q == b)), model.transform(gf.to_numpy(), int(g == b)),
                                     keys[qf.index.to_numpy()], keys[gf.index.to_numpy()], ks)
        results[f"{q}->{g}"] = {"hits": how, "features": features_label(used, q, g), **scores}
    if skipped:
        which = ", ".join(f"'{name}'" for name in lacking)
        asked = ("it was asked for on 'input' features" if features == "input" else
                 "an encoder the run trained is compared on its 'input' features (its own features are the model's)")
        warn_user(f"no linear-CCA baseline for {', '.join(skipped)}: {asked}, and {which} "
                  f"{'has' if len(lacking) == 1 else 'have'} no numeric input arrays (a text modality's inputs are "
                  f"token ids); fit it on 'encoder' features to score {'it' if len(skipped) == 1 else 'them'} "
                  f"({encoder_instead()}; not an independent baseline for an encoder the run trained)")
    return results


def _source_name(data: DataSource) -> str:
    """How messages name a manifest given as a path, a DataFrame or a Manifest."""
    if isinstance(data, Manifest):
        return data.name
    return "the DataFrame" if isinstance(data, pd.DataFrame) else str(data)
