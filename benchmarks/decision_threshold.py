"""PneumoniaMNIST: a two-class classifier's operating point (``decision.threshold``) chosen on the
validation rows, against the more probable class.

Data: ``../shared/data/pneumoniamnist`` (28x28 chest X-rays; positive class ``pneumonia``). This
copy's train split holds 388 normal / 3,494 pneumonia images and val the official 524, while the
official test split holds 234 normal / 390 pneumonia: a model that ranks test rows well (AUROC
~0.97) calls too many normal lungs pneumonia at the default. The model is the scratch CNN of
``pneumonia_transfer.py`` (best validation-AUROC epoch), trained with balanced class weights and
with none (plain cross-entropy on 90% pneumonia), fitted once per seed and weighting with
``decision: {threshold: auto}``; every other operating point is set on the same fitted model with
``set_threshold`` from the validation probabilities its run keeps (no retraining), and all are
scored on ``test``.

    python benchmarks/decision_threshold.py --data-root ../shared/data
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from _common import mean_std, parser, pneumoniamnist_splits, run_tasks, save
from pneumonia_transfer import config

from polymodal import MultimodalPredictor

SCRATCH = ({"name": "cnn", "channels": [32, 64, 128], "dim": 128, "dropout": 0.3},
           {"size": 28, "color": "gray", "normalize": "standard", "augment": {"rotate": 10, "translate": 0.1}})
WEIGHTS = ("balanced", "none")  # loss.class_weights of the two models
# label -> set_threshold arguments (None: the more probable class)
POINTS: dict[str, dict[str, Any]] = {
    "more probable class (default)": {"threshold": None},
    "auto: balanced accuracy": {"threshold": "auto", "metric": "balanced_accuracy"},
    "auto: mcc": {"threshold": "auto", "metric": "mcc"},
    "auto: sensitivity >= 0.95": {"threshold": "auto", "min_sensitivity": 0.95},
    "auto: specificity >= 0.90": {"threshold": "auto", "min_specificity": 0.90},
}


def fit_one(weights: str, seed: int, epochs: int, paths: dict[str, Path]) -> dict[str, Any]:
    """Test figures of every operating point of one seed's model (``weights``: its loss's class weights)."""
    started = time.perf_counter()
    cfg = config(*SCRATCH, seed, epochs) | {"decision": {"threshold": "auto"}}
    cfg["loss"]["class_weights"] = None if weights == "none" else weights
    pred = MultimodalPredictor.from_config(cfg).fit(paths["train"], paths["valid"])
    seconds = time.perf_counter() - started
    out = {"seconds": seconds, "points": {}}
    for label, point in POINTS.items():
        options = dict(point)
        pred.set_threshold(options.pop("threshold"), **options)
        point_threshold = pred.pipeline.targets.threshold
        scores = pred.evaluate(paths["test"])
        valid = pred.metrics["valid"]["positive_class"]
        rates = scores["positive_class"]
        out["points"][label] = {"threshold": point_threshold, "accuracy": scores["accuracy"],
                                "sensitivity": rates["sensitivity"], "specificity": rates["specificity"],
                                "valid_sensitivity": valid["sensitivity"], "valid_specificity": valid["specificity"],
                                "auroc": scores["auroc"]}
        print(f"{weights} weights, seed {seed}, {label}: threshold {point_threshold}, test acc {scores['accuracy']:.4f} sens "
              f"{rates['sensitivity']:.4f} spec {rates['specificity']:.4f}", flush=True)
    return out


def main() -> None:
    p = parser(__doc__.split("\n")[0], seeds=3, epochs=15)
    args = p.parse_args()
    paths = pneumoniamnist_splits(args)
    if args.quick:
        args.epochs = 2
    seeds = list(range(1 if args.quick else args.seeds))
    tasks = [(weights, seed, args.epochs, paths) for weights in WEIGHTS for seed in seeds]
    results = run_tasks(fit_one, tasks, args.jobs, args.work / "journal-decision_threshold.jsonl", args.resume)
    rows = []
    for weights, label in ((w, p) for w in WEIGHTS for p in POINTS):
        runs = [r["points"][label] for t, r in zip(tasks, results, strict=True) if t[0] == weights]

        def figure(key: str, runs: list[dict[str, Any]] = runs) -> tuple[float, float]:
            return mean_std([100 * r[key] for r in runs])

        (acc, acc_sd), (sens, sens_sd), (spec, spec_sd) = figure("accuracy"), figure("sensitivity"), figure("specificity")
        thresholds = [r["threshold"] for r in runs]
        rows.append({"class weights": weights, "operating point": label,
                     "threshold": "-" if thresholds[0] is None else round(mean_std(thresholds)[0], 3),
                     "test_accuracy_%": round(acc, 2), "acc_std": round(acc_sd, 2),
                     "test_balanced_accuracy_%": round((sens + spec) / 2, 2),
                     "test_sensitivity_%": round(sens, 2), "sens_std": round(sens_sd, 2),
                     "test_specificity_%": round(spec, 2), "spec_std": round(spec_sd, 2),
                     "valid_sensitivity_%": round(figure("valid_sensitivity")[0], 2),
                     "valid_specificity_%": round(figure("valid_specificity")[0], 2)})
    aurocs = {w: mean_std([100 * r["points"][next(iter(POINTS))]["auroc"] for t, r in zip(tasks, results, strict=True)
                           if t[0] == w]) for w in WEIGHTS}
    notes = [f"{len(seeds)} seed(s), mean and std; one fit per seed and weighting "
             f"({mean_std([r['seconds'] for r in results])[0]:.0f} s each), every operating point set on it from its "
             "kept validation probabilities; test AUROC "
             + ", ".join(f"{a:.2f} +- {sd:.2f}% ({w} weights)" for w, (a, sd) in aurocs.items())
             + " at every point (a threshold does not move the ranking)",
             "scratch CNN of pneumonia_transfer.py: at most "
             f"{args.epochs} epochs, best validation-AUROC epoch restored; positive class: pneumonia",
             "val (524) comes from the training distribution (74% pneumonia), test (624) does not (62.5%): a "
             "threshold chosen on val carries its sensitivity to test better than its specificity"]
    save("decision_threshold", "PneumoniaMNIST: decision threshold chosen on validation vs the more probable class",
         {"Test figures by operating point (one model per seed)": rows}, notes)


if __name__ == "__main__":
    main()
