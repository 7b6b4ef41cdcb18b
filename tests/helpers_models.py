"""Tiny generated datasets and configs shared by the predictor and CLI tests.

Every sample belongs to one of three classes ``a``, ``b``, ``c``; each modality carries the class:
8x8 grey images get brighter with the class, 1-D signals get a larger offset, the tabular
number ``x1`` grows with it. Some rows miss their image (empty cell).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

CLASSES = ["a", "b", "c"]


def make_dataset(root: Path, n: int = 96, seed: int = 0) -> pd.DataFrame:
    """Write ``n`` images and signals under ``root`` and return the manifest (relative paths)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = i % 3
        image = rng.uniform(0, 40, (8, 8)) + 100 * k
        Image.fromarray(image.clip(0, 255).astype(np.uint8), "L").save(root / f"img{i}.png")
        signal = rng.normal(0.0, 0.5, (1, 32)).astype(np.float32) + 2.0 * (k - 1)
        np.save(root / f"sig{i}.npy", signal)
        rows.append({
            "image": "" if i % 10 == 7 else f"img{i}.png",  # a few rows miss their image
            "signal": f"sig{i}.npy",
            "x1": float(k + rng.normal(0.0, 0.2)),
            "x2": float(rng.normal()),
            "color": ["red", "green", "blue"][int(rng.integers(3))],
            "label": CLASSES[k],
            "y": float(100.0 + 10.0 * k + rng.normal(0.0, 1.0)),
            "tag_bright": int(k >= 1),
            "tag_top": int(k == 2),
        })
    return pd.DataFrame(rows)


def write_splits(root: Path, frame: pd.DataFrame) -> dict[str, Path]:
    """train / valid / test CSVs (60% / 20% / 20% of the rows) next to the files."""
    n = len(frame)
    cut1, cut2 = int(n * 0.6), int(n * 0.8)
    paths = {}
    for name, part in (("train", frame.iloc[:cut1]), ("valid", frame.iloc[cut1:cut2]), ("test", frame.iloc[cut2:])):
        paths[name] = root / f"{name}.csv"
        part.to_csv(paths[name], index=False)
    return paths


IMAGE = {"kind": "image", "column": "image", "preprocess": {"size": 8, "color": "gray"},
         "encoder": {"name": "cnn", "dim": 16, "channels": [8]}}
SIGNAL = {"kind": "signal", "column": "signal", "preprocess": {"length": 32},
          "encoder": {"name": "cnn1d", "dim": 16, "channels": [8], "kernel": 3}}
TABULAR = {"kind": "tabular", "columns": ["x1", "x2"], "categorical": ["color"], "encoder": {"dim": 8, "hidden": [16]}}
TRAIN = {"epochs": 3, "batch_size": 8, "lr": 0.01, "seed": 0, "progress": False, "num_workers": 0}


def classification_config(**train: Any) -> dict[str, Any]:
    """Image + tabular classification of ``label``."""
    return {
        "task": "classification",
        "target": "label",
        "modalities": {"img": copy.deepcopy(IMAGE), "tab": copy.deepcopy(TABULAR)},
        "fusion": {"name": "concat"},
        "head": {"name": "mlp", "hidden": [16]},
        "train": {**TRAIN, **train},
    }


def regression_config(**train: Any) -> dict[str, Any]:
    """Signal + tabular regression of ``y``."""
    return {
        "task": "regression",
        "target": "y",
        "modalities": {"sig": copy.deepcopy(SIGNAL), "tab": copy.deepcopy(TABULAR)},
        "fusion": {"name": "weighted", "dim": 16},
        "head": {"name": "mlp", "hidden": [16]},
        "train": {**TRAIN, "epochs": 6, **train},
    }


def unit_targets(n: int, seed: int = 0) -> pd.DataFrame:
    """Two tabular modalities (``a1``, ``a2`` and ``b1``, ``b2``) and two regression targets in
    very different units: ``load`` (hp, about 1, from ``a1``) and ``rpm`` (about 1750, from
    ``b1``); a ``site`` column of two values (no files)."""
    rng = np.random.default_rng(seed)
    a1, a2, b1, b2 = rng.normal(size=(4, n))
    return pd.DataFrame({"a1": a1, "a2": a2, "b1": b1, "b2": b2,
                         "load": 1.0 + 0.2 * a1 + rng.normal(0.0, 0.02, n),
                         "rpm": 1750.0 + 40.0 * b1 + rng.normal(0.0, 4.0, n),
                         "site": np.where(np.arange(n) % 2 == 0, "north", "south")})


