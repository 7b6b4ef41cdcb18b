"""Scaling: epoch time and peak memory for 10k, 100k and 1M synthetic samples.

Each sample is a small image (16x16 gray) and a short signal (2 x 128), stored as rows of packed
``.npy`` shards (``images_003.npy#1234``), the layout million-sample datasets use; the label
depends on both. Every size trains the same small model for one epoch with the on-disk feature
cache (memory-mapped, read lazily), in a fresh process so peak memory (max RSS) is its own.
A fixed 2,000-row validation set keeps validation cost constant across sizes.

Targets (issue 7): time grows linearly (per-sample time of the training pass within 20% from 10k
to 1M; the epoch's fixed validation and set-up are reported beside it) and
peak memory stays within 1.5x from 10k to 1M.

    python benchmarks/scaling.py [--sizes 10000 100000 1000000] [--manifest arrow]

``--manifest arrow`` trains from the same manifests converted to Arrow IPC files
(``polymodal manifest convert``), which are read memory-mapped: the manifest's paths then cost
no private memory (results in ``scaling_arrow.json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import parser, save

SHARD = 100_000
VALID = 2_000


def make_data(folder: Path, n: int, seed: int) -> Path:
    """Write ``n`` samples (+ a fixed validation set) as packed shards and manifests."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "train.csv").is_file():
        return folder
    rng = np.random.default_rng(seed)
    frames = []
    for part, count in (("valid", VALID), ("train", n)):
        rows = []
        for s, start in enumerate(range(0, count, SHARD)):
            size = min(SHARD, count - start)
            labels = rng.integers(0, 4, size)
            images = rng.integers(0, 60, (size, 16, 16), dtype=np.uint8)
            images[:, :8, :8] += (labels[:, None, None] % 2 * 150).astype(np.uint8)  # bright corner: bit 0
            signals = rng.normal(0, 1, (size, 2, 128)).astype(np.float32)
            signals[:, 0] += np.sin(np.linspace(0, 12 * np.pi, 128, dtype=np.float32)) * (labels[:, None] // 2) * 2
            np.save(folder / f"{part}_img_{s:03d}.npy", images)
            np.save(folder / f"{part}_sig_{s:03d}.npy", signals)
            rows.append(pd.DataFrame({"image": [f"{part}_img_{s:03d}.npy#{i}" for i in range(size)],
                                      "signal": [f"{part}_sig_{s:03d}.npy#{i}" for i in range(size)],
                                      "label": labels}))
        frames.append((part, pd.concat(rows, ignore_index=True)))
    for part, frame in frames:
        frame.to_csv(folder / f"{part}.csv", index=False)
    return folder


CONFIG = {
    "task": "classification", "target": "label",
    "modalities": {
        "image": {"kind": "image", "column": "image", "preprocess": {"size": 16, "color": "gray", "normalize": "standard"},
                  "encoder": {"name": "cnn", "channels": [8, 16], "dim": 32}},
        "signal": {"kind": "signal", "column": "signal", "preprocess": {"length": 128},
                   "encoder": {"name": "cnn1d", "channels": [8, 16], "dim": 32, "kernel": 5}},
    },
    "fusion": {"name": "concat"},
    "head": {"name": "mlp", "hidden": [32]},
    "train": {"epochs": 1, "batch_size": 256, "lr": 3e-3, "progress": False, "early_stopping": None},
}


class AnonPeak(threading.Thread):
    """Peak private (anonymous) resident memory, sampled from /proc/self/status every 20 ms.

    ``ru_maxrss`` also counts the file-backed pages of the memory-mapped cache that the kernel
    happens to keep mapped (shared, reclaimable page cache); the private part is what the
    process itself allocates and what grows if something loads the dataset whole."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb = 0

    @staticmethod
    def now_kb() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
        return 0

    def run(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, self.now_kb())
            time.sleep(0.02)


def epoch_phases():
    """A Lightning callback timing the first epoch's phases: loader start-up (epoch start to the
    first training batch), the training pass (epoch start to the start of validation) and
    validation."""
    import lightning.pytorch as pl

    class Phases(pl.Callback):
        def __init__(self) -> None:
            self.marks: dict[str, float] = {}

        def mark(self, name: str) -> None:
            self.marks.setdefault(name, time.perf_counter())

        def on_train_epoch_start(self, trainer, module) -> None:
            self.mark("epoch")

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            self.mark("first_batch")

        def on_validation_epoch_start(self, trainer, module) -> None:
            if "epoch" in self.marks:
                self.mark("validation")

        def on_validation_epoch_end(self, trainer, module) -> None:
            if "validation" in self.marks:
                self.mark("validation_end")

    return Phases()


def manifests(folder: Path, fmt: str) -> tuple[Path, Path]:
    """The training and validation manifests in ``fmt`` (``csv``, or ``arrow`` converted from them)."""
    paths = tuple(folder / f"{part}.{fmt}" for part in ("train", "valid"))
    if fmt == "arrow":
        from polymodal.data.arrow_manifest import convert_manifest

        for path in paths:
            if not path.is_file():
                convert_manifest(path.with_suffix(".csv"), path, text_columns=["image", "signal"],
                                 label_columns=["label"])
    return paths  # type: ignore[return-value]


def child(folder: Path, cache: Path, fmt: str = "csv") -> None:
    """Run in a fresh process: encode (cold), then one training epoch; print JSON facts."""
    from polymodal import MultimodalPredictor

    anon = AnonPeak()
    anon.start()
    config = {**CONFIG, "data": {"cache_dir": str(cache)}}
    phases = epoch_phases()
    started = time.perf_counter()
    train, valid = manifests(folder, fmt)
    predictor = MultimodalPredictor.from_config(config).fit(train, valid, callbacks=[phases])
    total = time.perf_counter() - started
    epoch = float(predictor.history["seconds"].iloc[0])
    marks = phases.marks
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"epoch_seconds": epoch, "train_pass_seconds": marks["validation"] - marks["epoch"],
                      "loader_start_seconds": marks["first_batch"] - marks["epoch"],
                      "validation_seconds": marks["validation_end"] - marks["validation"],
                      "fit_seconds": total, "peak_rss_mb": peak_mb,
                      "peak_private_mb": max(anon.peak_kb, anon.now_kb()) / 1024,
                      "preprocess_seconds": predictor.info["preprocess_seconds"],
                      "valid_accuracy": predictor.metrics["valid"]["accuracy"]}))


def notes_for(rows: list[dict]) -> list[str]:
    """The targets' readings from the per-size rows."""
    first, last = rows[0], rows[-1]
    n = np.array([r["samples"] for r in rows], float)
    t = np.array([r["epoch_seconds"] for r in rows])
    # weights 1/t: the fit minimises relative deviations (the sizes span 100x; unweighted, the
    # largest size alone places the line)
    per_sample, fixed = np.polyfit(n, t, 1, w=1 / t)
    worst = float(np.max(np.abs(fixed + per_sample * n - t) / t))
    pass_ratio = last["train_us_per_sample"] / first["train_us_per_sample"]
    return [f"line fitted to the epochs by relative least squares: epoch = {fixed:.2f} s + {per_sample * 1e6:.1f} us "
            f"x samples; the largest deviation of a measured epoch from it is {worst:.1%} (linear within 20%: "
            f"{worst <= 0.2})",
            f"per-sample time of the training pass {last['samples']:,} vs {first['samples']:,}: "
            f"x{pass_ratio:.2f} (target within 20%: {abs(pass_ratio - 1) <= 0.2}); of the whole epoch "
            f"x{last['us_per_sample'] / first['us_per_sample']:.2f} (the fixed validation and epoch set-up weigh "
            f"most at the smallest size)",
            f"peak private memory {last['samples']:,} vs {first['samples']:,}: "
            f"x{last['peak_private_mb'] / first['peak_private_mb']:.2f} (target <= 1.5); peak RSS including the "
            f"mapped cache pages: x{last['peak_rss_mb'] / first['peak_rss_mb']:.2f}",
            "epoch = one pass over the training rows plus the fixed 2,000-row validation; training pass = epoch "
            "start to the start of validation (loader start-up included); fit includes cold encoding",
            "each figure is the median of --repeats fresh processes per size, each encoding into an empty cache"]


