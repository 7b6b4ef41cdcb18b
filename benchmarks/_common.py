"""Shared helpers for the benchmark scripts: arguments, machine facts, timing, result files.

Every benchmark prints its tables and writes ``benchmarks/results/<name>.json``; ``run.py``
collects those files into ``BENCHMARKS.md``. A ``--quick`` run writes ``results/quick/<name>.json``
instead, which nothing publishes. Default paths are anchored at the repository, not the working folder.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PACKAGES = ("polymodal", "torch", "torchvision", "lightning", "numpy", "librosa", "Pillow", "onnxruntime", "timm")


def load_average() -> float | None:
    """The machine's 1-minute load average (None where the system does not say)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # Windows
        return None


LOAD_AT_START = load_average()  # when the benchmark's process began


def busy(load: float | None) -> bool:
    """Whether other work held the machine: a load above half its cores makes timings slow and noisy."""
    return load is not None and load > 0.5 * (os.cpu_count() or 1)


def parser(description: str, *, seeds: int | None = None, epochs: int | None = None, epochs_help: str | None = None,
           methods: Iterable[str] | None = None, repeats: int = 3) -> argparse.ArgumentParser:
    """The options every benchmark has, plus ``--seeds`` / ``--epochs`` / ``--methods`` (a subset of
    ``methods``, all by default) for those that give their defaults. The defaults are the settings the
    published results were measured with, so ``benchmarks/run.py`` reproduces them. A machine busy
    with other work is warned about at once (its load goes into the results too)."""
    if busy(LOAD_AT_START):
        print(f"warning: the machine is busy (load average {LOAD_AT_START} on {os.cpu_count()} cores): timings "
              "will be slow and noisy; accuracies are unaffected", file=sys.stderr)
    p = argparse.ArgumentParser(description=description, allow_abbrev=False)  # results_folder reads --quick itself
    if seeds is not None:
        p.add_argument("--seeds", type=int, default=seeds)
    if epochs is not None:
        p.add_argument("--epochs", type=int, default=epochs, help=epochs_help)
    if methods is not None:
        p.add_argument("--methods", nargs="*", default=list(methods), choices=list(methods), metavar="METHOD",
                       help=f"subset of {list(methods)}".replace("%", "%%"))
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data",
                   help="folder laid out like ../shared/data (fsdd/, mnist/, usps/, pneumoniamnist/, cwru/); "
                        "default: shared/data beside the repository")
    p.add_argument("--repeats", type=int, default=repeats,
                   help="repetitions of each measurement: medians of timings, or seeds of accuracies (mean +- std), "
                        "as the benchmark's description says")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out",
                   help="scratch folder for prepared data and runs (default: benchmarks/out in the repository)")
    p.add_argument("--quick", action="store_true",
                   help="a smaller, faster version for smoke checks; saved to results/quick/, never published")
    p.add_argument("--jobs", type=int, default=1,
                   help="independent fits run in this many processes at once (many cores or a GPU; accuracy "
                        "benchmarks only: timings are measured with --jobs 1)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the fits an interrupted run finished (recorded in WORK/journal-<benchmark>.jsonl) "
                        "instead of running them again")
    return p


def _worker_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_tasks(fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]], jobs: int, journal: Path | None = None,
              resume: bool = False) -> list[Any]:
    """``[fn(*task) for task in tasks]``, in ``jobs`` spawned processes when ``jobs > 1`` (each with
    its share of the CPU threads; CUDA needs spawn, not fork). ``fn`` must be a module-level
    function returning JSON-serialisable results.

    With a ``journal`` (JSON lines), each result is appended the moment its task finishes, so a
    run stopped part-way (a time limit, a lost machine) keeps what it finished; with ``resume``
    the tasks already in the journal are not run again.
    """
    tasks = list(tasks)
    keys = [json.dumps(task, default=str) for task in tasks]
    done: dict[str, Any] = {}
    if journal is not None and resume and journal.is_file():
        for line in journal.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed run may be cut short
                continue
            done[entry["task"]] = entry["result"]
    todo = [i for i, key in enumerate(keys) if key not in done]
    if journal is not None and journal.is_file() and not journal.read_bytes().endswith(b"\n"):
        with journal.open("a", encoding="utf-8") as handle:  # end a line a killed run cut short
            handle.write("\n")
    if todo and done:
        print(f"resuming: {len(tasks) - len(todo)} of {len(tasks)} fits taken from {journal}", flush=True)

    def record(i: int, result: Any) -> None:
        done[keys[i]] = json.loads(json.dumps(result))  # the same types whether fresh or resumed
        if journal is not None:
            journal.parent.mkdir(parents=True, exist_ok=True)
            with journal.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"task": keys[i], "result": result}) + "\n")

    if jobs <= 1 or len(todo) <= 1:
        for i in todo:
            record(i, fn(*tasks[i]))
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_worker_threads, initargs=(threads,)) as pool:
            futures = {pool.submit(fn, *tasks[i]): i for i in todo}
            for future in as_completed(futures):
                record(futures[future], future.result())
    return [done[key] for key in keys]


def keep_best(metric: str, epochs: int) -> dict[str, Any]:
    """``train.early_stopping`` that never stops a run of ``epochs`` epochs but keeps the weights
    of its best validation ``metric`` epoch (the figures of these benchmarks select on accuracy)."""
    return {"patience": epochs, "monitor": metric}


