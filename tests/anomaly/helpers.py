"""Tiny synthetic two-sensor data for anomaly detection, and a config over it.

Normal rows: sensor ``a`` carries a sine of frequency f, sensor ``b`` a cosine of the same f
(f varies per row). ``fault`` rows: ``b`` runs at 3f (a signal never seen in training).
``mismatch`` rows: ``b`` comes from another row (its own f): each sensor alone looks normal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LENGTH = 64


def write_rows(folder: Path, name: str, n: int, kind: str, seed: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH) / LENGTH
    rows = []
    for i in range(n):
        f = rng.uniform(2.0, 6.0)
        fb = 3 * f if kind == "fault" else (f + rng.choice([-1, 1]) * rng.uniform(1.5, 3.0) if kind == "mismatch" else f)
        a = np.sin(2 * np.pi * f * t) + 0.05 * rng.standard_normal(LENGTH)
        b = np.cos(2 * np.pi * fb * t) + 0.05 * rng.standard_normal(LENGTH)
        paths = {}
        for key, wave in (("a", a), ("b", b)):
            paths[key] = f"{name}_{kind}_{i}_{key}.npy"
            np.save(folder / paths[key], wave.astype(np.float32))
        rows.append({**paths, "label": kind})
    return rows


def write_splits(folder: Path) -> Path:
    """``train.csv`` (96 normal rows), ``valid.csv`` (24) and ``test.csv`` (24 normal, 24 fault, 24 mismatch)."""
    splits = {"train": [("normal", 96)], "valid": [("normal", 24)],
              "test": [("normal", 24), ("fault", 24), ("mismatch", 24)]}
    for seed, (split, parts) in enumerate(splits.items()):
        rows = [r for k, (kind, n) in enumerate(parts) for r in write_rows(folder, split, n, kind, seed=10 * seed + k)]
        pd.DataFrame(rows).to_csv(folder / f"{split}.csv", index=False)
    return folder


def config(scorer: str, epochs: int = 12, **anomaly: object) -> dict:
    signal = {"kind": "signal", "preprocess": {"length": LENGTH},
              "encoder": {"name": "cnn1d", "dim": 16, "channels": [8, 16]}}
    return {"task": "anomaly", "target": "label",
            "modalities": {"a": {**signal, "column": "a"}, "b": {**signal, "column": "b"}},
            "fusion": {"name": "concat"},
            "anomaly": {"scorer": scorer, "latent_dim": 8, "recon_size": 64, "decoder_hidden": 32, **anomaly},
            "train": {"epochs": epochs, "batch_size": 16, "lr": 3e-3, "progress": False, "early_stopping": None}}