def main() -> None:
    p = parser(__doc__.split("\n")[0])  # --data-root is accepted (benchmarks/run.py passes it) but unused
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--manifest", choices=["csv", "arrow"], default="csv",
                   help="manifest format the fits read (arrow: memory-mapped Arrow IPC files)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.manifest)
        return
    sizes = sorted({min(s, 20_000) for s in args.sizes}) if args.quick else args.sizes
    rows = []
    for n in sizes:
        folder = make_data(args.work / "scaling" / f"n{n}", n, seed=0)
        cache = args.work / "scaling" / f"cache{n}"
        runs = []
        for _ in range(1 if args.quick else args.repeats):  # each in a fresh process with a cold cache
            shutil.rmtree(cache, ignore_errors=True)
            manifests(folder, args.manifest)  # converted outside the timed process
            result = subprocess.run([sys.executable, __file__, "--child", str(folder), str(cache),
                                     "--manifest", args.manifest], capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"the timed fit on {n:,} samples failed (exit {result.returncode}):\n{result.stderr}")
            runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
        facts = {key: float(np.median([r[key] for r in runs])) for key in runs[0]}  # medians of the repeats
        rows.append({"samples": n, **facts, "us_per_sample": facts["epoch_seconds"] / n * 1e6,
                     "train_us_per_sample": facts["train_pass_seconds"] / n * 1e6, "repeats": len(runs)})
        print(rows[-1], flush=True)
    if args.manifest == "csv":
        save("scaling", "Scaling with the dataset size (packed .npy shards, on-disk feature cache)",
             {"one epoch": rows}, notes_for(rows))
    else:
        save(f"scaling_{args.manifest}", "Scaling with the dataset size, manifests as memory-mapped Arrow files",
             {"one epoch": rows}, notes_for(rows))


if __name__ == "__main__":
    main()
