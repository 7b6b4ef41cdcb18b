"""A video modality through the whole predictor: fit, predict, save and load (tiny clips in tmp_path)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers_models import assert_same_numbers, frame_cache_config, write_short_clips
from PIL import Image

from polymodal import MultimodalPredictor
from polymodal.data.video_io import write_video


def test_video_and_its_audio_track_train_predict_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        label = i % 2
        frames = np.zeros((6, 16, 16), np.uint8)
        for t in range(6):  # a bright square moving right (label 1) or left (label 0)
            x = 2 + 2 * t if label else 12 - 2 * t
            frames[t, 6:10, x:x + 3] = 255
        audio = (0.3 * np.sin(2 * np.pi * (300 + 300 * label) * np.arange(4000) / 8000)).astype(np.float32)
        write_video(str(tmp_path / f"c{i}.mp4"), frames, fps=6, audio=audio + 0.01 * rng.standard_normal(4000))
        rows.append({"clip": f"c{i}.mp4", "label": label})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    config = {
        "task": "classification", "target": "label",
        "modalities": {
            "video": {"kind": "video", "column": "clip", "preprocess": {"size": 16, "color": "gray", "frames": 4,
                                                                 "augment": {"translate": 0.1}},
                      "encoder": {"name": "frame_cnn", "frame": {"name": "cnn", "channels": [4], "dim": 8},
                                  "temporal": "gru", "dim": 8}},
            "sound": {"kind": "audio", "column": "clip", "preprocess": {"sample_rate": 8000, "max_seconds": 0.5},
                      "encoder": {"name": "mel_cnn", "channels": [4], "dim": 8}}},
        "fusion": {"name": "concat"},
        "train": {"epochs": 2, "batch_size": 8, "progress": False, "early_stopping": None},
        "report": {"rows": 0},
    }
    pred = MultimodalPredictor.from_config(config).fit(tmp_path / "m.csv", tmp_path / "m.csv", out=tmp_path / "run")
    proba = pred.predict_proba(tmp_path / "m.csv")
    assert proba.shape == (16, 2) and np.isfinite(proba.to_numpy()).all()
    again = MultimodalPredictor.load(tmp_path / "run")
    pd.testing.assert_frame_equal(again.predict_proba(tmp_path / "m.csv"), proba)
    alone = pred.predict_proba(tmp_path / "m.csv", modalities=["video"])  # the audio track treated as missing
    assert not np.allclose(alone.to_numpy(), proba.to_numpy())


def test_fixmatch_learns_from_unlabelled_clips_through_their_strong_view(tmp_path, monkeypatch):
    import polymodal.training.semi as semi

    views = []

    def recorded(inputs, *args, **kwargs):
        out = strong_view(inputs, *args, **kwargs)
        views.append((inputs["video"]["x"].clone(), out["video"]["x"]))
        return out

    strong_view = semi.strong_view
    monkeypatch.setattr(semi, "strong_view", recorded)
    rows = []
    for i in range(24):
        label = i % 2
        frames = np.zeros((4, 12, 12), np.uint8)
        for t in range(4):  # a bright bar moving right (label 1) or left (label 0)
            frames[t, 3:9, (2 + 2 * t) if label else (8 - 2 * t)] = 255
        np.save(tmp_path / f"c{i}.npy", frames)
        rows.append({"clip": f"c{i}.npy", "label": label})
    pd.DataFrame(rows[:8]).to_csv(tmp_path / "labelled.csv", index=False)
    pd.DataFrame(rows[8:]).drop(columns="label").to_csv(tmp_path / "unlabelled.csv", index=False)
    config = {
        "task": "classification", "target": "label",
        "modalities": {"video": {"kind": "video", "column": "clip",
                                 "preprocess": {"size": 12, "color": "gray", "frames": 4, "augment": {"translate": 0.1}},
                                 "encoder": {"name": "frame_cnn", "frame": {"name": "cnn", "channels": [4], "dim": 8},
                                             "temporal": "gru", "dim": 8}}},
        "transfer": {"method": "fixmatch", "threshold": 0.0},
        "train": {"epochs": 2, "batch_size": 4, "progress": False, "early_stopping": None},
        "report": {"rows": 0},
    }
    pred = MultimodalPredictor.from_config(config).fit(tmp_path / "labelled.csv", tmp_path / "labelled.csv",
                                                       unlabeled=tmp_path / "unlabelled.csv")
    assert pred.info["unlabeled_rows"] == 16
    losses = pred.history["train_fixmatch_loss"].to_numpy()
    assert np.isfinite(losses).all() and (losses > 0).all()
    assert views and all(not torch.equal(weak, strong) for weak, strong in views)  # every step's clips perturbed


def test_frame_folders_in_a_manifest_train_and_a_cached_run_sees_an_edited_frame(tmp_path):
    """A video cell may name a folder of frame images; the tensor cache keys it by every frame's
    name and bytes (a folder's own times do not change when a frame is edited in place)."""
    rows = []
    for i in range(8):
        folder = tmp_path / f"clip{i}"
        folder.mkdir()
        for t in range(3):
            frame = np.full((8, 8), 40 * t + 100 * (i % 2), np.uint8)
            Image.fromarray(frame).save(folder / f"{t:03d}.png")
        rows.append({"clip": f"clip{i}", "label": i % 2})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    config = {
        "task": "classification", "target": "label",
        "modalities": {"video": {"kind": "video", "column": "clip", "preprocess": {"size": 8, "color": "gray",
                                                                                 "frames": 3},
                                 "encoder": {"name": "frame_cnn", "frame": {"name": "cnn", "channels": [4], "dim": 8},
                                             "temporal": "mean", "dim": 8}}},
        "fusion": {"name": "concat"},
        "train": {"epochs": 1, "batch_size": 4, "progress": False, "early_stopping": None},
        "data": {"cache_dir": str(tmp_path / "cache")},
        "report": {"rows": 0},
    }
    pred = MultimodalPredictor.from_config(config).fit(tmp_path / "m.csv", tmp_path / "m.csv")
    before = pred.predict_proba(tmp_path / "m.csv")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "clip0" / "001.png")  # edited in place
    after = pred.predict_proba(tmp_path / "m.csv")
    changed = ~np.isclose(before.to_numpy(), after.to_numpy()).all(axis=1)
    assert changed.tolist() == [True] + [False] * 7


