"""``polymodal demo``: the embedded av-digits dataset, unimodal baselines and several fusions.

Everything runs offline on a laptop CPU in a few minutes. Results go to ``<out>/runs/<variant>/``
(each with its own ``report.html``) and ``<out>/comparison.csv`` / ``comparison.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from polymodal.errors import ConfigError
from polymodal.utils.io import atomic_write, atomic_write_text
from polymodal.utils.tables import markdown_table, print_table

IMAGE = {"kind": "image", "column": "image",
         "preprocess": {"size": 28, "color": "gray", "normalize": "standard"},
         "encoder": {"name": "cnn", "channels": [16, 32], "dim": 64}}
AUDIO = {"kind": "audio", "column": "audio",
         "preprocess": {"sample_rate": 8000, "max_seconds": 1.0, "features": "log_mel", "n_mels": 40,
                        "frame_ms": 25, "hop_ms": 10},
         "encoder": {"name": "mel_cnn", "channels": [8, 16, 32], "dim": 64}}

# (name, modalities, fusion config)
VARIANTS: list[tuple[str, list[str], dict[str, Any]]] = [
    ("image only", ["image"], {"name": "concat"}),
    ("audio only", ["audio"], {"name": "concat"}),
    ("concat", ["image", "audio"], {"name": "concat"}),
    ("gated", ["image", "audio"], {"name": "gated", "dim": 64}),
    ("lowrank", ["image", "audio"], {"name": "lowrank", "dim": 64, "rank": 4}),
    ("attention", ["image", "audio"], {"name": "attention", "dim": 64, "heads": 4, "ff": 128}),
    ("late", ["image", "audio"], {"name": "late"}),
]


def demo_config(modalities: list[str], fusion: dict[str, Any], epochs: int, cache: Path | None = None
                ) -> dict[str, Any]:
    """One variant's config; variants share ``cache`` so each file is decoded and featurised once."""
    specs = {"image": IMAGE, "audio": AUDIO}
    return {
        "task": "classification",
        "target": "label",
        "modalities": {name: specs[name] for name in modalities},
        "fusion": fusion,
        "head": {"name": "mlp", "hidden": [64], "dropout": 0.1},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 2e-3, "seed": 0, "progress": False,
                  "modality_dropout": 0.0, "early_stopping": None},
        "data": {"cache_dir": str(cache) if cache is not None else None},
    }


def ensure_dataset(folder: Path, size: int, console: Console) -> None:
    """Prepare av-digits into ``folder`` unless it already holds the same size and seed."""
    from polymodal.data.datasets import prepare

    meta_path = folder / "dataset.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("name") == "av-digits" and sum(meta.get("rows", {}).values()) == min(size, 5000):
            console.print(f"using the av-digits dataset already in {folder}")
            return
    console.print(f"preparing av-digits ({size} rows: MNIST images + eSpeak NG speech) in {folder} ...")
    prepare("av-digits", folder, seed=0, size=size, overwrite=True)  # the demo's own folder: another size replaced


def run_demo(out: Path, size: int = 5000, epochs: int = 5, console: Console | None = None, *,
             variants: Sequence[str] | None = None) -> pd.DataFrame:
    """Train every variant (or only the named ``variants``, e.g. ``["concat"]``) and return (and save)
    the comparison table."""
    import time

    from polymodal.predictor import MultimodalPredictor

    known = [name for name, _, _ in VARIANTS]
    unknown = [] if variants is None else [v for v in variants if v not in known]
    if unknown:
        raise ConfigError([f"variants: {unknown} are not demo variants; allowed: {known}"])
    console = console or Console(markup=False)  # text, as the command line prints it (paths may hold [brackets])
    out = Path(out)
    data = out / "data"
    ensure_dataset(data, size, console)
    rows = []
    for name, modalities, fusion in VARIANTS:
        if variants is not None and name not in variants:
            continue
        started = time.perf_counter()
        predictor = MultimodalPredictor.from_config(demo_config(modalities, fusion, epochs, out / "cache"))
        run_dir = out / "runs" / name.replace(" ", "_")
        predictor.fit(data / "train.csv", data / "valid.csv", test=data / "test.csv", out=run_dir, overwrite=True)
        test = predictor.metrics["test"]
        rows.append({"model": name, "fusion": fusion["name"] if len(modalities) > 1 else "-",
                     "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
                     "parameters": predictor.info["parameters"], "train_seconds": predictor.info["train_seconds"],
                     "total_seconds": time.perf_counter() - started})
        console.print(f"  {name:<11} test accuracy {test['accuracy']:.3f}  ({rows[-1]['total_seconds']:.0f} s)")
    table = pd.DataFrame(rows)
    atomic_write(out / "comparison.csv", lambda tmp: table.to_csv(tmp, index=False))
    atomic_write_text(out / "comparison.md", markdown_table(rows))
    shown = Table(title=f"av-digits test set ({epochs} epoch{'' if epochs == 1 else 's'} each; test voices unseen in "
                        "training)")
    for column in ("model", "fusion", "test acc", "macro-F1", "parameters", "train s"):
        shown.add_column(column, justify="left" if column in ("model", "fusion") else "right")
    for row in rows:
        shown.add_row(row["model"], row["fusion"], f"{row['test_accuracy']:.3f}", f"{row['test_macro_f1']:.3f}",
                      f"{row['parameters']:,}", f"{row['train_seconds']:.1f}")
    print_table(console, shown)
    console.print(f"reports: {out / 'runs'}/*/report.html; table: {out / 'comparison.md'}")
    return table
