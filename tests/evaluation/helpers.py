"""Tiny generated data for the evaluation tests.

``two_tabular`` has two tabular modalities, ``a`` (columns a1, a2) and ``b`` (b1, b2), of standard
normal numbers; the label follows a rule over them: ``a`` (a1 > 0: only modality a matters),
``xor`` ((a1 > 0) xor (b1 > 0): both are needed together) or ``redundant`` (b1 is the label itself,
a1 a noisy copy of it: either modality alone predicts, b better).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def two_tabular(n: int, rule: str, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a1, a2, b1, b2 = rng.normal(size=(4, n))
    if rule == "a":
        label = a1 > 0
    elif rule == "xor":
        label = (a1 > 0) ^ (b1 > 0)
    elif rule == "redundant":
        label = rng.random(n) < 0.5
        b1 = np.where(label, 1.0, -1.0) + rng.normal(0.0, 0.1, n)  # b alone: perfect
        a1 = np.where(label, 1.0, -1.0) + rng.normal(0.0, 0.9, n)  # a alone: about 87%
    else:
        raise ValueError(rule)
    return pd.DataFrame({"a1": a1, "a2": a2, "b1": b1, "b2": b2, "label": np.where(label, "yes", "no")})


def tabular_config(*, dropout: float | dict[str, float] = 0.0, epochs: int = 25, seed: int = 0,
                   fusion: str = "concat", **extra: Any) -> dict[str, Any]:
    """Modalities ``a`` and ``b`` (small MLP encoders), concat fusion, an MLP head."""
    encoder = {"dim": 16, "hidden": [32], "dropout": 0.0}
    return {
        "task": "classification", "target": "label",
        "modalities": {"a": {"kind": "tabular", "columns": ["a1", "a2"], "encoder": dict(encoder)},
                       "b": {"kind": "tabular", "columns": ["b1", "b2"], "encoder": dict(encoder)}},
        "fusion": {"name": fusion},
        "head": {"name": "mlp", "hidden": [32], "dropout": 0.0},
        "train": {"epochs": epochs, "batch_size": 32, "lr": 0.01, "seed": seed, "progress": False, "num_workers": 0,
                  "modality_dropout": dropout, "early_stopping": None},
        **extra,
    }


def all_kinds_dataset(root: Path, n: int = 24, seed: int = 0) -> pd.DataFrame:
    """``n`` rows with an image, a text, an audio clip, a 1-D signal and two table columns, all
    carrying the class (0, 1 or 2); files under ``root``, paths relative to it."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = [["calm", "quiet", "low"], ["mid", "steady", "even"], ["loud", "bright", "high"]]
    rows = []
    for i in range(n):
        k = i % 3
        Image.fromarray((rng.uniform(0, 60, (8, 8)) + 90 * k).clip(0, 255).astype(np.uint8), "L").save(root / f"i{i}.png")
        t = np.arange(2000) / 8000
        np.save(root / f"a{i}.npy", (0.2 * np.sin(2 * np.pi * (300 + 400 * k) * t) + rng.normal(0, 0.01, t.size))
                .astype(np.float32)[: 1200 + 200 * k])
        np.save(root / f"s{i}.npy", (rng.normal(0, 0.3, (1, 32)) + k).astype(np.float32))
        text = " ".join(rng.choice(words[k], size=3 + k)) + " sound"
        rows.append({"image": f"i{i}.png", "audio": f"a{i}.npy", "signal": f"s{i}.npy", "text": text,
                     "x1": float(k + rng.normal(0, 0.3)), "x2": float(rng.normal()), "label": f"c{k}"})
    return pd.DataFrame(rows)


def all_kinds_config() -> dict[str, Any]:
    """One small encoder per modality kind, concat fusion."""
    return {
        "task": "classification", "target": "label",
        "modalities": {
            "image": {"kind": "image", "column": "image", "preprocess": {"size": 8, "color": "gray"},
                      "encoder": {"name": "cnn", "dim": 8, "channels": [4]}},
            "audio": {"kind": "audio", "column": "audio",
                      "preprocess": {"sample_rate": 8000, "max_seconds": 0.25, "n_mels": 16, "normalize": "utterance"},
                      "encoder": {"name": "mel_cnn", "dim": 8, "channels": [4]}},
            "signal": {"kind": "signal", "column": "signal", "preprocess": {"length": 32},
                       "encoder": {"name": "cnn1d", "dim": 8, "channels": [4], "kernel": 3}},
            "text": {"kind": "text", "column": "text", "encoder": {"name": "embedding_bag", "dim": 8}},
            "table": {"kind": "tabular", "columns": ["x1", "x2"], "encoder": {"dim": 8, "hidden": [8]}},
        },
        "fusion": {"name": "concat"},
        "head": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, "seed": 0, "progress": False, "num_workers": 0},
        "report": {"rows": 0},
    }