# --- frame.cache: a frozen frame encoder's per-frame vectors cached under a GRU that trains ---
class FrameEncoderCalls:
    """Counts the frames ``FrameEncoder``'s frame encoder runs on (the only way to it), and keeps
    the state every ``FrameEncoder`` was built with."""

    def __init__(self, monkeypatch):
        from polymodal.models.encoders.video import FrameEncoder

        self.frames, self.built = 0, []
        vectors, build = FrameEncoder.frame_vectors, FrameEncoder.from_config.__func__

        def counted(encoder, frames):
            self.frames += frames.shape[0]
            return vectors(encoder, frames)

        def recorded(cls, *args, **kwargs):
            encoder = build(cls, *args, **kwargs)
            self.built.append({k: v.detach().clone() for k, v in encoder.state_dict().items()})
            return encoder

        monkeypatch.setattr(FrameEncoder, "frame_vectors", counted)
        monkeypatch.setattr(FrameEncoder, "from_config", classmethod(recorded))

    def since(self, start: int) -> int:
        return self.frames - start


@pytest.fixture(scope="module")
def frame_cached(tmp_path_factory):
    """A fit with frame.cache, and the frames its frame encoder ran on (one pass to fill the cache)."""
    folder = tmp_path_factory.mktemp("frame-cache")
    real = write_short_clips(folder)
    with pytest.MonkeyPatch.context() as patch:
        calls = FrameEncoderCalls(patch)
        predictor = MultimodalPredictor.from_config(frame_cache_config(folder / "cache")).fit(
            folder / "m.csv", folder / "m.csv", out=folder / "run")
        return {"folder": folder, "real": real, "predictor": predictor, "fit_frames": calls.frames,
                "initial": calls.built[0]}


