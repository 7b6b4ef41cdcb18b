"""Retrieval metrics as pure functions of numpy arrays: Recall@K, mean average precision and
median rank, for queries ranked against a gallery by similarity.

A gallery item is *relevant* to a query when it is the query's own pair (the same manifest row)
or, for label-level retrieval, when it has the same label. Ties in similarity are ranked
pessimistically, the irrelevant items of a tie first: a space that maps everything to one point
scores nothing, instead of whatever the gallery's order would give it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from polymodal.config.align import LABEL_POSITIVES, ContrastiveAlignConfig
from polymodal.utils.warn import warn_user

if TYPE_CHECKING:
    from polymodal.config.align import AlignConfig

DEFAULT_KS = (1, 5, 10)
CHUNK = 1024  # queries scored at a time (bounds the (Q, G) memory)


def relevance(query_keys: np.ndarray, gallery_keys: np.ndarray) -> np.ndarray:
    """(Q, G) bool: True where a query and a gallery item share a key (row id or label)."""
    return np.asarray(query_keys)[:, None] == np.asarray(gallery_keys)[None, :]


def ranks_of_relevant(similarity: np.ndarray, relevant: np.ndarray) -> list[np.ndarray]:
    """Per query, the 1-based ranks of its relevant gallery items, ascending.

    Args:
        similarity: (Q, G), higher is closer.
        relevant: (Q, G) bool.
    """
    order = np.lexsort((relevant, -similarity), axis=1)  # (Q, G) best first; in a tie, the irrelevant first
    hits = np.take_along_axis(relevant, order, axis=1)  # (Q, G) relevance in ranked order
    return [np.flatnonzero(row) + 1 for row in hits]


def retrieval_metrics(similarity: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """Recall@K, mAP and median rank of queries against a gallery.

    ``recall@K``: share of queries with at least one relevant item among the first K.
    ``map``: mean over queries of the average precision over the whole ranking.
    ``median_rank``: median over queries of the rank of the first relevant item (1 = best).
    Queries without any relevant gallery item are left out (``queries_without_match``).

    Args:
        similarity: (Q, G), higher is closer.
        relevant: (Q, G) bool.
        ks: cut-offs for Recall@K.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if similarity.shape != relevant.shape or similarity.ndim != 2:
        raise ValueError(f"similarity {similarity.shape} and relevant {relevant.shape} must be the same (Q, G) shape")
    first, precisions = [], []
    for start in range(0, similarity.shape[0], CHUNK):
        for ranks in ranks_of_relevant(similarity[start:start + CHUNK], relevant[start:start + CHUNK]):
            if ranks.size == 0:
                continue
            first.append(ranks[0])
            precisions.append(float(np.mean(np.arange(1, ranks.size + 1) / ranks)))
    scored = len(first)
    out: dict[str, Any] = {}
    first_arr = np.asarray(first)
    for k in ks:
        out[f"recall@{k}"] = float((first_arr <= k).mean()) if scored else float("nan")
    out["map"] = float(np.mean(precisions)) if scored else float("nan")
    out["median_rank"] = float(np.median(first_arr)) if scored else float("nan")
    out["queries"] = scored
    out["gallery"] = int(similarity.shape[1])
    out["queries_without_match"] = int(similarity.shape[0] - scored)
    return out


NEAR = 1e-6  # gallery vectors whose cosine similarity is within this of 1 count as identical


class Ties(NamedTuple):
    """A gallery's tied rows (:func:`tied_rows`): ``rows`` of its ``size`` rows have a harmful
    twin, ``distinct`` of them one whose input differs (the model, not the data, made them alike)."""

    rows: int
    size: int
    distinct: int = 0


def tied_rows(vectors: np.ndarray, keys: np.ndarray | None = None, inputs: np.ndarray | None = None) -> np.ndarray:
    """(N,) True on the rows of ``vectors`` (N, D) that have an identical twin (cosine within
    :data:`NEAR` of 1: copies of a row may differ in the last bits when embedded in different
    batches) that is not a hit for the same queries. The twin ties with the row's match (exactly:
    ties rank pessimistically; or all but, in an order decided by rounding), so these rows lower
    the metrics. A twin's twins are tied too, so the tied rows alone hold every such pair.

    Args:
        keys: (N,) what decides relevance (row ids or labels, NaN for none); twins with one key
            (copies of the same label) tie harmlessly, and so do twins without a key (no query
            finds them relevant): they are not counted. None: every twin counts.
        inputs: (N,) what each row's input is (a file's content digest, a text); given, only
            twins whose inputs differ count.
    """
    unit = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
    tied = np.zeros(len(unit), dtype=bool)
    if len(unit) < 2:
        return tied
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    keys = np.arange(len(unit), dtype=np.float64) if keys is None else np.asarray(keys, dtype=np.float64)
    empty = np.isnan(keys)
    for start in range(0, len(unit), CHUNK):
        rows = np.arange(start, min(start + CHUNK, len(unit)))
        twins = unit[rows] @ unit.T >= 1.0 - NEAR  # (B, N)
        twins[np.arange(len(rows)), rows] = False  # not its own twin
        twins &= ~((keys[rows, None] == keys[None, :]) | (empty[rows, None] & empty[None, :]))
        if inputs is not None:
            twins &= inputs[rows, None] != inputs[None, :]
        tied[rows] = twins.any(axis=1)
    return tied


