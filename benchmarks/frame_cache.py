"""Cached per-frame vectors: a frozen frame encoder under a GRU that trains, with and without ``frame.cache``.

Two cases, each fitted three ways: without ``frame.cache`` (the frame encoder runs on every frame of
every clip in every epoch), with it on an empty frame cache (the first fit runs the encoder once per
clip, before the epochs, and stores the vectors) and with it again (a second fit with the same frame
weights reads every clip's vectors back). Every fit uses the preprocessed-tensor cache
(``data.cache_dir``), filled before the timed fits, so the frame cache is the only difference.

- Real data (read through ``--data-root``; skipped with a note where it lacks ``fsdd/recordings``):
  the ``moving-digits`` converter's clips (real MNIST digits moving across 48x48 frames, with an FSDD
  recording as the soundtrack), prepared into a temporary folder: 300 training and 60 validation
  clips, the video column only, classifying the ``digit`` column (10 classes). Model: ``frame_cnn``
  with the pretrained ImageNet EfficientNet-Lite0 (``pkg:efficientnet-lite0``) frozen as the frame
  encoder, a GRU (``dim: 64``) that trains; 8 RGB frames at 96x96 (below the encoder's own 224 px, to
  fit a 2-core CPU), 3 epochs, batch 32, lr 1e-2; ``--real-repeats`` fits per setting.
- Generated clips (``.npy``, 8 frames of 32x32 grey: a bar moving right or left, plus noise), 200
  training and 40 validation clips; a frozen frame ``cnn`` (channels [16, 32, 64], dim 64) under a
  bidirectional GRU (``dim: 32``); 3 epochs, batch 32, lr 1e-2; ``--repeats`` fits per setting.

Reported per setting: the median epoch time (``history.csv``'s ``seconds``: training and
validation of one epoch), the whole ``fit`` call and the validation accuracy, medians over the fits.

    python benchmarks/frame_cache.py --data-root ../shared/data
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import cache_rows, parser, prepared, save

from polymodal import MultimodalPredictor

FRAMES, SIDE = 8, 32
REAL_SIZE = 96  # the frame side given to the pretrained encoder (its own: 224)
REAL_CLIPS = {"full": dict(n_train=300, n_valid=60), "quick": dict(n_train=40, n_valid=20)}
SETTINGS = ("frame encoder every epoch", "frame.cache, first fit (fills it)", "frame.cache, second fit (reads it)")


def write_clips(folder: Path, n: int, seed: int) -> Path:
    """``n`` clips of a bright bar moving right (class 1) or left (class 0) over noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = i % 2
        clip = rng.integers(0, 60, (FRAMES, SIDE, SIDE), dtype=np.uint8)
        for t in range(FRAMES):
            x = 2 + 3 * t if label else SIDE - 5 - 3 * t
            clip[t, 8:24, x:x + 3] = 255
        np.save(folder / f"c{seed}_{i}.npy", clip)
        rows.append({"clip": f"c{seed}_{i}.npy", "label": label})
    path = folder / f"clips_{seed}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def config(cache: Path, frame_cache: bool, epochs: int = 3) -> dict:
    """The generated case: a frozen frame ``cnn`` under a GRU."""
    frame = {"name": "cnn", "channels": [16, 32, 64], "dim": 64, "freeze": "all", "cache": frame_cache}
    return {
        "task": "classification", "target": "label",
        "modalities": {"video": {"kind": "video", "column": "clip",
                                 "preprocess": {"size": SIDE, "color": "gray", "frames": FRAMES},
                                 "encoder": {"name": "frame_cnn", "frame": frame, "temporal": "gru", "dim": 32}}},
        "fusion": {"name": "concat"},
        "train": {"epochs": epochs, "batch_size": 32, "lr": 1e-2, "seed": 0, "progress": False, "early_stopping": None},
        "data": {"cache_dir": str(cache)},
        "report": {"rows": 0},
    }


def real_config(cache: Path, frame_cache: bool, epochs: int = 3) -> dict:
    """The real-data case: moving-digits videos, the digit (10 classes), a frozen pretrained EfficientNet-Lite0."""
    frame = {"name": "timm", "arch": "efficientnet_lite0", "weights": "pkg:efficientnet-lite0", "freeze": "all",
             "cache": frame_cache}
    cfg = config(cache, frame_cache, epochs)
    cfg["target"] = "digit"
    cfg["modalities"] = {"video": {"kind": "video", "column": "video",
                                   "preprocess": {"size": REAL_SIZE, "color": "rgb", "frames": FRAMES},
                                   "encoder": {"name": "frame_cnn", "frame": frame, "temporal": "gru", "dim": 64}}}
    return cfg


