"""The frozen-encoder feature cache: computed once, reused across passes and runs, and
invalidated by a change of encoder weights, preprocessing (config or fitted state) or input
content, file or inline (each proven here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.data.dataset import collate
from polymodal.data.embeddings import SUBFOLDER, attach_cached_features
from polymodal.data.manifest import read_manifest
from polymodal.data.pipeline import DataPipeline
from polymodal.models import build_model

from .helpers import make_config, write_image


def _manifest(folder: Path, n: int = 12, bright: int = 0) -> Path:
    """``n`` rows of random images (row 4 has none), then ``bright`` rows of white images."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n + bright):
        image = "" if i == 4 else f"img/{i}.png"  # row 4 has no image
        if image:
            pixels = rng.integers(0, 256, (10, 10), dtype=np.uint8) if i < n else np.full((10, 10), 255, np.uint8)
            write_image(folder / image, pixels)
        rows.append({"image": image, "age": float(i), "y": ["a", "b"][i % 2]})
    path = folder / "train.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


# a cached tabular encoder whose fitted state does not depend on the data: no categories, zero
# imputation, no scaling
CACHED_TABULAR = {"kind": "tabular", "columns": ["age"], "preprocess": {"impute": "zero", "scale": "none"},
                  "encoder": {"dim": 6, "hidden": [8], "freeze": "all", "cache": True}}


def _config(cache_dir: Path | None, tokens: bool = False, cached_tab: bool = False, encoder: dict | None = None,
            **preprocess):
    image = {"kind": "image", "column": "image", "preprocess": {"size": 8, "color": "gray", **preprocess},
             "encoder": {"name": "cnn", "channels": [4], "dim": 6, "freeze": "all", "cache": True, **(encoder or {})}}
    tab = CACHED_TABULAR if cached_tab else {"kind": "tabular", "columns": ["age"]}
    fusion = {"name": "attention", "dim": 8, "heads": 2, "tokens": True} if tokens else {"name": "concat"}
    return make_config({"img": image, "tab": tab}, fusion=fusion,
                       data={"cache_dir": None if cache_dir is None else str(cache_dir)})


class Run:
    """Pipeline + network for a config, with a count of the rows the ``watch`` encoder has seen."""

    def __init__(self, config, manifest_path: Path, seed: int = 0, watch: str = "img"):
        self.config = config
        self.watch = watch
        self.manifest = read_manifest(manifest_path)
        self.pipeline = DataPipeline(config)
        self.table, self.targets = self.pipeline.fit(self.manifest)
        torch.manual_seed(seed)
        self.net = build_model(config, self.pipeline.contexts(), self.pipeline.targets.n_outputs)
        self.rows_seen = 0
        self.net.encoders[watch].register_forward_hook(self._count)

    def _count(self, module, args, kwargs_or_out, *rest) -> None:
        self.rows_seen += rest[0].pooled.shape[0] if rest else kwargs_or_out.pooled.shape[0]

    def cached(self):
        return attach_cached_features(self.config, self.net, self.pipeline, self.manifest, self.table)

    def direct(self) -> np.ndarray:
        """The watched encoder's outputs computed here and now, for comparison."""
        arrays = {k: torch.from_numpy(np.asarray(v[:])) for k, v in self.table.modalities[self.watch].arrays.items()}
        encoder = self.net.encoders[self.watch].eval()
        with torch.no_grad():
            return encoder(**self.pipeline.preprocessors[self.watch].to_batch(arrays, False)).pooled.numpy()


def test_embeddings_are_computed_once_and_reused_across_runs(tmp_path):
    path = _manifest(tmp_path / "data")
    first = Run(_config(tmp_path / "cache"), path)
    table = first.cached()
    mod = table.modalities["img"]
    assert first.rows_seen == 11  # the 11 present rows, once
    present = mod.present
    assert not present[4] and present.sum() == 11
    pooled = np.asarray(mod.arrays["pooled"][:])
    np.testing.assert_allclose(pooled[present], first.direct()[present], rtol=1e-5, atol=1e-6)
    assert np.all(pooled[4] == 0)
    assert (tmp_path / "cache" / SUBFOLDER).is_dir()
    second = Run(_config(tmp_path / "cache"), path)  # a new run: same weights, same preprocessing
    again = second.cached()
    assert second.rows_seen == 0
    np.testing.assert_array_equal(np.asarray(again.modalities["img"].arrays["pooled"][:]), pooled)


def test_changed_weights_invalidate(tmp_path):
    path = _manifest(tmp_path / "data")
    Run(_config(tmp_path / "cache"), path).cached()
    other = Run(_config(tmp_path / "cache"), path, seed=1)
    other.cached()
    assert other.rows_seen == 11


def test_a_changed_encoder_setting_with_the_same_weights_invalidates(tmp_path):
    """The encoder's settings are part of the key beside its weights: an ``hf`` encoder's pooling
    (cls or mean) changes what the same weights output. Here the CNN's dropout: same weights, new key."""
    path = _manifest(tmp_path / "data")
    first = Run(_config(tmp_path / "cache"), path)
    first.cached()
    other = Run(_config(tmp_path / "cache", encoder={"dropout": 0.2}), path)
    assert other.net.encoders["img"].weights_fingerprint() == first.net.encoders["img"].weights_fingerprint()
    other.cached()
    assert other.rows_seen == 11


