"""Cached per-frame vectors: a frozen frame encoder under a GRU that trains, with and without ``frame.cache``.

Data: generated clips (``.npy``, 8 frames of 32x32 grey: a bar moving right or left, plus noise),
200 training and 40 validation clips. Model: ``frame_cnn`` with a frozen frame ``cnn`` (channels
[16, 32, 64], dim 64, ``freeze: all``) and a bidirectional GRU (``dim: 32``) that trains, concat
fusion, 3 epochs, batch 32, lr 1e-2. Both runs use the preprocessed-tensor cache (``data.cache_dir``), so
the only difference is whether the frame encoder runs on every frame of every clip in every epoch
(without ``frame.cache``) or once per clip, its vectors stored and read back (with it; a second
fit with the same frame weights reads them all from the cache).

Reported per setting: the median epoch time (``history.csv``'s ``seconds``: training and
validation of one epoch) and the whole ``fit`` call, medians over ``--repeats`` fits.

    python benchmarks/frame_cache.py
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import parser, save

from polymodal import MultimodalPredictor

FRAMES, SIDE = 8, 32


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


def config(cache: Path, frame_cache: bool) -> dict:
    frame = {"name": "cnn", "channels": [16, 32, 64], "dim": 64, "freeze": "all", "cache": frame_cache}
    return {
        "task": "classification", "target": "label",
        "modalities": {"video": {"kind": "video", "column": "clip",
                                 "preprocess": {"size": SIDE, "color": "gray", "frames": FRAMES},
                                 "encoder": {"name": "frame_cnn", "frame": frame, "temporal": "gru", "dim": 32}}},
        "fusion": {"name": "concat"},
        "train": {"epochs": 3, "batch_size": 32, "lr": 1e-2, "seed": 0, "progress": False, "early_stopping": None},
        "data": {"cache_dir": str(cache)},
        "report": {"rows": 0},
    }


def fit(cfg: dict, train: Path, valid: Path) -> tuple[float, float]:
    """(median epoch seconds, whole fit seconds) of one fit."""
    started = time.perf_counter()
    predictor = MultimodalPredictor.from_config(cfg).fit(train, valid)
    seconds = time.perf_counter() - started
    return float(statistics.median(predictor.history["seconds"])), seconds


def main() -> None:
    args = parser(__doc__.split("\n")[0], repeats=5).parse_args()  # short fits: 5 for steadier medians
    work = Path(tempfile.mkdtemp(prefix="polymodal-frame-cache-bench-"))
    try:
        train, valid = write_clips(work / "clips", 200, 0), write_clips(work / "clips", 40, 1)
        fit(config(work / "warmup", False), valid, valid)  # imports, the OS page cache of the clips
        runs: dict[str, list[tuple[float, float]]] = {"frame encoder every epoch": [],
                                                             "frame.cache, first fit (fills it)": [],
                                                             "frame.cache, second fit (reads it)": []}
        for repeat in range(args.repeats):
            plain = work / f"plain{repeat}"
            fit(config(plain, False), train, valid)  # the preprocessed tensors stored, as in the cached runs
            runs["frame encoder every epoch"].append(fit(config(plain, False), train, valid))
            cached = work / f"cached{repeat}"
            shutil.copytree(plain, cached)  # the same preprocessed tensors, no frame vectors yet
            runs["frame.cache, first fit (fills it)"].append(fit(config(cached, True), train, valid))
            runs["frame.cache, second fit (reads it)"].append(fit(config(cached, True), train, valid))
        base = statistics.median(epoch for epoch, _ in runs["frame encoder every epoch"])
        rows = []
        for label, measured in runs.items():
            epoch = statistics.median(e for e, _ in measured)
            rows.append({"setting": label, "epoch_seconds": epoch, "fit_seconds": statistics.median(s for _, s in measured),
                         "epoch_speedup": base / epoch, "epoch_runs": [round(e, 2) for e, _ in measured]})
            print(f"{label}: epoch {epoch:.2f} s, fit {rows[-1]['fit_seconds']:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save("frame_cache", "Cached per-frame vectors under a trainable GRU (frame.cache), 200 generated clips",
         {"epoch time, 3 epochs per fit": rows},
         notes=[f"200 training + 40 validation clips of {FRAMES} frames {SIDE}x{SIDE}; frame cnn [16, 32, 64] frozen "
                "(freeze: all), GRU dim 32 trains; batch 32; the preprocessed-tensor cache warm in every run",
                f"medians of {args.repeats} fits per setting; epoch: training + validation, from history.csv",
                "first fit: the frame encoder runs once per clip before the epochs (in fit_seconds, not in the epochs); "
                "second fit: the same frame weights, every clip's vectors read back",
                "the same weights give the same predictions with and without the cache (tests/test_video_predictor.py)"])


if __name__ == "__main__":
    main()