def tie_warning(galleries: dict[str, Ties], hits: str = "pair") -> str | None:
    """One warning about the galleries holding identical embeddings, or None when none does:
    of different inputs (the model collapsed them: the data is fine) or of copies (the data
    repeats rows).

    Args:
        galleries: per gallery modality, its :class:`Ties`.
        hits: ``pair`` or ``label``, what a hit was.
    """
    held = {name: Ties(*ties) for name, ties in galleries.items() if ties[0]}
    if not held:
        return None
    other = "another row" if hits == "pair" else "a row of another label (or without one)"
    effect = ("a query's own row ranks behind every other row identical to it" if hits == "pair"
              else "a query's hit ranks behind every identical row of another label")
    costs = (f"Ties in similarity rank pessimistically (the irrelevant items of a tie first), so {effect}, and "
             "Recall@K and mAP are lower")
    collapsed = {name: ties for name, ties in held.items() if ties.distinct}
    if collapsed:
        parts = [f"'{name}': {t.distinct} of {t.size} rows share their vector with {other} whose input differs"
                 for name, t in collapsed.items()]
        copies = [f"'{name}': {t.rows - t.distinct}" for name, t in held.items() if t.rows > t.distinct]
        also = (f" The gallery also holds copies, identical inputs embedded alike ({'; '.join(copies)} rows)."
                if copies else "")
        return (f"the model embeds different inputs identically ({'; '.join(parts)}): its embedding has partly "
                f"collapsed (distinct inputs mapped onto one point; a CCA or VAE objective, or an early epoch, can do "
                f"this). {costs}; train longer, or align with the contrastive objective.{also}")
    parts = [f"'{name}': {t.rows} of {t.size} rows share their vector with {other}" for name, t in held.items()]
    advice = ("remove repeated rows to score each item once, or count identical rows of one label as hits (--hits label)"
              if hits == "pair" else "remove repeated rows, or check the labels of identical ones")
    return (f"the gallery holds identical embeddings ({'; '.join(parts)}): rows with identical inputs (exact copies, "
            f"or the same text) embed alike. {costs}; {advice}")