def test_a_pooled_only_store_is_not_reused_when_tokens_are_needed(tmp_path):
    """The stored layout is part of the key: a fusion over encoder tokens does not read a store
    that holds only pooled vectors (same encoder, same preprocessing)."""
    path = _manifest(tmp_path / "data")
    pooled_only = Run(_config(tmp_path / "cache"), path)
    pooled_only.cached()
    with_tokens = Run(_config(tmp_path / "cache", tokens=True), path)
    assert (with_tokens.net.encoders["img"].weights_fingerprint()
            == pooled_only.net.encoders["img"].weights_fingerprint())
    arrays = with_tokens.cached().modalities["img"].arrays
    assert with_tokens.rows_seen == 11
    assert {"pooled", "tokens", "token_mask"} <= set(arrays)


def test_changed_preprocessing_invalidates(tmp_path):
    path = _manifest(tmp_path / "data")
    Run(_config(tmp_path / "cache"), path).cached()
    resized = Run(_config(tmp_path / "cache", size=6), path)  # what is decoded changes
    resized.cached()
    assert resized.rows_seen == 11
    renormalised = Run(_config(tmp_path / "cache", normalize="standard", mean=[0.3], std=[0.2]), path)  # batch time
    renormalised.cached()
    assert renormalised.rows_seen == 11


def test_changed_fitted_preprocessing_state_with_the_same_config_invalidates(tmp_path):
    """``normalize: standard`` without mean/std fits them on the training images: four extra white
    images change them, so the twelve rows seen before are embedded again, not reused."""
    config = _config(tmp_path / "cache", normalize="standard")
    first = Run(config, _manifest(tmp_path / "data"))
    before = np.asarray(first.cached().modalities["img"].arrays["pooled"][:])
    brighter = Run(config, _manifest(tmp_path / "data", bright=4))
    assert brighter.pipeline.preprocessors["img"].get_state() != first.pipeline.preprocessors["img"].get_state()
    after = np.asarray(brighter.cached().modalities["img"].arrays["pooled"][:])
    assert brighter.rows_seen == 12  # the 11 rows stored before, again, and one pass for the 4 equal new images
    present = brighter.table.modalities["img"].present
    np.testing.assert_allclose(after[present], brighter.direct()[present], rtol=1e-5, atol=1e-6)
    assert np.abs(after[:12] - before).max() > 1e-3  # the stale embeddings really differ


def test_changed_inline_value_invalidates_only_that_row(tmp_path):
    path = _manifest(tmp_path / "data")
    first = Run(_config(tmp_path / "cache", cached_tab=True), path, watch="tab")
    before = np.asarray(first.cached().modalities["tab"].arrays["pooled"][:])
    assert first.rows_seen == 12
    frame = pd.read_csv(path)
    frame.loc[5, "age"] = 50.0
    frame.to_csv(path, index=False)
    edited = Run(_config(tmp_path / "cache", cached_tab=True), path, watch="tab")
    assert edited.pipeline.preprocessors["tab"].get_state() == first.pipeline.preprocessors["tab"].get_state()
    after = np.asarray(edited.cached().modalities["tab"].arrays["pooled"][:])
    assert edited.rows_seen == 1  # row 5 only
    changed = np.flatnonzero(np.abs(after - before).max(axis=1) > 0)
    assert changed.tolist() == [5]
    np.testing.assert_allclose(after[5], edited.direct()[5], rtol=1e-5, atol=1e-6)


def test_changed_file_content_invalidates_only_that_input_and_a_renamed_copy_hits(tmp_path):
    path = _manifest(tmp_path / "data")
    first = Run(_config(tmp_path / "cache"), path)
    before = np.asarray(first.cached().modalities["img"].arrays["pooled"][:])
    write_image(tmp_path / "data" / "img" / "3.png", np.full((10, 10), 255, np.uint8))
    shutil.copy(tmp_path / "data" / "img" / "7.png", tmp_path / "data" / "img" / "7-renamed.png")
    frame = pd.read_csv(path)
    frame.loc[7, "image"] = "img/7-renamed.png"
    frame.to_csv(path, index=False)
    edited = Run(_config(tmp_path / "cache"), path)
    after = np.asarray(edited.cached().modalities["img"].arrays["pooled"][:])
    assert edited.rows_seen == 1  # row 3 only
    changed = np.flatnonzero(np.abs(after - before).max(axis=1) > 0)
    assert changed.tolist() == [3]
    np.testing.assert_allclose(after[3], edited.direct()[3], rtol=1e-5, atol=1e-6)


def test_in_memory_without_cache_dir(tmp_path):
    run = Run(_config(None), _manifest(tmp_path / "data"))
    table = run.cached()
    assert run.rows_seen == 11
    assert isinstance(table.modalities["img"].arrays["pooled"], np.ndarray)
    assert not any(tmp_path.glob(f"**/{SUBFOLDER}"))


@pytest.mark.parametrize("tokens", [False, True])
def test_network_on_stored_outputs_matches_the_network_on_inputs_without_running_the_encoder(tmp_path, tokens):
    run = Run(_config(tmp_path / "cache", tokens=tokens), _manifest(tmp_path / "data"))
    cached = run.cached()
    if tokens:
        assert set(cached.modalities["img"].arrays) == {"pooled", "tokens", "token_mask"}
    raw_batch = collate(run.pipeline.dataset(run.table).__getitems__(list(range(12))))
    cached_batch = collate(run.pipeline.dataset(cached).__getitems__(list(range(12))))
    run.net.eval()
    with torch.no_grad():
        expected = run.net(raw_batch["inputs"], raw_batch["present"])
        seen = run.rows_seen
        got = run.net(cached_batch["inputs"], cached_batch["present"])
    assert run.rows_seen == seen  # the encoder did not run
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
