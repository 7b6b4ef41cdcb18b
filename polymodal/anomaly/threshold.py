"""The flag thresholds of a fitted detector: the validation rows the full set of modalities'
threshold is chosen on (:func:`threshold_rows`), each subset of modalities' threshold following it
at the same validation false-positive rate (:func:`follow_full_threshold`,
:func:`subset_threshold_table`), chosen at the fit from the normal validation rows scored under
every coalition of modalities, which also give ``explain`` its normal reference
(:func:`fit_coalitions`), setting it again without retraining (:func:`rethreshold`,
``AnomalyDetector.set_threshold``, ``polymodal threshold``) from the scores the run keeps
(``scores.npz``: :func:`polymodal.runfolder.write_scores`), and the warning on a false-positive rate
finer than the validation rows allow.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polymodal.config.anomaly import AnomalyConfig, unreconstructed
from polymodal.config.fitted import model_settings
from polymodal.errors import OptionError, RunFolderError
from polymodal.evaluation.coalitions import coalition_outputs
from polymodal.metrics.anomaly import anomaly_metrics, flag_rate, subset_thresholds, threshold_at_fpr
from polymodal.metrics.tasks import add_note
from polymodal.run_files import SCORES_FILE
from polymodal.runfolder import Scored
from polymodal.utils.coalitions import all_subsets, coalition_of, coalition_values, mask_of, subset_label
from polymodal.utils.warn import warn_user

if TYPE_CHECKING:
    from polymodal.anomaly.detector import AnomalyDetector
    from polymodal.data.encode import EncodedTable


def threshold_rows(detector: AnomalyDetector) -> np.ndarray | None:
    """The validation normal rows' scores the full set's flag threshold is chosen on: those of the
    rows holding every modality (the rows it applies to; a row with one missing has its subset's
    threshold), all the normal rows when none holds every modality or the run keeps no record of
    which did (saved before); None when the run keeps no validation scores."""
    if detector.valid_scores is None:
        return None
    scores, labels = detector.valid_scores
    normal = labels != 1
    held = detector.kept.get("valid_held")
    if held is not None and held.shape == scores.shape:
        complete = normal & (held == (1 << len(detector.model.names)) - 1)
        if complete.any():
            return scores[complete]
    return scores[normal]


def follow_full_threshold(detector: AnomalyDetector, threshold: float) -> None:
    """Set each subset's flag threshold at the validation false-positive rate ``threshold`` (the
    full set's) gives (:func:`~polymodal.metrics.anomaly.subset_thresholds`), from the kept
    validation scores per subset (``kept['valid_subset_scores']``); NaN throughout (one threshold
    for every row) without them."""
    buffer = detector.model.scorer.subset_thresholds
    subset_scores = detector.kept.get("valid_subset_scores")
    if not buffer.numel():
        return
    scores, labels = detector.valid_scores if detector.valid_scores is not None else (np.zeros(0), np.zeros(0))
    if subset_scores is None or subset_scores.shape != (buffer.numel(), int((labels != 1).sum())):
        buffer.fill_(float("nan"))  # not kept (a run saved before), or not for these rows
        return
    chosen = subset_thresholds(threshold, scores[labels != 1], subset_scores)
    buffer.copy_(torch.as_tensor(chosen, dtype=buffer.dtype))


def fit_coalitions(detector: AnomalyDetector, normal: EncodedTable) -> None:
    """Score the normal validation rows under every coalition of modalities (the others hidden,
    as missing cells are; none beyond ``REFERENCE_MAX_MODALITIES`` modalities), then from those
    scores the normal reference of ``AnomalyDetector.explain`` (:func:`fit_normal_reference`) and
    the flag threshold of each subset (kept in ``kept['valid_subset_scores']``:
    ``AnomalyDetector.set_threshold`` chooses them again from it)."""
    scorer = detector.model.scorer
    if not scorer.normal_coalitions.numel():
        return
    names = list(detector.model.names)
    coalitions = [coalition_of(mask, names) for mask in range(scorer.normal_coalitions.numel())]
    scores = coalition_outputs(detector, normal, coalitions)[..., 0].astype(np.float64)  # (C, N)
    held = detector._held(normal)  # (N,) bit masks
    fit_normal_reference(detector, scores, held)
    holds = (held[None, :] & np.arange(len(coalitions))[:, None]) == np.arange(len(coalitions))[:, None]  # (C, N)
    detector.kept["valid_subset_scores"] = np.where(holds, scores, np.nan)  # a subset's threshold: rows holding it
    follow_full_threshold(detector, float(scorer.threshold))


def fit_normal_reference(detector: AnomalyDetector, scores: np.ndarray, held: np.ndarray) -> None:
    """The normal rows' mean score under every coalition of modalities (``scores``: (C, N), the
    rows' with only coalition k present; a coalition the scorer cannot score counts 0), over
    the rows that hold every modality of the coalition (``held``: their bit masks; all rows
    where none does): what ``AnomalyDetector.explain`` measures a row's score against."""
    reference = detector.model.scorer.normal_coalitions
    means = []
    for mask, coalition in enumerate(coalition_values(scores)):
        rows = (held & mask) == mask  # the rows holding every modality of the coalition
        means.append(coalition[rows].mean() if rows.any() else coalition.mean())
    reference.copy_(torch.as_tensor(means, dtype=reference.dtype))


