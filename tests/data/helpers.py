"""Small data makers and comparisons shared by the data-layer tests (all data is generated)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile
import torch
from PIL import Image

from polymodal.config import Config, load_config
from polymodal.data.modalities import Preprocessor


def make_config(modalities: Mapping[str, Any], **sections: Any) -> Config:
    """A validated config with the given modalities (target column ``y`` unless overridden)."""
    return load_config({"target": "y", "modalities": dict(modalities), **sections})


def tone(freq: float, seconds: float, sample_rate: int, *, amplitude: float = 0.5, noise: float = 0.05,
         seed: int = 0) -> np.ndarray:
    """A float32 sine plus a little white noise (so every frequency bin has energy)."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(seed)
    return (amplitude * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(len(t))).astype(np.float32)


def write_wav(path: Path, wave: np.ndarray, sample_rate: int, subtype: str = "FLOAT") -> str:
    """Write (N,) or (N, channels) samples; return the path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, wave, sample_rate, subtype=subtype)
    return str(path)


def write_image(path: Path, array: np.ndarray, **save_options: Any) -> str:
    """Write a uint8 (H, W) or (H, W, C) array with Pillow (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_options)
    return str(path)


def encode_values(prep: Preprocessor, values: list[Any]) -> dict[str, np.ndarray]:
    """decode + featurize a list of cells, as the encoder does."""
    return prep.featurize([prep.decode(v) for v in values])


def as_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def assert_nested_equal(a: Any, b: Any, path: str = "batch") -> None:
    """Exact equality of nested dicts of tensors (same keys, dtypes, shapes and values)."""
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_nested_equal(a[key], b[key], f"{path}.{key}")
        return
    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), path
    assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{tuple(a.shape)} != {b.dtype}{tuple(b.shape)}"
    assert torch.equal(a, b), f"{path}: values differ"


# --- a small multimodal manifest -------------------------------------------------------------------
MULTIMODAL = {
    "img": {"kind": "image", "column": "image", "preprocess": {"size": 8, "color": "gray"}},
    "notes": {"kind": "text", "column": "text", "preprocess": {"max_tokens": 6}},
    "labs": {"kind": "tabular", "columns": ["age"], "categorical": ["colour"]},
}
WORDS = ["red", "fox", "lazy", "dog", "quick", "brown", "cat", "sat"]


def write_multimodal_manifest(folder: Path, n: int = 10, *, broken_images: tuple[int, ...] = (),
                              no_image: tuple[int, ...] = (5,), no_text: tuple[int, ...] = (2,),
                              no_labs: tuple[int, ...] = (6,)) -> Path:
    """``train.csv`` with an image file, a text and two tabular fields per row, target ``y``.

    Rows in ``no_*`` leave that modality empty; rows in ``broken_images`` name a corrupt PNG.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        image = ""
        if i in broken_images:
            image = f"images/{i}.png"
            (folder / image).parent.mkdir(exist_ok=True)
            (folder / image).write_bytes(b"not a png at all")
        elif i not in no_image:
            image = f"images/{i}.png"
            write_image(folder / image, rng.integers(0, 256, (10, 12), dtype=np.uint8))
        text = "" if i in no_text else " ".join(WORDS[(i + k) % len(WORDS)] for k in range(1 + i % 5))
        age, colour = ("", "") if i in no_labs else (20 + 3 * i, ["red", "green", "blue"][i % 3])
        rows.append({"image": image, "text": text, "age": age, "colour": colour, "y": ["cat", "dog"][i % 2]})
    path = folder / "train.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
