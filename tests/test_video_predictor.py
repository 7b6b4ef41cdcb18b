"""A video modality through the whole predictor: fit, predict, save and load (tiny clips in tmp_path)."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
            "video": {"kind": "video", "column": "clip", "preprocess": {"size": 16, "color": "gray", "frames": 4},
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
