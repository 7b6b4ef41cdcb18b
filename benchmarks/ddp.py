"""Distributed data parallel on one machine: 2 CPU processes (gloo) against 1 process.

Both train the same small image + audio CNN pair on the FSDD + MNIST pairs with ``polymodal train``
from the command line. The single process uses every core (torch threads = cores); the DDP run
starts ``--processes`` workers with ``cores / processes`` threads each and a per-process batch of
``batch / processes``, so both take the same optimiser steps on the same global batch. Reported:
wall time of the training run (median of ``--repeats``), the speed ratio, and the validation
accuracy of each (agreement).

    python benchmarks/ddp.py --data-root ../shared/data
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _common import fsdd_mnist_by_speaker, parser, save
from overhead import CONFIG


def train(config: dict, data: Path, out: Path, threads: int) -> tuple[float, dict]:
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "polymodal.cli", "train", str(path), "--train", str(data / "train.csv"),
               "--valid", str(data / "valid.csv"), "--out", str(out), "--overwrite"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"training failed ({out}):\n{result.stderr[-3000:]}")
    return seconds, json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()
    data = fsdd_mnist_by_speaker(args)
    cores, n = os.cpu_count() or 1, args.processes
    batch = CONFIG["train"]["batch_size"]
    single_cfg = {**CONFIG, "train": {**CONFIG["train"], "epochs": args.epochs}}
    ddp_cfg = {**CONFIG, "train": {**CONFIG["train"], "epochs": args.epochs, "batch_size": batch // n, "devices": n,
                                 "strategy": "ddp", "accelerator": "cpu"}}
    runs: dict[str, list[tuple[float, dict]]] = {"1 process": [], f"{n} processes (DDP, gloo)": []}
    for i in range(args.repeats):  # interleaved
        runs["1 process"].append(train(single_cfg, data, args.work / "ddp" / f"single{i}", cores))
        runs[f"{n} processes (DDP, gloo)"].append(train(ddp_cfg, data, args.work / "ddp" / f"ddp{i}", max(cores // n, 1)))
    rows = []
    for label, results in runs.items():
        seconds = [s for s, _ in results]
        accuracy = [m["valid"]["accuracy"] for _, m in results]
        rows.append({"run": label, "median_seconds": statistics.median(seconds), "runs": [round(s, 1) for s in seconds],
                     "valid_accuracy": statistics.median(accuracy), "accuracies": [round(a, 4) for a in accuracy]})
        print(f"{label}: {statistics.median(seconds):.1f} s, accuracy {statistics.median(accuracy):.4f}")
    speed = rows[0]["median_seconds"] / rows[1]["median_seconds"]
    agreement = abs(rows[0]["valid_accuracy"] - rows[1]["valid_accuracy"])
    save("ddp", f"DDP: {n} CPU processes vs 1 (FSDD + MNIST, small CNNs)", {"runs": rows},
         notes=[f"speed ratio (1-process time / DDP time) = {speed:.2f} on {cores} cores",
                f"validation accuracy difference = {agreement:.4f}",
                f"{args.epochs} epochs, global batch {batch}, wall time of `polymodal train` including start-up and "
                f"data preparation; median of {args.repeats} interleaved runs"],
         extra={"speed_ratio": speed, "accuracy_difference": agreement})


if __name__ == "__main__":
    main()