def unit_targets_config(**train: Any) -> dict[str, Any]:
    """Regression of :func:`unit_targets`' ``load`` and ``rpm`` from modalities ``a`` and ``b``
    (no report diagnostics)."""
    encoder = {"dim": 16, "hidden": [32], "dropout": 0.0}
    return {
        "task": "regression",
        "target": ["load", "rpm"],
        "modalities": {"a": {"kind": "tabular", "columns": ["a1", "a2"], "encoder": dict(encoder)},
                       "b": {"kind": "tabular", "columns": ["b1", "b2"], "encoder": dict(encoder)}},
        "fusion": {"name": "concat"},
        "head": {"name": "mlp", "hidden": [32]},
        "train": {**TRAIN, "batch_size": 32, "epochs": 6, "early_stopping": None, **train},
        "report": {"rows": 0},
    }


def multilabel_config(**train: Any) -> dict[str, Any]:
    """Image + signal multilabel prediction of ``tag_bright`` and ``tag_top``."""
    return {
        "task": "multilabel",
        "target": ["tag_bright", "tag_top"],
        "modalities": {"img": copy.deepcopy(IMAGE), "sig": copy.deepcopy(SIGNAL)},
        "fusion": {"name": "gated", "dim": 16},
        "head": {"name": "mlp", "hidden": [16]},
        "train": {**TRAIN, "epochs": 4, **train},
    }


# -- tiny pretrained components saved to disk --------------------------------------------------
BERT_WORDS = ["the", "a", "dark", "bright", "mid", "image", "signal", "is", "very", "quite"]


def tabular_anomaly(root: Path, sizes: dict[str, int], scorer: str, **train: Any) -> dict[str, Any]:
    """Write normal rows of two numeric columns (``<split>.csv`` in ``root``, seeded) and return a
    tiny ``task: anomaly`` config over them."""
    rng = np.random.default_rng(0)
    for name, n in sizes.items():
        pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)}).to_csv(root / f"{name}.csv", index=False)
    return {"task": "anomaly", "modalities": {"tab": {"kind": "tabular", "columns": ["x1", "x2"],
                                                      "encoder": {"dim": 8, "hidden": [16]}}},
            "fusion": {"name": "concat"}, "anomaly": {"scorer": scorer, "latent_dim": 4},
            "train": {"num_workers": 0, **train}}


def save_tiny_bert(folder: Path, seed: int = 0, model_max_length: int | None = None,
                   max_seq_length: int | None = None) -> Path:
    """A 1-layer, 32-wide random BERT (64 positions) plus its WordPiece tokenizer, saved like a hub
    download. ``model_max_length`` goes into ``tokenizer_config.json`` (default: transformers' huge
    placeholder); ``max_seq_length`` writes a sentence-transformers ``sentence_bert_config.json``."""
    import json

    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    limit = {} if model_max_length is None else {"model_max_length": model_max_length}
    # transformers 5 takes the vocabulary as `vocab` (and ignores a `vocab_file` keyword), 4 as `vocab_file`
    import inspect

    source = ({"vocab": {word: i for i, word in enumerate(vocab)}}
              if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters
              else {"vocab_file": str(folder / "vocab.txt")})
    tokenizer = BertTokenizerFast(**source, do_lower_case=True, **limit)
    assert len(tokenizer) == len(vocab), f"the tiny BERT's tokenizer holds {len(tokenizer)} words, not {len(vocab)}"
    tokenizer.save_pretrained(str(folder))
    if max_seq_length is not None:
        (folder / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}), encoding="utf-8")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(str(folder))
    return folder