def test_a_fit_stores_the_frame_vectors_once_and_a_second_fit_trains_the_gru_on_them(frame_cached, monkeypatch):
    folder = frame_cached["folder"]
    # training and validation read the same clips: the frame encoder ran once per clip, on its real frames
    assert frame_cached["fit_frames"] == frame_cached["real"]
    encoder = frame_cached["predictor"].net.encoders["video"]
    initial = frame_cached["initial"]
    for key, value in encoder.state_dict().items():
        if key.startswith("frame."):  # frozen, and its vectors cached
            assert torch.equal(value.cpu(), initial[key]), key
    trained = [key for key in initial if key.startswith("temporal.")]
    assert trained and all(not torch.equal(encoder.state_dict()[k].cpu(), initial[k]) for k in trained)
    calls = FrameEncoderCalls(monkeypatch)
    again = MultimodalPredictor.from_config(frame_cache_config(folder / "cache")).fit(folder / "m.csv", folder / "m.csv")
    assert calls.frames == 0  # the same frame weights: every clip read back from the cache, none encoded
    assert torch.equal(again.net.encoders["video"].frame.state_dict()["stages.0.0.weight"],
                       encoder.frame.state_dict()["stages.0.0.weight"])
    assert not torch.equal(calls.built[0]["temporal.weight_ih_l0"], again.net.encoders["video"].temporal.weight_ih_l0)


def test_the_cached_run_predicts_what_its_weights_give_on_the_raw_frames(frame_cached, monkeypatch):
    """Short clips (padding) and a row without a clip included; the saved run does the same."""
    folder, predictor = frame_cached["folder"], frame_cached["predictor"]
    calls = FrameEncoderCalls(monkeypatch)
    cached = predictor.predict_proba(folder / "m.csv")
    loaded = MultimodalPredictor.load(folder / "run").predict_proba(folder / "m.csv")
    assert calls.frames == 0  # read back from the cache
    monkeypatch.setattr(MultimodalPredictor, "network_table", lambda self, manifest, table, **_: table)
    raw = predictor.predict_proba(folder / "m.csv")  # the whole video encoder on the frames
    assert calls.frames == frame_cached["real"]
    np.testing.assert_allclose(cached.to_numpy(), raw.to_numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.to_numpy(), raw.to_numpy(), rtol=1e-5, atol=1e-5)


def test_integrated_gradients_of_a_cached_run_read_the_frames(frame_cached, monkeypatch):
    folder, predictor = frame_cached["folder"], frame_cached["predictor"]
    calls = FrameEncoderCalls(monkeypatch)
    explanation = predictor.explain(folder / "m.csv", samples=4, steps=8)
    videos = [item for item in explanation.within if item.modality == "video"]
    assert len(videos) >= 2 and all(item.layout == "frames" for item in videos) and calls.frames > 0
    assert all(item.attribution.shape == (3 + item.row % 3, 8, 8) and np.abs(item.attribution).sum() > 0
               for item in videos)


def test_the_report_of_a_frame_cached_run_gives_the_numbers_of_running_the_frame_encoder(frame_cached, monkeypatch):
    """Subsets, Shapley importance and calibration read the cached frame vectors, once per row."""
    from polymodal.config import ReportConfig
    from polymodal.evaluation.diagnostics import diagnose

    folder, predictor = frame_cached["folder"], frame_cached["predictor"]
    cfg = ReportConfig(rows=16, robustness=False)
    calls = FrameEncoderCalls(monkeypatch)
    fast = diagnose(predictor, folder / "m.csv", "test", cfg)
    latency = calls.frames  # the latency measurement times the whole network on the frames, as deployed
    monkeypatch.setattr(MultimodalPredictor, "network_table", lambda self, manifest, table, **_: table)
    slow = diagnose(predictor, folder / "m.csv", "test", cfg)
    assert calls.frames - latency > 5 * frame_cached["real"]  # without the cache: every analysis encodes frames
    for key in ("subsets", "importance", "interactions", "calibration"):
        assert_same_numbers(fast[key], slow[key], key)
