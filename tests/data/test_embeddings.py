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


def _text_manifest(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    words = ["red cat", "a blue dog runs", "green bird", "", "red dog sits here", "blue cat", "a bird"]
    path = folder / "notes.csv"
    pd.DataFrame({"note": words, "y": ["a", "b"] * 3 + ["a"]}).to_csv(path, index=False)
    return path


def _text_config(cache_dir: Path, **encoder):
    text = {"kind": "text", "column": "note",
            "encoder": {"name": "rnn", "embed_dim": 4, "hidden": 4, "freeze": "all", "cache": True, **encoder}}
    return make_config({"txt": text}, data={"cache_dir": str(cache_dir)})


def test_a_changed_encoder_setting_with_the_same_weights_invalidates(tmp_path):
    """The encoder's settings are part of the key beside its weights: an RNN's pooling (mean, max or
    last) changes what the same weights output."""
    path, cache = _text_manifest(tmp_path / "data"), tmp_path / "cache"
    first = Run(_text_config(cache, pooling="mean"), path, watch="txt")
    before = np.asarray(first.cached().modalities["txt"].arrays["pooled"][:])
    assert first.rows_seen == 6
    other = Run(_text_config(cache, pooling="max"), path, watch="txt")
    assert other.net.encoders["txt"].weights_fingerprint() == first.net.encoders["txt"].weights_fingerprint()
    after = np.asarray(other.cached().modalities["txt"].arrays["pooled"][:])
    assert other.rows_seen == 6
    present = other.table.modalities["txt"].present
    np.testing.assert_allclose(after[present], other.direct()[present], rtol=1e-5, atol=1e-6)
    assert np.abs(after - before).max() > 1e-3  # the store of the mean pooling was not read


def test_a_setting_that_acts_only_in_training_reuses_the_stored_embeddings(tmp_path):
    """Dropout is off in eval mode: a cached encoder's dropout leaves the key alone."""
    path, cache = _text_manifest(tmp_path / "data"), tmp_path / "cache"
    first = Run(_text_config(cache), path, watch="txt")
    stored = np.asarray(first.cached().modalities["txt"].arrays["pooled"][:])
    other = Run(_text_config(cache, dropout=0.4), path, watch="txt")
    again = np.asarray(other.cached().modalities["txt"].arrays["pooled"][:])
    assert other.rows_seen == 0
    np.testing.assert_array_equal(again, stored)
    present = other.table.modalities["txt"].present
    np.testing.assert_allclose(again[present], other.direct()[present], rtol=1e-5, atol=1e-6)


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


# --- a cached front stage: frame_cnn's frame encoder (frame.cache) under a trainable temporal model ---
FRAME = {"name": "cnn", "channels": [4], "dim": 6, "freeze": "all", "cache": True}


def _clips(folder: Path, n: int = 8) -> Path:
    """``n`` random .npy clips of 2-5 frames (4 sampled with a stride: the short ones padded); row 2
    has none."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        clip = "" if i == 2 else f"v{i}.npy"
        if clip:
            np.save(folder / clip, rng.integers(0, 256, (2 + i % 4, 8, 8), dtype=np.uint8))
        rows.append({"clip": clip, "age": float(i), "y": ["a", "b"][i % 2]})
    path = folder / "clips.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _video_config(cache_dir: Path, frame: dict | None = None, temporal: dict | None = None, **preprocess):
    video = {"kind": "video", "column": "clip",
             "preprocess": {"size": 8, "color": "gray", "frames": 4, "sampling": "stride", **preprocess},
             "encoder": {"name": "frame_cnn", "frame": {**FRAME, **(frame or {})},
                         **(temporal or {"temporal": "gru", "dim": 4})}}
    return make_config({"v": video, "tab": {"kind": "tabular", "columns": ["age"]}}, fusion={"name": "concat"},
                       data={"cache_dir": str(cache_dir)})


class VideoRun:
    """Pipeline + network for a video config, counting the frames its frame encoder runs on."""

    def __init__(self, config, manifest_path: Path, monkeypatch, seed: int = 0):
        from polymodal.models.encoders.video import FrameEncoder

        self.config, self.manifest = config, read_manifest(manifest_path)
        self.pipeline = DataPipeline(config)
        self.table, _ = self.pipeline.fit(self.manifest)
        torch.manual_seed(seed)
        self.net = build_model(config, self.pipeline.contexts(), self.pipeline.targets.n_outputs)
        self.frames_seen = 0
        original = FrameEncoder.frame_vectors

        def counted(encoder, frames):
            self.frames_seen += frames.shape[0]
            return original(encoder, frames)

        monkeypatch.setattr(FrameEncoder, "frame_vectors", counted)

    def cached(self):
        return attach_cached_features(self.config, self.net, self.pipeline, self.manifest, self.table)

    @property
    def frame_fingerprint(self) -> str:
        return self.net.encoders["v"].frame.weights_fingerprint()


def _stores(cache_dir: Path) -> set[str]:
    return {p.name for p in (cache_dir / SUBFOLDER).iterdir() if (p / "spec.json").is_file()}


REAL_FRAMES = sum(min(2 + i % 4, 4) for i in range(8) if i != 2)  # what one pass over the clips encodes


def test_frame_vectors_are_cached_per_clip_with_their_mask(tmp_path, monkeypatch):
    path = _clips(tmp_path / "data")
    run = VideoRun(_video_config(tmp_path / "cache"), path, monkeypatch)
    mod = run.cached().modalities["v"]
    assert run.frames_seen == REAL_FRAMES  # the padding of short clips stays out of the frame encoder
    vectors, mask = np.asarray(mod.arrays["frame_vectors"][:]), np.asarray(mod.arrays["mask"][:])
    assert vectors.shape == (8, 4, 6) and vectors.dtype == np.float32 and mask.dtype == bool
    assert mask.sum(axis=1).tolist() == [2, 3, 0, 4, 2, 3, 4, 4] and not vectors[~mask].any()
    assert set(mod.arrays) == {"frame_vectors", "mask"}  # the temporal model's outputs are never stored
    batch = collate(run.pipeline.dataset(run.cached()).__getitems__(list(range(8))))
    assert batch["inputs"]["v"]["mask"].dtype == torch.bool and batch["inputs"]["v"]["frame_vectors"].shape == (8, 4, 6)


def test_frame_vectors_are_keyed_by_the_frame_encoder_and_preprocessing_not_the_temporal_model(tmp_path,
                                                                                                monkeypatch):
    path, cache = _clips(tmp_path / "data"), tmp_path / "cache"
    first = VideoRun(_video_config(cache), path, monkeypatch)
    stored = np.asarray(first.cached().modalities["v"].arrays["frame_vectors"][:])
    assert len(_stores(cache)) == 1
    for temporal in ({"temporal": "gru", "dim": 8, "layers": 2, "dropout": 0.3},
                     {"temporal": "transformer", "dim": 4, "heads": 2}, {"temporal": "mean", "dim": 3, "heads": 1}):
        other = VideoRun(_video_config(cache, temporal=temporal), path, monkeypatch)
        assert other.frame_fingerprint == first.frame_fingerprint  # the same frame weights (built first)
        again = np.asarray(other.cached().modalities["v"].arrays["frame_vectors"][:])
        assert other.frames_seen == 0, temporal  # a hit: another temporal model reads the same vectors
        np.testing.assert_array_equal(again, stored)
    assert len(_stores(cache)) == 1
    reseeded = VideoRun(_video_config(cache), path, monkeypatch, seed=1)  # other frame weights
    assert reseeded.frame_fingerprint != first.frame_fingerprint
    reseeded.cached()
    assert reseeded.frames_seen == REAL_FRAMES and len(_stores(cache)) == 2
    trained_only = VideoRun(_video_config(cache, frame={"dropout": 0.2}), path, monkeypatch)  # off in eval mode
    assert trained_only.frame_fingerprint == first.frame_fingerprint
    trained_only.cached()
    assert trained_only.frames_seen == 0 and len(_stores(cache)) == 2
    for preprocess in ({"normalize": "standard", "mean": [0.3], "std": [0.2]}, {"frames": 3}):
        changed = VideoRun(_video_config(cache, **preprocess), path, monkeypatch)
        changed.cached()
        assert changed.frames_seen > 0, preprocess
    assert len(_stores(cache)) == 4


def test_an_edited_clip_is_embedded_again_alone(tmp_path, monkeypatch):
    path, cache = _clips(tmp_path / "data"), tmp_path / "cache"
    VideoRun(_video_config(cache), path, monkeypatch).cached()
    np.save(tmp_path / "data" / "v3.npy", np.full((5, 8, 8), 255, np.uint8))  # 4 frames read
    edited = VideoRun(_video_config(cache), path, monkeypatch)
    edited.cached()
    assert edited.frames_seen == 4


def test_a_video_present_in_no_row_gets_zero_frame_vectors_of_the_stage_s_layout(tmp_path, monkeypatch):
    path = _clips(tmp_path / "data")
    run = VideoRun(_video_config(tmp_path / "cache"), path, monkeypatch)
    table = run.table.select(np.arange(8) == 2)  # row 2 has no clip
    arrays = attach_cached_features(run.config, run.net, run.pipeline, run.manifest, table).modalities["v"].arrays
    assert arrays["frame_vectors"].shape == (1, 4, 6) and not arrays["frame_vectors"].any()
    assert arrays["mask"].shape == (1, 4) and arrays["mask"].dtype == bool


def test_two_processes_embedding_into_one_store_at_once_embed_each_input_once(tmp_path):
    """Two runs on one cache at once: the second waits while the first embeds, then reads what it
    stored, running its encoder on nothing. (Threads stand in for processes: the advisory lock
    taken through two open files excludes either.)"""
    import threading

    path = _manifest(tmp_path / "data")
    first, second = Run(_config(tmp_path / "cache"), path), Run(_config(tmp_path / "cache"), path)
    entered, release = threading.Event(), threading.Event()

    def hold(*_):  # the first run stays inside its first encoder pass until released
        if threading.current_thread().name == "first" and not entered.is_set():
            entered.set()
            assert release.wait(30)

    first.net.encoders["img"].register_forward_hook(hold)
    tables = {}
    threads = {name: threading.Thread(target=lambda n=name, r=run: tables.update({n: r.cached()}), name=name)
               for name, run in (("first", first), ("second", second))}
    threads["first"].start()
    assert entered.wait(30)
    threads["second"].start()
    try:
        threads["second"].join(1.0)
        assert threads["second"].is_alive()  # waiting for the first to store its embeddings
    finally:
        release.set()
    for thread in threads.values():
        thread.join(60)
    assert first.rows_seen == 11 and second.rows_seen == 0
    np.testing.assert_array_equal(np.asarray(tables["first"].modalities["img"].arrays["pooled"][:]),
                                  np.asarray(tables["second"].modalities["img"].arrays["pooled"][:]))