def fit(cfg: dict, train: Path, valid: Path) -> tuple[float, float, float]:
    """(median epoch seconds, whole fit seconds, validation accuracy) of one fit."""
    started = time.perf_counter()
    predictor = MultimodalPredictor.from_config(cfg).fit(train, valid)
    seconds = time.perf_counter() - started
    size = predictor.pipeline.preprocessors["video"].cfg.size
    if size != cfg["modalities"]["video"]["preprocess"]["size"]:  # the size set must win over the encoder's own
        sys.exit(f"the video preprocessing ran at {size} px, not the {cfg['modalities']['video']['preprocess']['size']} set")
    return float(statistics.median(predictor.history["seconds"])), seconds, float(predictor.metrics["valid"]["accuracy"])


def compare(make: Any, train: Path, valid: Path, work: Path, repeats: int) -> list[dict[str, Any]]:
    """The three settings' rows, each from ``repeats`` fits of ``make(cache_dir, frame_cache)``."""
    prep = work / "preprocessed"
    fit(make(prep, False, epochs=1), train, valid)  # imports, the page cache, the preprocessed tensors stored
    runs: dict[str, list[tuple[float, float, float]]] = {label: [] for label in SETTINGS}
    for repeat in range(repeats):
        runs[SETTINGS[0]].append(fit(make(prep, False), train, valid))  # reads the tensors, stores nothing new
        cached = work / f"cached{repeat}"
        shutil.copytree(prep, cached)  # the same preprocessed tensors, no frame vectors yet
        runs[SETTINGS[1]].append(fit(make(cached, True), train, valid))
        runs[SETTINGS[2]].append(fit(make(cached, True), train, valid))
        shutil.rmtree(cached)
    return cache_rows(runs, "valid_accuracy")


def main() -> None:
    p = parser(__doc__.split("\n")[0], repeats=5)  # short fits: 5 for steadier medians
    p.add_argument("--real-repeats", type=int, default=3,
                   help="fits per setting of the real-data case (its fit without the cache takes minutes)")
    args = p.parse_args()
    clips = REAL_CLIPS["quick" if args.quick else "full"]
    real_repeats, repeats = (1, 1) if args.quick else (args.real_repeats, args.repeats)
    have_real = (args.data_root / "fsdd" / "recordings").is_dir() and (args.data_root / "mnist").is_dir()
    if not have_real:
        print(f"no fsdd/recordings and mnist/ under {args.data_root}: the real-data case is skipped "
              "(pass --data-root pointing at a folder like ../shared/data)", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="polymodal-frame-cache-bench-"))
    tables: dict[str, list[dict[str, Any]]] = {}
    try:
        if have_real:
            data = prepared("moving-digits", work / "moving_digits", args.data_root, **clips,
                            test_normal=1, test_per_anomaly=1)  # the test split is not used
            print(f"real data: moving-digits, {clips['n_train']} + {clips['n_valid']} clips", flush=True)
            tables[f"moving-digits (real MNIST digits), {clips['n_train']} clips, pretrained EfficientNet-Lite0 at "
                   f"{REAL_SIZE}x{REAL_SIZE}, 3 epochs per fit"] = compare(
                real_config, data / "train.csv", data / "valid.csv", work / "real", real_repeats)
        train, valid = write_clips(work / "clips", 200, 0), write_clips(work / "clips", 40, 1)
        print("generated clips: 200 + 40", flush=True)
        tables["generated clips (a moving bar), 200 clips, frame cnn at 32x32, 3 epochs per fit"] = compare(
            config, train, valid, work / "generated", repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    real_note = (f"real data: moving-digits from --data-root (MNIST test digits moving across 48x48 frames, FSDD "
                 f"soundtrack unused), {clips['n_train']} training + {clips['n_valid']} validation clips, video only, "
                 f"target digit (10 classes); frame encoder timm efficientnet_lite0 with weights pkg:efficientnet-lite0 "
                 f"(ImageNet), freeze: all; GRU dim 64 trains; {FRAMES} RGB frames resized to {REAL_SIZE}x{REAL_SIZE} "
                 f"(the encoder's own 224 overridden); batch 32, lr 1e-2; medians of {real_repeats} fits per setting"
                 if have_real else "real-data case skipped: no fsdd/recordings and mnist/ under --data-root")
    save("frame_cache", "Cached per-frame vectors under a trainable GRU (frame.cache): moving-digits and generated clips",
         tables,
         notes=[real_note,
                f"generated: 200 training + 40 validation clips of {FRAMES} frames {SIDE}x{SIDE}; frame cnn [16, 32, 64] "
                f"frozen (freeze: all), GRU dim 32 trains; batch 32; medians of {repeats} fits per setting",
                "epoch: training + validation, from history.csv; the preprocessed-tensor cache warm in every fit",
                "first fit: the frame encoder runs once per clip before the epochs (in fit_seconds, not in the epochs); "
                "second fit: the same frame weights, every clip's vectors read back",
                "the same frozen features, so the same validation accuracy in every setting; the same weights give the "
                "same predictions with and without the cache (tests/test_video_predictor.py)"])


if __name__ == "__main__":
    main()
