"""CWRU bearings, load transfer: train on motor load 0, adapt to load 3 without its labels.

Data: ``../shared/data/cwru``, the 9 fault classes (ball / inner race / outer race at 0.007,
0.014, 0.021 inch; ``Normal`` is left out: it exists at load 0 only), 2,048-sample windows
(hop 1,024, the converter's default) of the drive-end (DE) and fan-end (FE) accelerometers as two signal modalities.
The ``cwru`` converter splits each recording by position (70% / 10% / 20%, no shared samples).

- source (labelled): load-0 train windows; model selection on load-0 valid windows (no target
  label is used for training or selection);
- target (unlabelled): load-3 train windows without labels;
- reported: accuracy on the load-3 test windows.

Methods: source-only, DANN, CDAN+E, multi-kernel MMD, CORAL, FixMatch and CDAN+E + FixMatch, on the
fused representation (``transfer_digits.METHODS``).

    python benchmarks/transfer_cwru.py --data-root ../shared/data
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import keep_best, mean_std, parser, prepared, require_data, save
from transfer_digits import METHODS  # the same methods

from polymodal import MultimodalPredictor

SOURCE, TARGET = 0, 3


def signal(column: str) -> dict[str, Any]:
    return {"kind": "signal", "column": column, "preprocess": {"length": 2048, "normalize": "sample"},
            "encoder": {"name": "cnn1d", "channels": [16, 32, 64], "kernel": 15, "stem_stride": 4, "dim": 64,
                        "dropout": 0.1}}


def config(transfer: dict[str, Any] | None, seed: int, epochs: int) -> dict[str, Any]:
    return {
        "task": "classification", "target": "label",
        "modalities": {"de": signal("de_path"), "fe": signal("fe_path")},
        "fusion": {"name": "concat"},
        "head": {"name": "mlp", "hidden": [64], "dropout": 0.1},
        "transfer": transfer,
        "train": {"epochs": epochs, "batch_size": 32, "lr": 2e-3, "seed": seed, "progress": False,
                  "early_stopping": keep_best("accuracy", epochs), "num_workers": 0},
        "report": {"rows": 0},
    }


def datasets(root: Path, work: Path) -> dict[str, Path]:
    folder = work / "cwru"
    prepared("cwru", folder, root, seed=0, loads=[SOURCE, TARGET])
    frames = {s: pd.read_csv(folder / f"{s}.csv") for s in ("train", "valid", "test")}
    frames = {s: f[f["label"] != "Normal"] for s, f in frames.items()}
    parts = {
        "source": frames["train"][frames["train"]["load"] == SOURCE],
        "source_valid": frames["valid"][frames["valid"]["load"] == SOURCE],
        "target": frames["train"][frames["train"]["load"] == TARGET].drop(columns="label"),
        "target_test": frames["test"][frames["test"]["load"] == TARGET],
    }
    paths = {}
    for name, frame in parts.items():
        paths[name] = folder / f"load_{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def main() -> None:
    p = parser(__doc__.split("\n")[0], seeds=3, epochs=6, methods=METHODS)
    args = p.parse_args()
    require_data(args.data_root, "cwru", "files.csv")
    paths = datasets(args.data_root, args.work)
    seeds = list(range(1 if args.quick else args.seeds))
    epochs = 2 if args.quick else args.epochs
    rows = []
    for name in args.methods:
        accs, secs, valid = [], [], []
        for seed in seeds:
            started = time.perf_counter()
            predictor = MultimodalPredictor.from_config(config(METHODS[name], seed, epochs))
            unlabeled = paths["target"] if METHODS[name] is not None else None
            predictor.fit(paths["source"], paths["source_valid"], unlabeled=unlabeled)
            accs.append(predictor.evaluate(paths["target_test"])["accuracy"] * 100)
            secs.append(time.perf_counter() - started)
            valid.append(predictor.metrics["valid"]["accuracy"] * 100)
            print(f"{name:<12} seed {seed}: load-{TARGET} test {accs[-1]:.2f}%  ({secs[-1]:.0f} s)", flush=True)
        mean, std = mean_std(accs)
        rows.append({"method": name, f"load{TARGET}_test_accuracy_%": round(mean, 2), "std": round(std, 2),
                     "runs": [round(a, 2) for a in accs], "fit_seconds": round(mean_std(secs)[0]),
                     f"load{SOURCE}_valid_accuracy_%": round(mean_std(valid)[0], 2)})
    sizes = {k: len(pd.read_csv(v)) for k, v in paths.items()}
    notes = [f"{len(seeds)} seed(s); {epochs} epochs, batch 32 labelled + 32 unlabelled, AdamW lr 2e-3 with cosine "
             "decay; best load-0 validation accuracy epoch restored",
             f"windows: {sizes['source']} source train, {sizes['source_valid']} source valid, {sizes['target']} "
             f"unlabelled target, {sizes['target_test']} target test; 9 fault classes",
             "encoders: per sensor a 1-D CNN (stem stride 4, channels 16/32/64, kernel 15) on per-window "
             "standardised 2,048-sample windows; concat fusion, MLP head"]
    save("transfer_cwru", f"CWRU bearings: load {SOURCE} -> load {TARGET} (DE + FE vibration)",
         {f"Load-{TARGET} test accuracy": rows}, notes)


if __name__ == "__main__":
    main()