def cross_modal_metrics(query: np.ndarray, gallery: np.ndarray, query_keys: np.ndarray, gallery_keys: np.ndarray,
                        ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """:func:`retrieval_metrics` for L2-normalised embeddings compared by cosine similarity.

    Args:
        query: (Q, D) query embeddings.
        gallery: (G, D) gallery embeddings.
        query_keys, gallery_keys: (Q,), (G,) row ids or labels; equal keys are relevant.
    """
    return retrieval_metrics(query @ gallery.T, relevance(query_keys, gallery_keys), ks)


COLLAPSED_SPREAD = 0.01  # below this, the rows of a modality sit on (nearly) one point
FEW_EPOCHS = 5  # a collapsed space after fewer epochs may only be under-trained


def spread(embeddings: np.ndarray) -> float:
    """How far apart L2-normalised embeddings lie: ``1 - ||mean||^2``, which is one minus the mean
    cosine similarity over all ordered pairs of rows (self-pairs included). 0 when every row has
    the same embedding (a collapsed space), near 1 when they point every way."""
    mean = np.asarray(embeddings, dtype=np.float64).mean(axis=0)
    return float(1.0 - mean @ mean)


def collapse_warning(metrics: dict[str, Any], align: AlignConfig | None = None, epochs: int | None = None
                     ) -> str | None:
    """A sentence for the user when the validation ``spread`` says the shared space collapsed.

    Args:
        metrics: validation metrics holding ``spread``.
        align: the run's ``align`` config; the advice names only changes it has not made
            (None: generic advice).
        epochs: the epochs the run trained; below :data:`FEW_EPOCHS` the first advice is to train
            longer (a space starts near one point and spreads out as it trains).
    """
    value = metrics.get("spread")
    if value is None or value >= COLLAPSED_SPREAD:
        return None
    message = (f"the shared space collapsed: validation embeddings of different rows are nearly identical (spread "
               f"{_shown_below(value, COLLAPSED_SPREAD)}, below {COLLAPSED_SPREAD}; 0 is one point), so every query "
               "ranks the gallery alike. ")
    if epochs is not None and epochs < FEW_EPOCHS:
        return message + (f"The run trained for {epochs} epoch(s) only: train longer first (train.epochs). If it "
                          "stays collapsed: " + _collapse_advice(align))
    return message + _collapse_advice(align)


def _shown_below(value: float, limit: float) -> str:
    """``value`` with 4 decimals, or as many more as it takes to read below ``limit`` (0.00996
    is not shown as 0.0100 beside a limit of 0.01)."""
    for decimals in range(4, 12):
        if float(text := f"{value:.{decimals}f}") < limit:
            return text
    return repr(value)


_CLASS_PAIRS = ("paired rows are related only through their class (positives: pair makes the other rows of the "
               "class negatives)")


def _collapse_advice(align: AlignConfig | None) -> str:
    if align is None:
        return (f"A triplet or CCA objective trained from scratch can settle there; it always can when {_CLASS_PAIRS}: "
                "use objective: contrastive, or positives: label when the rows carry labels")
    if isinstance(align, ContrastiveAlignConfig) and align.positives == "label":
        return ("The run already uses objective: contrastive with positives: label, so look at the data: each row's "
                "modalities must belong together and its label be right")
    if isinstance(align, ContrastiveAlignConfig):
        return (f"The run already uses objective: contrastive; when {_CLASS_PAIRS}, use positives: label (the rows "
                "need labels), else check that each row's modalities belong together")
    if align.positives == "label":  # triplet
        return (f"With objective: {align.objective} the space can settle there even with positives: label: "
                "use objective: contrastive")
    if isinstance(align, LABEL_POSITIVES):  # triplet with pair positives
        return (f"With objective: {align.objective} the space can settle there; it always can when {_CLASS_PAIRS}: "
                "use objective: contrastive, or positives: label when the rows carry labels")
    return (f"With objective: {align.objective} the space can settle there when trained from scratch: use objective: "
            "contrastive (with positives: label when paired rows are related only through their class)")


def warn_if_collapsed(metrics: dict[str, Any], align: AlignConfig | None = None, epochs: int | None = None) -> None:
    """Warn (at the caller of ``fit``) when :func:`collapse_warning` has something to say."""
    if (message := collapse_warning(metrics, align, epochs)) is not None:
        warn_user(message)


def stacked_validation_metrics(outputs: np.ndarray, labels: np.ndarray, names: Sequence[str],
                               pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Validation metrics of an alignment-only model from its stacked outputs.

    Every pair (a, b) is scored in both directions (queries from a, gallery from b, and back) on
    the rows holding both; the metrics are averaged over directions. A hit is the same label
    when every row has one (labels >= 0), else the row's own pair. ``spread`` is the smallest
    :func:`spread` of a modality's embeddings (near 0: the space collapsed).

    Args:
        outputs: (N, M * dim) normalised embeddings of the M modalities side by side (zero where absent).
        labels: (N,) class indices, or -1 for rows without a label.
        names: the M modalities in stacking order.
        pairs: the modality pairs to score.
    """
    views = dict(zip(names, np.split(np.asarray(outputs, dtype=np.float32), len(names), axis=1)))
    labels = np.asarray(labels)
    keys = labels if labels.size and (labels >= 0).all() else np.arange(len(labels))
    results = []
    for a, b in pairs:
        rows = (np.abs(views[a]).sum(1) > 0) & (np.abs(views[b]).sum(1) > 0)
        if rows.sum() < 2:
            continue
        for q, g in ((a, b), (b, a)):
            results.append(cross_modal_metrics(views[q][rows], views[g][rows], keys[rows], keys[rows]))
    if not results:
        return {}
    scalar = [k for k in results[0] if k not in ("queries", "gallery", "queries_without_match")]
    metrics = {k: float(np.mean([r[k] for r in results])) for k in scalar}
    present = {n: np.abs(v).sum(1) > 0 for n, v in views.items()}
    metrics["spread"] = min(spread(views[n][present[n]]) for n in names if present[n].sum() >= 2)
    return metrics