def require_data(root: Path, *parts: str) -> Path:
    path = root.joinpath(*parts)
    if not path.exists():
        sys.exit(f"benchmark data not found: {path} (pass --data-root pointing at a folder like ../shared/data)")
    return path


def prepared(name: str, folder: Path, source: Path | None, **options: Any) -> Path:
    """``folder`` holding dataset ``name`` prepared from ``source`` with ``options``: reused when an
    earlier run prepared it the same way (recorded in ``prepared_from.json``), prepared again otherwise
    (another --data-root, other options, or an interrupted preparation)."""
    from polymodal.data.datasets import prepare
    from polymodal.utils.io import atomic_write_json

    recipe = {"dataset": name, "source": str(Path(source).resolve()) if source is not None else None,
              "options": json.loads(json.dumps(options, default=str))}
    marker = folder / "prepared_from.json"
    if (folder / "dataset.json").is_file() and marker.is_file() \
            and json.loads(marker.read_text(encoding="utf-8")) == recipe:
        return folder
    marker.unlink(missing_ok=True)  # the folder then holds only what a preparation wrote: --overwrite replaces it
    prepare(name, folder, source, overwrite=True, **options)
    atomic_write_json(marker, recipe)
    return folder


def fsdd_mnist_by_speaker(args: Any) -> Path:
    """The FSDD + MNIST set split by speaker (test voices never heard in training) under
    ``args.work``, prepared from ``args.data_root`` the first time; its folder."""
    require_data(args.data_root, "fsdd", "recordings")
    return prepared("fsdd-mnist", args.work / "fsdd_mnist_speaker", args.data_root, seed=0, split="speaker")


def pneumoniamnist_splits(args: Any) -> dict[str, Path]:
    """The official PneumoniaMNIST splits under ``args.work``, prepared from ``args.data_root`` the
    first time: ``train``, ``valid`` and ``test`` manifests by name."""
    require_data(args.data_root, "pneumoniamnist", "pneumoniamnist.npz")
    work = prepared("pneumoniamnist", args.work / "pneumoniamnist", args.data_root, seed=0)
    return {split: work / f"{split}.csv" for split in ("train", "valid", "test")}


def revision() -> dict[str, Any]:
    """The git commit the benchmark ran from and whether the working tree had uncommitted changes
    (``None`` outside a git checkout)."""
    def git(*cmd: str) -> str | None:
        try:
            done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD")
    changes = git("status", "--porcelain", "--", "polymodal", "benchmarks", ":!benchmarks/results")
    return {"commit": commit, "dirty": bool(changes) if commit is not None else None}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"cores": os.cpu_count(), "cpu": cpu, "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "versions": versions,
            "load_average": {"start": LOAD_AT_START, "end": load_average()}, **revision()}


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` over ``repeats`` calls (and all the times)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def cache_rows(runs: dict[str, list[tuple[float, float, float]]], metric: str) -> list[dict[str, Any]]:
    """One row per setting of a feature-cache comparison, from each fit's (epoch seconds, fit
    seconds, ``metric``): medians, the epoch speed-up over the first setting, and every fit's
    times; each row printed as it is made."""
    base = statistics.median(epoch for epoch, _, _ in next(iter(runs.values())))
    rows = []
    for label, measured in runs.items():
        epoch = statistics.median(e for e, _, _ in measured)
        rows.append({"setting": label, "epoch_seconds": epoch, "fit_seconds": statistics.median(s for _, s, _ in measured),
                     "epoch_speedup": base / epoch, metric: statistics.median(m for _, _, m in measured),
                     "epoch_runs": [round(e, 2) for e, _, _ in measured],
                     "fit_runs": [round(s, 2) for _, s, _ in measured]})
        print(f"{label}: epoch {epoch:.2f} s, fit {rows[-1]['fit_seconds']:.2f} s, {metric.replace('_', ' ')} "
              f"{rows[-1][metric]:.3f}", flush=True)
    return rows


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def results_folder() -> Path:
    """Where this run's result files go: ``results/``, or ``results/quick/`` for a ``--quick`` run
    (a smoke check must not replace published figures)."""
    folder = RESULTS / "quick" if "--quick" in sys.argv[1:] else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save(name: str, title: str, tables: dict[str, list[dict[str, Any]]], notes: Sequence[str] = (),
         extra: dict[str, Any] | None = None) -> Path:
    """Write ``results/<name>.json`` (``results/quick/<name>.json`` for a ``--quick`` run) with the
    exact command, machine, commit and the tables; atomically, so ``run.py`` never reads half a file."""
    from polymodal.utils.io import atomic_write_text
    from polymodal.utils.tables import markdown_table

    script = f"benchmarks/{Path(sys.argv[0]).name}"  # the same however the script was invoked
    payload = {"name": name, "title": title, "command": " ".join(shlex.quote(a) for a in ["python", script, *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d"), "machine": machine(), "tables": tables, "notes": list(notes),
               **(extra or {})}
    path = results_folder() / f"{name}.json"
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")

    print(f"\n## {title}")
    for caption, rows in tables.items():
        print(f"\n{caption}\n\n{markdown_table(rows)}")
    for note in notes:
        print(f"- {note}")
    print(f"\nsaved {path}")
    return path
