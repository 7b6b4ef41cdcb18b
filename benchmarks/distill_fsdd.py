"""Cross-modal distillation: an image teacher labels spoken digits through paired rows.

Data: the ``fsdd-mnist`` converter's speaker split (each training recording paired with an MNIST
image of its digit; test speakers ``theo`` and ``yweweler`` are never heard in training). The
teacher is an image-only CNN trained on the 1,800 training images with their labels (MNIST
images come labelled; the recordings do not). The student hears audio only: 10% of the training
recordings (18 per digit, seeded, as in ``semi_fsdd``) keep their label; the other 90% are pairs
nobody labelled (image + recording, no label).

Rows (the same 1,000 optimisation steps and audio model as ``semi_fsdd``):

- supervised only: the 180 labelled recordings;
- distill, labelled rows: the teacher teaches on those 180 rows (it adds nothing the labels do
  not already say, but the softened image-class distribution);
- distill + unlabelled pairs: the teacher also teaches on the 1,620 unlabelled pairs
  (``--unlabeled``), whose only targets are its outputs;
- supervised, all labels: the 1,800 recordings with their labels (the ceiling).

Reported: accuracy on the 1,000 test recordings of the unseen speakers.

    python benchmarks/distill_fsdd.py --data-root ../shared/data
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import parser, require_data, save
from semi_fsdd import BATCH, EPOCHS, datasets, seeded_row
from semi_fsdd import config as audio_config

from polymodal import MultimodalPredictor

METHODS: dict[str, str] = {
    "supervised only (10% labels)": "labeled",
    "distill, labelled rows only": "labeled",
    "distill + unlabelled pairs": "labeled",
    "supervised, all labels (ceiling)": "train",
}
TEMPERATURE = 2.0  # the teacher is near-certain on MNIST images: a milder softening than Hinton's 4 keeps its ranks


def teacher_config(seed: int) -> dict[str, Any]:
    return {
        "task": "classification", "target": "label",
        "modalities": {"image": {"kind": "image", "column": "image", "preprocess": {"size": 28, "color": "gray"},
                                 "encoder": {"name": "cnn", "channels": [16, 32], "dim": 64}}},
        "fusion": {"name": "concat"},
        "head": {"name": "mlp", "hidden": [], "dropout": 0.2},
        "train": {"epochs": 8, "batch_size": 64, "lr": 2e-3, "seed": seed, "progress": False, "num_workers": 0},
        "report": {"rows": 0},
    }


def main() -> None:
    p = parser(__doc__.split("\n")[0], seeds=3, epochs=EPOCHS, methods=METHODS,
               epochs_help="passes over the unlabelled manifest at batch 32 (this many x 50 steps)")
    args = p.parse_args()
    require_data(args.data_root, "fsdd", "recordings")
    paths = datasets(args.data_root, args.work, 0.1)
    paths["train"] = paths["valid"].parent / "train.csv"
    sizes = {k: len(pd.read_csv(paths[k])) for k in ("labeled", "unlabeled", "train")}
    seeds = list(range(1 if args.quick else args.seeds))
    epochs = 2 if args.quick else args.epochs
    steps = epochs * (sizes["unlabeled"] // BATCH)
    teacher_run = args.work / "distill_teacher"
    started = time.perf_counter()
    teacher = MultimodalPredictor.from_config(teacher_config(0)).fit(paths["train"], paths["valid"], out=teacher_run,
                                                                     overwrite=True)
    teacher_accuracy = teacher.evaluate(paths["test"])["accuracy"] * 100
    print(f"teacher (images): test {teacher_accuracy:.2f}%  ({time.perf_counter() - started:.0f} s)", flush=True)
    rows = []
    for name in args.methods:
        train = paths[METHODS[name]]
        distill = name.startswith("distill")
        unlabeled = paths["unlabeled"] if "unlabelled pairs" in name else None
        size = sizes["unlabeled"] if unlabeled is not None else sizes[METHODS[name]]
        run_epochs = math.ceil(steps / max(1, size // BATCH))  # the same number of steps for every row
        method = {"method": "distill", "teacher": str(teacher_run), "temperature": TEMPERATURE} if distill else None

        def fit(seed: int, method: dict[str, Any] | None = method, epochs: int = run_epochs, train: Path = train,
                unlabeled: Path | None = unlabeled) -> MultimodalPredictor:
            predictor = MultimodalPredictor.from_config(audio_config(method, seed, epochs, args.work / "cache"))
            return predictor.fit(train, paths["valid"], unlabeled=unlabeled)

        rows.append(seeded_row(name, seeds, run_epochs, fit, paths["test"]))
    notes = [f"{len(seeds)} seed(s); teacher: image-only CNN on the {sizes['train']:,} labelled training images, "
             f"{teacher_accuracy:.2f}% on the test rows' images; student: audio only, {sizes['labeled']} labelled "
             f"recordings (10%, stratified by digit) + {sizes['unlabeled']:,} unlabelled pairs for the last distill "
             f"row; {steps:,} optimisation steps per row (rounded up to whole epochs), batch {BATCH}; distillation "
             f"at temperature {TEMPERATURE}, feature matching weight 1.0, term weight 1.0",
             "audio model and preprocessing as semi_fsdd (8 kHz, 40 log-mel bands, mel_cnn); test: 1,000 "
             "recordings of 2 speakers never heard in training; compare rows seed by seed (the runs column)"]
    save("distill_fsdd", f"Cross-modal distillation, image teacher -> audio student (FSDD + MNIST pairs, "
         f"{steps:,} steps)", {"Test accuracy, unseen speakers": rows}, notes)


if __name__ == "__main__":
    main()
