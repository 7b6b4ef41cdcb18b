"""A tiny four-modality dataset (image, audio, text, tabular) and a model trained on it, for the
deployment tests. Every modality carries the class (``a``, ``b``, ``c``): brighter images, higher
tones, class words, a larger number. Some rows miss a modality."""

from __future__ import annotations

import io
import socket
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

CLASSES = ["a", "b", "c"]
WORDS = {0: "red small", 1: "green medium", 2: "blue large"}
RATE = 8000
# where a TestClient sends its requests: to a service bound to loopback (ServeSettings' default), which
# refuses any other Host (TestClient's own is "testserver"; polymodal.deploy.origins)
LOCAL = "http://127.0.0.1"


def wav_bytes(samples: np.ndarray, rate: int = RATE) -> bytes:
    """16-bit PCM mono WAV bytes of float samples in [-1, 1]."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def tone(k: int, rng: np.random.Generator, seconds: float = 0.2) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * (300 + 500 * k) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def make_dataset(root: Path, n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Write images and WAV files under ``root``; return the manifest (relative paths)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        k = i % 3
        Image.fromarray((rng.uniform(0, 60, (10, 12)) + 90 * k).clip(0, 255).astype(np.uint8), "L").save(root / f"i{i}.png")
        (root / f"a{i}.wav").write_bytes(wav_bytes(tone(k, rng, 0.15 + 0.05 * (i % 4))))
        rows.append({
            "image": "" if i % 7 == 3 else f"i{i}.png",
            "audio": "" if i % 5 == 2 else f"a{i}.wav",
            "text": "" if i % 6 == 1 else f"The {WORDS[k]} one, number {i % 4}!",
            "x1": "" if i % 9 == 4 else round(float(k + rng.normal(0, 0.3)), 3),
            "color": ["red", "green", "blue"][int(rng.integers(3))],
            "label": CLASSES[k],
        })
    return pd.DataFrame(rows)


def signal_run(root: Path, write_signal: Any, length: int) -> tuple[Any, Path]:
    """A model trained on 48 signal files (``write_signal(root, i, k, rng)`` writes row ``i``'s, of
    class ``k``, and returns its name) beside a tabular modality, every seventh row missing the
    signal: train.csv (36 rows) and test.csv (12) in ``root``, the run in ``root / "run"``."""
    from polymodal import MultimodalPredictor

    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        k = i % 3
        name = write_signal(root, i, k, rng)
        rows.append({"sig": "" if i % 7 == 3 else name, "x1": round(float(k + rng.normal(0, 0.5)), 3),
                     "label": CLASSES[k]})
    frame = pd.DataFrame(rows)
    frame.iloc[:36].to_csv(root / "train.csv", index=False)
    frame.iloc[36:].to_csv(root / "test.csv", index=False)
    cfg = {"task": "classification", "target": "label",
           "modalities": {"sig": {"kind": "signal", "column": "sig", "preprocess": {"length": length},
                                  "encoder": {"name": "cnn1d", "dim": 8, "channels": [8, 8], "kernel": 5}},
                          "labs": {"kind": "tabular", "columns": ["x1"], "encoder": {"dim": 4, "hidden": [8]}}},
           "fusion": {"name": "concat"}, "head": {"name": "mlp", "hidden": [16]},
           "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, "seed": 0, "progress": False, "num_workers": 0}}
    run = root / "run"
    return MultimodalPredictor.from_config(cfg).fit(root / "train.csv", root / "test.csv", out=run), run


def config(fusion: str = "attention") -> dict[str, Any]:
    return {
        "task": "classification", "target": "label",
        "modalities": {
            "image": {"kind": "image", "column": "image", "preprocess": {"size": 8, "color": "gray", "normalize": "standard"},
                      "encoder": {"name": "cnn", "dim": 16, "channels": [8]}},
            "audio": {"kind": "audio", "column": "audio",
                      "preprocess": {"sample_rate": RATE, "max_seconds": 0.25, "n_mels": 16, "frame_ms": 32, "hop_ms": 16,
                                     "normalize": "global"},
                      "encoder": {"name": "mel_cnn", "dim": 16, "channels": [8, 8]}},
            "notes": {"kind": "text", "column": "text", "preprocess": {"max_tokens": 8, "stopwords": True},
                      "encoder": {"name": "rnn", "hidden": 16, "embed_dim": 16}},
            "labs": {"kind": "tabular", "columns": ["x1"], "categorical": ["color"], "encoder": {"dim": 8, "hidden": [16]}},
        },
        "fusion": {"name": fusion, "dim": 16},
        "head": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 3, "batch_size": 8, "lr": 0.01, "seed": 0, "progress": False, "num_workers": 0},
    }


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start within 20 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