def scored_subsets(detector: AnomalyDetector) -> tuple[list[frozenset[str]], list[frozenset[str]]]:
    """The non-empty subsets of the detector's modalities, largest first: those its scorer scores,
    and those it does not (fewer modalities than ``min_modalities``: the consistency scorer's single
    modalities; for the autoencoder, only modalities it does not reconstruct: texts), which have
    no flag threshold of their own (a row holding only them has a NaN score and is flagged)."""
    scorer = detector.model.scorer
    unread = unreconstructed(detector.config) if scorer.reconstructs else set()
    subsets = all_subsets(list(detector.model.names))

    def scored(subset: frozenset[str]) -> bool:
        return len(subset) >= scorer.min_modalities and not subset <= unread

    return [c for c in subsets if scored(c)], [c for c in subsets if not scored(c)]


def subset_threshold_table(detector: AnomalyDetector) -> dict[str, float] | None:
    """Each non-empty subset's flag threshold by its label (``de+fe``, ``de``), the full set's first
    (as ``metrics.json``'s ``training.subset_thresholds`` and ``polymodal threshold`` show them),
    but for the subsets the scorer does not score (:func:`scored_subsets`); None where
    ``AnomalyDetector.subset_thresholds`` is."""
    chosen = detector.subset_thresholds()
    if chosen is None:
        return None
    names = list(detector.model.names)
    full = float(detector.model.scorer.threshold)
    return {subset_label(c): float(full if np.isnan(chosen[mask_of(c, names)]) else chosen[mask_of(c, names)])
            for c in scored_subsets(detector)[0]}

def warn_coarse_rate(fpr: float, normal_scores: np.ndarray, setting: str = "anomaly.target_fpr") -> None:
    """Warn when ``fpr`` is below 1/N for the N scored validation normal rows (``normal_scores``,
    NaN: not scored): the false-positive rate moves in steps of 1/N, so the threshold is then the
    highest normal score and no validation normal row is flagged. ``setting``: where the rate was
    given, as the warning names it (the config's key; ``set_threshold``'s ``fpr``, ``polymodal
    threshold``'s ``--fpr``)."""
    n = int(np.count_nonzero(~np.isnan(np.asarray(normal_scores, np.float64))))
    if n and fpr < 1 / n:
        warn_user(f"{setting} {fpr:g} is below 1/N = {1 / n:.4g} for the N = {n} validation normal rows: "
                  "the validation false-positive rate moves in steps of 1/N, so the threshold is the highest "
                  f"validation normal score (none of them flagged); validate on at least {math.ceil(1 / fpr - 1e-9)} "
                  f"normal rows for that rate, or give {setting} a rate of at least {1 / n:.4g}")