def save_glove(path: Path, vectors: dict[str, list[float]], header: bool = False) -> Path:
    """A GloVe-format text file (``word v1 v2 ...``), optionally with a word2vec ``V D`` header."""
    lines = [f"{len(vectors)} {len(next(iter(vectors.values())))}"] if header else []
    lines += [" ".join([word, *(repr(float(v)) for v in values)]) for word, values in vectors.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_same_numbers(got: Any, expected: Any, path: str = "diagnostics") -> None:
    """Equal structure (dicts, lists); numbers equal to float32 rounding (the same network on other
    batches: a cached encoder's stored outputs against running it)."""
    if isinstance(expected, dict):
        assert set(got) == set(expected), path
        for key in expected:
            assert_same_numbers(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same_numbers(g, e, f"{path}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6, nan_ok=True), path
    else:
        assert got == expected, path


def write_short_clips(folder: Path) -> int:
    """16 .npy clips of a bar moving right (class 1) or left (class 0), 3-5 frames each (5 sampled
    with a stride: the shorter ones padded), a noisy tabular hint, and no clip on row 5. Returns the
    real frames of the clips, what one pass of the frame encoder over them sees."""
    rng = np.random.default_rng(0)
    rows, real = [], 0
    for i in range(16):
        k, n = i % 2, 3 + i % 3
        clip = np.zeros((n, 8, 8), np.uint8)
        for t in range(n):
            clip[t, 2:6, 1 + t if k else 6 - t] = 255
        clip[0, 0, 0] = i  # every clip's content its own (the cache stores each once)
        if i != 5:
            np.save(folder / f"v{i}.npy", clip)
            real += n
        rows.append({"clip": "" if i == 5 else f"v{i}.npy", "x1": float(k + rng.normal(0, 1.0)), "label": f"c{k}"})
    pd.DataFrame(rows).to_csv(folder / "m.csv", index=False)
    return real


def frame_cache_config(cache_dir: Path, **report: Any) -> dict[str, Any]:
    """A classifier of :func:`write_short_clips`' manifest: the clips through a frozen per-frame
    CNN whose vectors are cached (``frame.cache``) under a GRU that trains, beside ``x1``."""
    frame = {"name": "cnn", "channels": [4], "dim": 8, "freeze": "all", "cache": True}
    return {
        "task": "classification", "target": "label",
        "modalities": {
            "video": {"kind": "video", "column": "clip",
                      "preprocess": {"size": 8, "color": "gray", "frames": 5, "sampling": "stride"},
                      "encoder": {"name": "frame_cnn", "frame": frame, "temporal": "gru", "dim": 8}},
            "table": {"kind": "tabular", "columns": ["x1"], "encoder": {"dim": 4, "hidden": [8]}}},
        "fusion": {"name": "concat"},
        "train": {"epochs": 3, "batch_size": 8, "lr": 1e-2, "progress": False, "early_stopping": None},
        "data": {"cache_dir": str(cache_dir)},
        "report": {"rows": 0, **report},
    }


def train_in_subprocess(config: dict[str, Any], paths: dict[str, Path], out: Path) -> dict[str, Any]:
    """``polymodal train`` of ``config`` on ``paths['train']`` / ``paths['valid']`` into ``out`` in a
    fresh process (as a user launches a distributed run: Lightning starts the other ranks from
    its command line); returns the run's ``metrics.json``."""
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "polymodal.cli", "train", str(path), "--train", str(paths["train"]),
               "--valid", str(paths["valid"]), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=out.parent, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def save_custom_code_model(folder: Path, marker: Path) -> Path:
    """A transformers folder whose model and tokenizer are its own Python code (``auto_map`` to
    ``custom.py``, as a hub repository of an architecture transformers lacks ships them); running
    that code creates ``marker``."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    auto_map = {"AutoConfig": "custom.CustomConfig", "AutoModel": "custom.CustomModel",
                "AutoTokenizer": ["custom.CustomTokenizer", None]}
    (folder / "config.json").write_text(json.dumps({"model_type": "polymodal_custom", "hidden_size": 8,
                                                    "auto_map": auto_map}), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CustomTokenizer",
                                                              "auto_map": {"AutoTokenizer": auto_map["AutoTokenizer"]}}),
                                                  encoding="utf-8")
    return folder
