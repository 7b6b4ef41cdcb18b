"""Modality attribution: what each modality contributed to each prediction.

``explain(predictor, data)`` computes, per sample, Shapley values over modalities: the value of
a coalition is the model's score of the explained output with only those modalities present, every other one hidden through the model's missing path
(presence masks, as for a missing cell). Exact over all 2^M coalitions up to
:data:`~polymodal.utils.shapley.EXACT_MAX_MODALITIES` modalities, permutation-sampled
beyond (:func:`~polymodal.utils.shapley.shapley_plan`, the plan the exported runtime follows
too). The global importance of a modality is its mean |Shapley value| and, on labelled data,
how much the metric (over every output) drops when it alone is removed.

The explained output is, by default, the predicted class (classification: its probability) or
the first output (multilabel: the first label's probability; regression: the first target's
value; anomaly detection: the anomaly score, with AUROC as the metric), the rule the runtime and
the service share (:func:`polymodal.utils.scores.explained_outputs`); ``output=`` picks another.
``Explanation.explained_quantity`` names it. Within each modality, Captum's Integrated Gradients
attribute the prediction to pixels, tokens, time-frequency bins or signal steps
(:mod:`polymodal.evaluation.integrated_gradients`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from polymodal.config.task_metrics import TASK_METRICS
from polymodal.data.skipped import skipped_frame
from polymodal.estimator import EXPLAIN, untrained_absences
from polymodal.evaluation.coalitions import coalition_outputs
from polymodal.evaluation.data import EvalData, check_max_rows, load_eval_data, output_names, to_scores
from polymodal.evaluation.integrated_gradients import WithinAttribution, within_modality
from polymodal.metrics.anomaly import flags
from polymodal.multitask import main_task
from polymodal.utils.coalitions import against_reference, coalition_of, coalition_values, held_masks, mask_of
from polymodal.utils.scores import (
    decisions,
    explained_name,
    explained_outputs,
    explained_quantity,
    output_index,
    softmax,
)
from polymodal.utils.shapley import PERMUTATIONS, SEED, ShapleyPlan, shapley_interactions, shapley_plan

if TYPE_CHECKING:
    from polymodal.data.pipeline import DataSource
    from polymodal.estimator import Estimator


@dataclass
class Explanation:
    """Attributions for N samples over M modalities and K outputs.

    Attributes:
        modalities: names, sorted (the M axis).
        outputs: output names (classes, labels or targets; the K axis).
        rows: (N,) row numbers in the explained manifest.
        phi: (N, M, K) Shapley values of every output.
        base: (N, K) scores with no modality present.
        full: (N, K) scores with every modality the row holds present.
        explained: (N,) the output explained per row (index into ``outputs``): by default the
            predicted class (classification) or the first output (multilabel, regression).
        exact: exact Shapley values (else permutation-sampled).
        interactions: (N, M, M, K) pairwise Shapley interactions (exact only), else None.
        importance: per modality: ``mean_abs_shapley``, ``share``, ``mean_shapley`` and, with
            labels, the metric with all modalities, without this one, the drop, and alone.
        within: Integrated-Gradients attributions inside each modality for a few samples.
        explained_quantity: what the Shapley values attribute, in words, e.g. ``probability of
            the predicted class`` or ``probability of label 'kw_leak'`` (also the importance
            table's ``explained`` column).
        task: the (main) task explained.
        labels: (N,) each row's true class (classification with labels) or label as written
            (anomaly detection with a target column), else None.
        index: (N,) how ``values`` names the rows: a DataFrame's own index labels when it had
            some (as ``predict_proba`` does), else None (the row numbers, ``rows``).
        threshold: an anomaly detector's flag threshold (a score above it is flagged), a two-class
            classifier's decision threshold (its predicted class: ``decision.threshold``), else None.
        reference: what ``base`` is: ``none``, the score with every modality hidden; ``normal``
            (anomaly detection), the normal validation rows' mean score with the row's modalities.
        present: (N, M) True where the row holds the modality.
        untrained: the modalities whose absence training never showed the model, as the
            coalitions hide them (:func:`~polymodal.estimator.untrained_absences`); None where not known.
        truth: (N, K) each row's true value of every output, as the manifest writes it (multilabel:
            0/1; regression: on the target's scale; NaN for a blank cell) where the explained rows
            have targets (multilabel, regression), else None.
        row_thresholds: (N,) an anomaly detector's flag threshold of each row, that of the
            modalities it holds (:meth:`~polymodal.anomaly.detector.AnomalyDetector.row_thresholds`;
            ``threshold`` is the full set's), else None.

    An anomaly detector's explanation attributes the anomaly score against normal rows: each
    coalition's score minus the normal validation rows' mean score under the same coalition of the
    modalities the row holds (:meth:`~polymodal.anomaly.detector.AnomalyDetector.coalition_reference`,
    :func:`polymodal.utils.coalitions.against_reference`), so that the Shapley values add up to how far
    the row's score lies above the normal rows' mean with the same modalities (``base``), a positive
    one is a modality that pushed the row towards a flag, and a modality the row lacks gets 0. (A
    run saved before that mean was recorded, or one with more than 6 modalities, is explained
    against no modality, ``reference`` ``none``.) A row the scorer could not score (NaN) has NaN
    Shapley values and base, and a coalition it cannot score counts 0
    (:func:`polymodal.utils.coalitions.coalition_values`).
    """

    modalities: list[str]
    outputs: list[Any]
    rows: np.ndarray
    phi: np.ndarray
    base: np.ndarray
    full: np.ndarray
    explained: np.ndarray
    exact: bool
    interactions: np.ndarray | None
    importance: pd.DataFrame
    within: list[WithinAttribution] = field(default_factory=list)
    explained_quantity: str = ""
    task: str = ""
    labels: np.ndarray | None = None
    index: pd.Index | None = None
    threshold: float | None = None
    reference: str = "none"
    present: np.ndarray | None = None
    untrained: list[str] | None = None
    truth: np.ndarray | None = None
    row_thresholds: np.ndarray | None = None

    def __repr__(self) -> str:
        """One line: what was explained, over what (the arrays are in ``values``, ``importance``)."""
        table = self.importance
        shares = ", ".join(f"{m} {v:.2f}" for m, v in zip(table["modality"], table["share"])) \
            if {"modality", "share"} <= set(table.columns) else ""
        return (f"Explanation({len(self.rows)} rows x {len(self.modalities)} modalities {self.modalities}, "
                f"{'exact' if self.exact else 'sampled'} Shapley values of the {self.explained_quantity or 'score'}"
                + (" against normal rows" if self.reference == "normal" else "")
                + (f"; share of |Shapley|: {shares}" if shares else "") + f"; {len(self.within)} within-modality maps"
                + (f"; {len(caveats)} caveat(s): see .caveats()" if (caveats := self.caveats()) else "") + ")")

    def caveats(self) -> list[str]:
        """What to keep in mind reading these values, as sentences: :meth:`missing_path_note` and
        :meth:`base_bias` where they apply (the command, the page and the report show them)."""
        return [note for note in (self.missing_path_note(), self.base_bias()) if note is not None]

    def missing_path_note(self) -> str | None:
        """A warning when the model never trained on rows without some of the modalities
        (``untrained``, two modalities or more): each coalition that hides one of them is then
        scored on inputs the model never saw in training. An anomaly detector's values are
        measured against normal rows under the same coalition, which removes a shift common to
        every row but not the scorer's unfamiliarity with the input; it has no subset loss, so only
        ``train.modality_dropout`` is suggested. None otherwise."""
        untrained = [m for m in self.untrained or [] if m in self.modalities]
        if not untrained or len(self.modalities) < 2:
            return None
        anomaly = self.task == "anomaly"
        subset = "" if anomaly else " and loss.subset_weight is 0"
        if len(untrained) == len(self.modalities):
            what = ("rows with a modality hidden (train.modality_dropout is 0 for every modality" + subset
                    + ")", "every coalition short of all modalities")
        else:
            named = " or ".join(map(repr, untrained))
            what = (f"rows without {named} (train.modality_dropout is 0 for {'it' if len(untrained) == 1 else 'them'}"
                    + subset + ", and every training row held " + ("it" if len(untrained) == 1 else "them") + ")",
                    f"every coalition that hides {named}")
        return (f"this model never trained on {what[0]}. Shapley values hide modalities through that missing path "
                f"(a learned missing-embedding in their place), so {what[1]} is scored on inputs the model never saw, "
                "and the values may describe that untrained path as much as the row"
                + (". Measuring against normal rows under the same coalition removes only a shift common to every row"
                   if self.reference == "normal" else "")
                + ". For attributions over modalities, train with train.modality_dropout (e.g. 0.3)"
                + ("" if anomaly else " or loss.subset_weight (e.g. 1.0)")
                + " (see docs/robustness-and-attribution.md)")

    def base_bias(self) -> str | None:
        """A warning when a classifier's prediction with no modality present (``base``, the same
        for every row) favours one class well above an even split: rows of that class are then
        explained against a base that already predicts them, and their Shapley values are small
        whatever their inputs show (modality dropout keeps a modality in every training row, so
        the path with none present never trains). None otherwise."""
        if self.task != "classification" or self.reference != "none" or self.base.size == 0:
            return None
        mean = np.nanmean(self.base, axis=0)
        top = int(decisions("classification", mean[None], self.threshold)[0])  # the class the base is called
        k = len(mean)
        if mean[top] <= 0.5 + 0.5 / k:
            return None
        return (f"with no modality present the model predicts {self.outputs[top]!r} (probability {mean[top]:.2f}): "
                f"rows of that class are explained against a base that already predicts them, so their Shapley "
                "values are small whatever their inputs show (the path with no modality present never trains); "
                "compare their modalities with each other, not with other classes' rows")

    def _pick(self, array: np.ndarray) -> np.ndarray:
        """The explained output of each row: (N, ..., K) -> (N, ...)."""
        return np.take_along_axis(array, self.explained.reshape(-1, *([1] * (array.ndim - 1))), axis=-1)[..., 0]

    @property
    def values(self) -> pd.DataFrame:
        """Per row: the explained output, its score without any modality (``base``; an anomaly
        detector's: the normal rows' mean score), each modality's Shapley value, and the score with
        all present (``prediction`` = base + sum); an anomaly detector's rows add their ``flag``
        and, with labels, their ``label``; with targets, a multilabel model's rows add the explained
        label's ``truth`` (0/1) and a regression's the explained target's ``truth`` and ``error``
        (``prediction`` - ``truth``), after the other columns. Indexed like ``predict_proba``: by a
        DataFrame's own index, else by row number."""
        index = self.index if self.index is not None else pd.Index(self.rows, name="row")
        frame = pd.DataFrame(self._pick(self.phi), columns=self.modalities, index=index)
        frame.insert(0, "base", self._pick(self.base))
        frame.insert(0, "explained", np.asarray(self.outputs, dtype=object)[self.explained])
        frame["prediction"] = self._pick(self.full)
        if self.task == "anomaly":
            if self.threshold is not None:  # no score (NaN) is flagged, as predict flags it
                frame["flag"] = flags(frame["prediction"].to_numpy(),
                                      self.threshold if self.row_thresholds is None else self.row_thresholds)
            if self.labels is not None:
                frame["label"] = self.labels
        if self.truth is not None:  # last, so that readers of the earlier columns read them where they were
            truth = self._pick(self.truth)
            if self.task == "multilabel":
                frame["truth"] = pd.Series(truth, index=frame.index).round().astype("Int64")  # a blank: <NA>
            else:
                frame["truth"] = truth
                frame["error"] = frame["prediction"] - truth
        return frame

    def by_group(self) -> pd.DataFrame:
        """An anomaly detector's rows per label (normal, each anomaly label) or, without labels,
        flagged or not: which modality each kind of anomaly shows in. Columns ``label`` (or
        ``flag``), ``rows`` (scored rows), each modality's mean Shapley value, then ``<modality>
        first``: the share of the rows where that modality's value is the largest (a mean is
        swayed by a few large scores; this counts rows, a tie sharing its row, a modality the row
        lacks never first). Empty for other tasks."""
        if self.task != "anomaly" or (self.labels is None and self.threshold is None):
            return pd.DataFrame()
        values = self.values.reset_index(drop=True)
        scored = values["prediction"].notna().to_numpy()
        if self.labels is not None:
            what, groups = "label", np.asarray(["(no label)" if v is None else str(v) for v in self.labels], object)
        else:
            what, groups = "flag", np.where(values["flag"], "flagged", "not flagged")
        phi = values.loc[scored, self.modalities]
        held = np.ones(phi.shape, bool) if self.present is None else self.present[scored]
        candidates = np.where(held, phi.to_numpy(), -np.inf)  # a modality the row lacks is never first
        winners = candidates == candidates.max(axis=1, keepdims=True)
        first = pd.DataFrame(winners / winners.sum(axis=1, keepdims=True), index=phi.index,  # a tie shares the row
                             columns=[f"{m} first" for m in self.modalities])
        grouped = pd.concat([phi, first], axis=1).groupby(groups[scored])
        table = grouped.mean().reset_index(names=what)
        table.insert(1, "rows", grouped.size().to_numpy())
        return table

    def interaction_table(self) -> pd.DataFrame:
        """Per modality pair: mean and mean |interaction| of the explained output (exact only)."""
        if self.interactions is None:
            return pd.DataFrame(columns=["modality_a", "modality_b", "mean_interaction", "mean_abs_interaction"])
        picked = self._pick(self.interactions)  # (N, M, M)
        rows = []
        for i, a in enumerate(self.modalities):
            for j in range(i + 1, len(self.modalities)):
                rows.append({"modality_a": a, "modality_b": self.modalities[j],
                             "mean_interaction": float(picked[:, i, j].mean()),
                             "mean_abs_interaction": float(np.abs(picked[:, i, j]).mean())})
        return pd.DataFrame(rows)

    def to_html(self, folder: str | Path, title: str = "Modality attribution") -> Path:
        """Write ``explain.html`` (plots and heat-maps embedded), ``shapley.csv`` and
        ``importance.csv`` into ``folder``; return the page's path."""
        from polymodal.evaluation.explain_page import write_explanation

        return write_explanation(self, Path(folder), title)


def _masks(plan: ShapleyPlan) -> list[int]:
    """The coalition masks to evaluate: the Shapley plan's, and those the importance table reads
    (each modality alone, every one but each, all)."""
    full = (1 << plan.m) - 1
    extra = {1 << i for i in range(plan.m)} | {full & ~(1 << i) for i in range(plan.m)} | {full}
    return sorted(set(plan.masks) | extra)


def _importance(predictor: Estimator, names: list[str], picked_phi: np.ndarray,
                raw: dict[int, np.ndarray], targets: np.ndarray | None, held: list[bool],
                quantity: str) -> pd.DataFrame:
    """Mean |Shapley| per modality and its share, and what those Shapley values attribute
    (``explained``); with labels, the metric (over every output) with every modality, without
    each one and with each one alone (NaN for a modality no row holds: that would score predictions
    made from nothing), and for a classifier's accuracy the drop's 95% bootstrap interval
    (``accuracy_drop_low`` / ``_high``: :func:`drop_interval`)."""
    mean_abs = np.abs(picked_phi).mean(axis=0) if len(picked_phi) else np.zeros(len(names))
    total = float(mean_abs.sum())
    frame = pd.DataFrame({"modality": names, "mean_abs_shapley": mean_abs,
                          "share": mean_abs / total if total > 0 else np.zeros(len(names)),
                          "mean_shapley": picked_phi.mean(axis=0) if len(picked_phi) else np.zeros(len(names)),
                          "explained": quantity})
    metric = TASK_METRICS[predictor.config.task].sweep
    if targets is not None and metric is not None and len(targets):
        full = (1 << len(names)) - 1

        def score(mask: int) -> float:
            value = predictor.score_outputs(raw[mask], targets)[metric]
            return float("nan") if value is None else float(value)

        frame[f"{metric}_all"] = score(full)
        frame[f"{metric}_without"] = [score(full & ~(1 << i)) for i in range(len(names))]
        frame[f"{metric}_drop"] = frame[f"{metric}_all"] - frame[f"{metric}_without"]
        if metric == "accuracy" and np.ndim(targets) == 1:  # a single classification task: rows right or wrong
            threshold = predictor.pipeline.targets.threshold  # the calls the accuracy counts
            right = {mask: decisions("classification", softmax(raw[mask].astype(np.float64)), threshold) == targets
                     for mask in (full, *(full & ~(1 << i) for i in range(len(names))))}
            bounds = [drop_interval(right[full], right[full & ~(1 << i)]) for i in range(len(names))]
            frame[f"{metric}_drop_low"], frame[f"{metric}_drop_high"] = zip(*bounds, strict=True)
        frame[f"{metric}_alone"] = [score(1 << i) if held[i] else float("nan") for i in range(len(names))]
    return frame


def drop_interval(right: np.ndarray, right_without: np.ndarray, resamples: int = 2000,
                  seed: int = 0) -> tuple[float, float]:
    """A 95% bootstrap interval of the accuracy drop ``mean(right) - mean(right_without)`` over
    the same rows (resampled in pairs), so that a drop of one row in twenty is not read as a
    finding."""
    change = np.asarray(right, np.float64) - np.asarray(right_without, np.float64)
    if not len(change):
        return float("nan"), float("nan")
    rows = np.random.default_rng(seed).integers(0, len(change), (resamples, len(change)))
    low, high = np.percentile(change[rows].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def explain(predictor: Estimator, data: DataSource | EvalData, *, max_rows: int | None = None,
            seed: int = SEED, samples: int = 4, permutations: int = PERMUTATIONS, steps: int = 32,
            output: Any | None = None) -> Explanation:
    """Shapley values over modalities for every row (and Integrated Gradients within each
    modality for ``samples`` rows: :func:`mapped_rows`).

    Args:
        data: a manifest (labels optional: with them, the importance table adds metric drops).
        max_rows: explain a seeded random sample of at most this many rows (at least 1).
        seed: for the row sample and the sampled orders (beyond 6 modalities: the runtime's
            ``Runtime.explain`` samples the same orders with the same seed).
        samples: rows that get within-modality attributions (0: none), chosen by :func:`mapped_rows`.
        permutations: sampled orders when the model has more than 6 modalities (rounded up to an
            even number: each random order is followed by its reverse).
        steps: Integrated-Gradients interpolation steps.
        output: the output to explain: a class (classification), label column (multilabel) or
            target column (regression), compared as given, then as text (``"3"`` names class
            ``3``). Default: each row's predicted class (classification), else the first output.

    Raises:
        SchemaMismatchError: ``output`` is not one of the model's outputs.
        OptionError: ``max_rows`` is below 1.
    """
    predictor.require(EXPLAIN)
    check_max_rows(max_rows)
    predictor.require_fitted()  # before the outputs are named from the fitted targets
    task, outputs_named = predictor.config.task, output_names(predictor)
    chosen = output_index(output, outputs_named, task)  # checked before the work
    if not isinstance(data, EvalData):  # read here: its skipped files are this call's to report
        data = load_eval_data(predictor, data, require_target=None, max_rows=max_rows, seed=seed)
        predictor.eval_skipped = skipped_frame(data.table.skipped)
        predictor.warn_skipped(predictor.eval_skipped, "the predictor's .eval_skipped")
    names = list(predictor.config.modality_names)
    m = len(names)
    plan = shapley_plan(m, permutations, seed)
    by_name = [coalition_of(mask, names) for mask in _masks(plan)]
    outputs = coalition_outputs(predictor, data.features, by_name)  # (C, N, K): no cached encoder runs
    raw = {mask_of(c, names): outputs[k] for k, c in enumerate(by_name)}
    values = {mask: coalition_values(to_scores(predictor, out)) for mask, out in raw.items()}
    reference = predictor.coalition_reference() if plan.exact else None  # per coalition, exact values only
    present = np.stack([data.table.modalities[n].present for n in names], axis=1)  # (N, M)
    values, base = against_reference(values, reference, held_masks(present))  # base + sum(phi) = full
    phi = plan.estimate(values)
    full = to_scores(predictor, raw[(1 << m) - 1])
    unscored = np.isnan(full).any(axis=1)  # no score to attribute (anomaly: a scorer that could not score the row)
    phi[unscored], base[unscored] = np.nan, np.nan
    threshold = (float(predictor.require_fitted()[1].scorer.threshold) if task == "anomaly"
                 else predictor.pipeline.targets.threshold if task == "classification" else None)
    explained = explained_outputs(task, full, chosen, threshold if task == "classification" else None)
    quantity = explained_quantity(task, explained_name(task, outputs_named, chosen))
    interactions = shapley_interactions(values, m) if plan.exact and m > 1 else None
    if interactions is not None:
        interactions[unscored] = np.nan
    picked = np.take_along_axis(phi, explained[:, None, None], axis=-1)[..., 0]
    importance = _importance(predictor, names, picked[~unscored], raw, data.targets,
                             [bool(data.table.modalities[n].present.any()) for n in names], quantity)
    truth, labels = None, None
    if task == "classification" and data.targets is not None:
        _, truth = main_task(predictor.pipeline.targets, full, data.targets)  # a multi-task model: its main task
        labels = np.asarray(outputs_named, dtype=object)[truth]
    elif task == "anomaly" and data.targets is not None:  # each row's label as written (normal, a fault's name)
        labels = np.asarray(predictor.pipeline.targets.labels(data.manifest, data.table.rows), dtype=object)
    elif task in ("multilabel", "regression") and data.targets is not None:  # as written, not through float32 scaling
        truth = data.manifest.select(outputs_named, data.table.rows).apply(pd.to_numeric).to_numpy(np.float64)
    within = within_modality(predictor, data, mapped_rows(task, full, truth, samples, threshold, explained),
                             explained, steps) if samples else []
    index = data.manifest.row_index(data.table.rows) if data.manifest.labels is not None else None
    return Explanation(names, outputs_named, data.source_rows, phi, base, full, explained,
                       plan.exact, interactions, importance, within, quantity, task, labels, index, threshold,
                       "normal" if reference is not None else "none", present, untrained_absences(predictor),
                       truth if task in ("multilabel", "regression") else None,
                       predictor.row_thresholds(held_masks(present)) if task == "anomaly" else None)


def mapped_rows(task: str, full: np.ndarray, truth: np.ndarray | None, samples: int,
                threshold: float | None = None, explained: np.ndarray | None = None) -> np.ndarray:
    """Table positions of the ``samples`` rows that get within-modality maps. Classification: a
    misclassified row first (with labels), then each predicted class in turn, so that the maps do
    not all show the class a sorted manifest starts with; anomaly detection: the highest scores (the
    rows a monitor raises); multilabel and regression: with targets, the worst-predicted rows first
    (:func:`worst_rows`: up to half of the maps), the others spread evenly over the remaining rows.

    Args:
        full: (N, K) scores with every modality the row holds.
        truth: (N,) true class indices (classification) or (N, K) true values (multilabel,
            regression), or None without targets.
        explained: (N,) the output explained per row (default: the first).
    """
    n = min(samples, len(full))
    if n <= 0:
        return np.zeros(0, np.int64)
    if task == "anomaly":
        scored = np.flatnonzero(~np.isnan(full[:, 0]))
        return np.sort(scored[np.argsort(-full[scored, 0], kind="stable")[:n]])
    if task != "classification":
        worst = worst_rows(task, full, truth, explained)[:(n + 1) // 2] if truth is not None else np.zeros(0, np.int64)
        rest = np.setdiff1d(np.arange(len(full)), worst)
        spread = rest[np.unique(np.linspace(0, len(rest) - 1, n - len(worst)).round().astype(np.int64))] \
            if n > len(worst) else np.zeros(0, np.int64)
        return np.sort(np.concatenate([worst, spread])).astype(np.int64)
    predicted = decisions(task, full, threshold)  # a two-class classifier's at its decision threshold
    wrong = np.flatnonzero(predicted != truth) if truth is not None else np.zeros(0, np.int64)
    chosen = [int(wrong[0])] if len(wrong) else []
    classes = sorted(dict.fromkeys(predicted.tolist()), key=lambda c: c in predicted[chosen])  # the mistake's last
    queues = [list(np.flatnonzero(predicted == c)) for c in classes]
    while len(chosen) < n:
        for queue in queues:
            while queue and queue[0] in chosen:
                queue.pop(0)
            if queue and len(chosen) < n:
                chosen.append(int(queue.pop(0)))
    return np.asarray(sorted(chosen), np.int64)


def worst_rows(task: str, full: np.ndarray, truth: np.ndarray, explained: np.ndarray | None = None) -> np.ndarray:
    """Table positions of the worst-predicted rows of the explained output (``explained``, default
    the first), worst first: regression, by absolute error; multilabel, the rows whose label is
    called wrongly (at :data:`~polymodal.utils.scores.MULTILABEL_THRESHOLD`), the most confidently
    wrong first. Rows whose true value is blank are left out."""
    rows = np.arange(len(full))
    pick = np.zeros(len(full), np.int64) if explained is None else explained
    predicted, true = full[rows, pick], truth[rows, pick]
    error = np.abs(predicted - true)
    if task == "multilabel":
        error[decisions(task, predicted) == true] = np.nan  # called right: not among the worst
    candidates = np.flatnonzero(~np.isnan(error))
    return candidates[np.argsort(-error[candidates], kind="stable")]