def rethreshold(detector: AnomalyDetector, *, fpr: float | None = None, score: float | None = None,
                fpr_setting: str = "fpr") -> dict[str, Any]:
    """:meth:`~polymodal.anomaly.detector.AnomalyDetector.set_threshold` (its arguments, return
    value and errors); ``fpr_setting``: how the warning of a rate below 1/N names ``fpr``
    (``polymodal threshold``: ``--fpr``)."""
    _, model = detector.require_fitted()
    if (fpr is None) == (score is None):
        raise OptionError([f"set_threshold: give either fpr (a false-positive rate on the validation normal rows) "
                           f"or score (a score to flag above); got {'both' if fpr is not None else 'neither'}"])
    if fpr is not None and (isinstance(fpr, bool) or not isinstance(fpr, int | float) or not 0 < fpr < 1):
        raise OptionError([f"fpr: a false-positive rate between 0 and 1 (both excluded); got {fpr!r}"])
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)
                              or not math.isfinite(score)):
        raise OptionError([f"score: a finite anomaly score; got {score!r}"])
    normal = threshold_rows(detector)  # the rows holding every modality, which the full threshold applies to
    if fpr is not None:
        if normal is None:
            where = f"the run {detector.run_dir}" if detector.run_dir is not None else "this detector"
            raise RunFolderError(f"{where} keeps no validation scores to choose a threshold at fpr={fpr:g} from "
                                 f"(saved before polymodal wrote them to {SCORES_FILE}): fit it again, or set "
                                 "the threshold as a score (set_threshold(score=S), polymodal threshold RUN "
                                 "--score S)")
        warn_coarse_rate(fpr, normal, fpr_setting)
        new = threshold_at_fpr(normal, fpr)
        update: dict[str, Any] = {"target_fpr": float(fpr), "threshold": None}
    else:
        new = float(score)  # type: ignore[arg-type]
        update = {"threshold": new}
    old = float(model.scorer.threshold)
    had_subsets = detector.subset_thresholds() is not None
    model.scorer.threshold.fill_(new)
    follow_full_threshold(detector, new)  # each subset's at the validation rate the new one gives
    if had_subsets and detector.subset_thresholds() is None:
        warn_user(f"the flag thresholds per subset of modalities cannot follow the new threshold: the run keeps no "
                  f"validation scores per subset ({SCORES_FILE}); every row, with a modality missing or not, is now "
                  f"flagged above {new:g} (fit the run again for thresholds per subset)")
    if detector.config.anomaly is None:  # the defaults, now written out
        detector.config.anomaly = AnomalyConfig.model_validate(update)
    else:  # field by field: only the anomaly section is validated again, not a saved run's whole config
        for key, value in update.items():  # (whose older settings may load only as a saved run's)
            setattr(detector.config.anomaly, key, value)
    detector._fitted_settings = model_settings(detector.config)  # the change is the model's own, not one to refuse
    detector.info["threshold"] = float(model.scorer.threshold)
    detector.info["subset_thresholds"] = subset_threshold_table(detector)
    _flag_rates_at(detector, detector.metrics, {"valid": detector.valid_scores, "test": detector.test_scores})

    scored = None if normal is None else normal[~np.isnan(normal)]
    subsets = _subset_rates(detector)
    return {"old": old, "new": float(model.scorer.threshold),
            "valid_fpr": None if scored is None or not scored.size else float((scored > new).mean()),
            "valid_normals": None if scored is None else int(scored.size), "subsets": subsets,
            "unscored_subsets": {} if subsets is None else {subset_label(c): model.scorer.unscored_reason
                                                            for c in scored_subsets(detector)[1]}}


def _subset_rates(detector: AnomalyDetector) -> dict[str, dict[str, Any]] | None:
    """Each non-empty subset's new threshold, its validation false-positive rate (``valid_fpr``:
    the share of the validation normal rows holding the subset, scored with it alone, above the
    threshold) and their number (``valid_normals``), for the subsets the scorer scores
    (:func:`scored_subsets`); None for a model with one threshold."""
    table = subset_threshold_table(detector)
    subset_scores = detector.kept.get("valid_subset_scores")
    if table is None or subset_scores is None:
        return None
    names = list(detector.model.names)
    out = {}
    for coalition in scored_subsets(detector)[0]:
        scores, label = subset_scores[mask_of(coalition, names)], subset_label(coalition)
        out[label] = {"threshold": table[label], "valid_fpr": flag_rate(scores, table[label]),
                      "valid_normals": int(np.count_nonzero(~np.isnan(scores)))}
    return out


def kept_held(detector: AnomalyDetector, split: str, rows: int) -> np.ndarray | None:
    """(N,) the bit masks of the modalities each of the ``rows`` rows of ``split`` (valid, test)
    held, as ``scores.npz`` keeps them; None when it does not (a run saved before), or keeps them
    for another number of rows."""
    held = detector.kept.get(f"{split}_held")
    return held if held is not None and held.shape == (rows,) else None


def _flag_rates_at(detector: AnomalyDetector, metrics: dict[str, Any], kept: dict[str, Scored | None]) -> None:
    """The flag rates of ``metrics`` (by split) at the detector's thresholds (each row at that of
    the modalities it held; all at the full set's where the rows' modalities were not kept), from
    the ``kept`` scores (a split whose scores were not kept gets None and a note)."""
    threshold = float(detector.model.scorer.threshold)
    for split, pair in kept.items():
        scores_of = metrics.get(split)
        if not isinstance(scores_of, dict) or "flag_fpr" not in scores_of:
            continue
        if pair is None:
            scores_of["flag_fpr"] = scores_of["flag_tpr"] = None
            note = "flag_fpr and flag_tpr: not known at the threshold set after the fit (no scores kept)"
            add_note(scores_of, note)  # said once, however often the threshold is set
            continue
        scores, y = pair
        known = y >= 0
        held = kept_held(detector, split, len(scores))
        at = np.full(len(scores), threshold) if held is None else detector.row_thresholds(held)
        scores_of.update({key: anomaly_metrics(scores[known], y[known], at[known])[key]
                          for key in ("flag_fpr", "flag_tpr")})
