"""Semi-supervised spoken digits: FSDD with 10% of the training labels, supervised-only vs
pseudo-labelling vs FixMatch.

Data: ``../shared/data/fsdd`` through the ``fsdd-mnist`` converter's speaker split (test speakers
``theo`` and ``yweweler`` are never heard in training); only the audio is used. Of the 1,800
training recordings, 10% (18 per digit, seeded) keep their label; the other 90% form the
unlabelled manifest. Model selection on the 200 validation recordings; reported: accuracy on
the 1,000 test recordings of the unseen speakers.

Every method takes the same number of optimisation steps (1,000 by default): the supervised-only
model runs through its 180 labelled rows as many times as that takes, the semi-supervised ones
through their unlabelled manifest (an epoch of those is the length of the unlabelled manifest, in
batches of 32, or 96 for the FixMatch row with 3 unlabelled rows per labelled one, as the paper's
mu). ``--epochs 6`` is the earlier 300-step budget (``semi_fsdd_6_epochs``).

    python benchmarks/semi_fsdd.py --data-root ../shared/data
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import keep_best, mean_std, parser, prepared, require_data, save

from polymodal import MultimodalPredictor

METHODS: dict[str, dict[str, Any] | None] = {
    "supervised only (10% labels)": None,
    "pseudo-label": {"method": "pseudo_label", "threshold": 0.95, "rampup": 0.2},
    "FixMatch": {"method": "fixmatch", "threshold": 0.95},
    "FixMatch, 3 unlabelled per labelled": {"method": "fixmatch", "threshold": 0.95, "unlabeled_batch_size": 96},
}
BATCH = 32
# passes over the unlabelled manifest at batch 32: 20 = 1,000 steps. At 300 steps (6) FixMatch's
# confident share of the unlabelled batch is still rising (about 20% in the last epoch) when the
# learning rate reaches 0, and it trails supervised-only training
EPOCHS = 20


def config(transfer: dict[str, Any] | None, seed: int, epochs: int, cache: Path) -> dict[str, Any]:
    return {
        "task": "classification", "target": "label",
        "modalities": {"spoken": {
            "kind": "audio", "column": "audio",
            "preprocess": {"sample_rate": 8000, "max_seconds": 1.0, "features": "log_mel", "n_mels": 40,
                           "frame_ms": 25, "hop_ms": 10, "normalize": "utterance",
                           "augment": {"time_masks": 1, "time_width": 8, "freq_masks": 1, "freq_width": 4,
                                       "shift": 8}},
            "encoder": {"name": "mel_cnn", "channels": [16, 32, 64], "dim": 64},
        }},
        "fusion": {"name": "concat"},
        "head": {"name": "mlp", "hidden": [], "dropout": 0.2},
        "transfer": transfer,
        "train": {"epochs": epochs, "batch_size": BATCH, "lr": 2e-3, "seed": seed, "progress": False,
                  "early_stopping": keep_best("accuracy", epochs), "num_workers": 0},
        "data": {"cache_dir": str(cache)},  # decoded log-mels are reused across runs
        "report": {"rows": 0},
    }


def seeded_row(name: str, seeds: list[int], epochs: int, fit: Callable[[int], MultimodalPredictor],
               test: Path) -> dict[str, Any]:
    """The table row of one method: ``fit(seed)`` for every seed (each printed as it ends), its
    test accuracy in %, mean, std and per seed, and the mean fit time."""
    accs, secs = [], []
    for seed in seeds:
        started = time.perf_counter()
        accs.append(fit(seed).evaluate(test)["accuracy"] * 100)
        secs.append(time.perf_counter() - started)
        print(f"{name:<34} seed {seed}: test {accs[-1]:.2f}%  ({secs[-1]:.0f} s)", flush=True)
    mean, std = mean_std(accs)
    return {"method": name, "test_accuracy_%": round(mean, 2), "std": round(std, 2), "runs": [round(a, 2) for a in accs],
            "epochs": epochs, "fit_seconds": round(mean_std(secs)[0])}


def datasets(root: Path, work: Path, fraction: float) -> dict[str, Path]:
    folder = work / "fsdd_mnist_speaker"
    prepared("fsdd-mnist", folder, root, seed=0, split="speaker")
    train = pd.read_csv(folder / "train.csv")
    rng = np.random.default_rng(0)
    labelled = np.concatenate([rng.choice(np.flatnonzero(train["label"] == d),
                                          size=round(fraction * (train["label"] == d).sum()), replace=False)
                               for d in sorted(train["label"].unique())])
    mask = np.zeros(len(train), bool)
    mask[labelled] = True
    paths = {"labeled": folder / "semi_labeled.csv", "unlabeled": folder / "semi_unlabeled.csv",
             "valid": folder / "valid.csv", "test": folder / "test.csv"}
    train[mask].to_csv(paths["labeled"], index=False)
    train[~mask].drop(columns="label").to_csv(paths["unlabeled"], index=False)
    return paths


def main() -> None:
    p = parser(__doc__.split("\n")[0], seeds=5, epochs=EPOCHS, methods=METHODS,
               epochs_help="passes over the unlabelled manifest at batch 32 (this many x 50 steps)")
    p.add_argument("--fraction", type=float, default=0.1, help="share of training rows that keep their label")
    args = p.parse_args()
    require_data(args.data_root, "fsdd", "recordings")
    paths = datasets(args.data_root, args.work, args.fraction)
    n_labeled, n_unlabeled = (len(pd.read_csv(paths[k])) for k in ("labeled", "unlabeled"))
    seeds = list(range(1 if args.quick else args.seeds))
    epochs = 2 if args.quick else args.epochs
    steps = epochs * (n_unlabeled // BATCH)  # the training loaders drop a last short batch
    rows = []
    for name in args.methods:
        method = METHODS[name]
        size, batch = (n_labeled, BATCH) if method is None else (n_unlabeled, method.get("unlabeled_batch_size", BATCH))
        run_epochs = math.ceil(steps / max(1, size // batch))  # the same number of steps for every method

        def fit(seed: int, method: dict[str, Any] | None = method, epochs: int = run_epochs) -> MultimodalPredictor:
            predictor = MultimodalPredictor.from_config(config(method, seed, epochs, args.work / "cache"))
            return predictor.fit(paths["labeled"], paths["valid"], unlabeled=paths["unlabeled"] if method else None)

        rows.append(seeded_row(name, seeds, run_epochs, fit, paths["test"]))
    notes = [f"{len(seeds)} seed(s); {n_labeled} labelled + {n_unlabeled} unlabelled training recordings "
             f"({args.fraction:.0%} labels, stratified by digit); {steps} optimisation steps per method (rounded up to "
             f"whole epochs), batch {BATCH} labelled (+ {BATCH} unlabelled, or 96); AdamW lr 2e-3, cosine decay; best "
             "validation epoch restored (validation: 200 recordings of the training speakers, near 95%: the "
             "supervised run, with 5 steps per epoch, has more epochs to choose from)",
             "audio: 8 kHz, 1 s, 40 log-mel bands, per-utterance standardisation; weak view = SpecAugment "
             "(1 time + 1 frequency mask, shift up to 8 frames); FixMatch's strong view adds stronger masks and "
             "noise (polymodal.data.strong); confidence threshold 0.95",
             "test: 1,000 recordings of 2 speakers never heard in training; seeds differ by several points, "
             "so compare methods seed by seed (the runs column, same seeds in the same order)"]
    name = "semi_fsdd" if args.epochs == EPOCHS or args.quick else f"semi_fsdd_{args.epochs}_epochs"
    save(name, f"Semi-supervised FSDD (speaker split, 10% labels, {steps:,} steps)",
         {"Test accuracy, unseen speakers": rows}, notes)


if __name__ == "__main__":
    main()
