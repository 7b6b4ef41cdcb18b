"""``moving-digits``: moving MNIST digits with the spoken FSDD digit as the audio track, from a tiny
fake source; normal clips for training, three kinds of anomalies for testing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal.data.datasets import prepare
from polymodal.data.datasets.moving_digits import moving_frames
from polymodal.data.video_io import read_frames, read_video_audio, sample_indices
from polymodal.errors import DatasetOptionError

from . import fake_sources as fake


def test_moving_frames_keep_the_whole_digit_inside_and_move_it():
    digit = np.zeros((28, 28), np.uint8)
    digit[10:18, 12:16] = 200
    clip = moving_frames(digit, frames=12, size=48, rng=np.random.default_rng(0))
    assert clip.shape == (12, 48, 48)
    assert (clip.reshape(12, -1).sum(axis=1) == int(digit.sum())).all()  # never clipped by a border
    centres = [np.argwhere(frame).mean(axis=0) for frame in clip]
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.mean() > 1.5  # it moves every frame (bouncing off the borders)


def test_splits_labels_and_anomalies(tmp_path):
    source = tmp_path / "source"
    fake.make_fsdd(source, {"jackson": 6})  # indices 0-4 feed test clips, 5 the others
    fake.make_mnist(source, n=200)
    out = tmp_path / "out"
    summary = prepare("moving-digits", out, source=source, n_train=6, n_valid=2, test_normal=2, test_per_anomaly=2,
                      frames=4, size=32, fps=4)
    assert summary["rows"] == {"train": 6, "valid": 2, "test": 8}
    fake.assert_writes_its_own_entries(out, "moving-digits")
    parts = {s: pd.read_csv(out / f"{s}.csv") for s in ("train", "valid", "test")}
    assert set(parts["train"]["label"]) == set(parts["valid"]["label"]) == {"normal"}
    assert parts["test"]["label"].value_counts().to_dict() == {
        "normal": 2, "mismatched_audio": 2, "frozen_frames": 2, "dropped_audio": 2}
    for split, frame in parts.items():
        index = frame["recording"].str.extract(r"_(\d+)\.wav$")[0].astype(int)
        assert ((index < 5) == (split == "test")).all()  # test clips use FSDD's test recordings
        assert (frame["video"] == frame["audio"]).all()
        mismatched = frame["label"] == "mismatched_audio"
        assert (frame["digit"][mismatched] != frame["audio_digit"][mismatched]).all()
        assert (frame["digit"][~mismatched] == frame["audio_digit"][~mismatched]).all()
    for row in parts["test"].itertuples():
        path = str(out / row.video)
        frames = np.stack([np.asarray(f.convert("L"), np.float32) for f in read_frames(
            path, lambda n: sample_indices(n, 4, "uniform", 1), 100, np.load)])
        still = np.abs(frames - frames[0]).max() < 20  # codec noise only
        assert still == (row.label == "frozen_frames"), row
        wave, _ = read_video_audio(path)
        assert (np.abs(wave).max() < 1e-3) == (row.label == "dropped_audio"), row


def test_a_frame_side_too_small_for_a_digit_or_odd_is_refused(tmp_path):
    import pytest

    from polymodal.errors import DatasetOptionError

    source = tmp_path / "source"
    source.mkdir()
    for size in (10, 49):
        with pytest.raises(DatasetOptionError, match=f"an even --size of at least 28 .*got {size}"):
            prepare("moving-digits", tmp_path / "out", source=source, size=size)


def test_preparation_advances_its_progress_bar_once_per_clip_written(tmp_path, monkeypatch):
    from contextlib import contextmanager

    import polymodal.utils.progress
    from polymodal.data import video_io

    events = []

    @contextmanager
    def recorder(total, description, enabled=True, min_total=200):
        events.append(("bar", total, enabled, min_total))
        yield lambda n: events.append(("advance", n, len(list((tmp_path / "out" / "clips").glob("*.mp4")))))
        events.append(("closed",))

    monkeypatch.setattr(polymodal.utils.progress, "progress_bar", recorder)
    write = video_io.write_video
    monkeypatch.setattr(video_io, "write_video", lambda *a, **k: (events.append(("clip",)), write(*a, **k))[1])
    source = tmp_path / "source"
    fake.make_fsdd(source, {"jackson": 6})
    fake.make_mnist(source, n=200)
    prepare("moving-digits", tmp_path / "out", source=source, n_train=2, n_valid=1, test_normal=1, test_per_anomaly=1,
            frames=4, size=32, fps=4)
    # one bar over every clip of the three splits (drawn even for a few: each clip is slow)...
    assert events[0] == ("bar", 7, True, 1) and events[-1] == ("closed",)
    # ...advanced by one right after each clip is written, by the count on disk
    assert events[1:-1] == [e for i in range(1, 8) for e in (("clip",), ("advance", 1, i))]

    events.clear()
    prepare("moving-digits", tmp_path / "quiet", source=source, n_train=1, n_valid=1, test_normal=1,
            test_per_anomaly=1, frames=4, size=32, fps=4, progress=False)
    assert events[0] == ("bar", 6, False, 1)


@pytest.mark.parametrize("option", ["n_train", "n_valid", "test_normal", "test_per_anomaly"])
def test_a_split_count_of_zero_is_refused_before_anything_is_written(option, tmp_path):
    (tmp_path / "source").mkdir()  # refused before the source is read
    with pytest.raises(DatasetOptionError, match=f"'moving-digits': {option} must be at least 1 .*; got 0") as info:
        prepare("moving-digits", tmp_path / "out", source=tmp_path / "source", **{option: 0})
    assert info.value.option == option and not (tmp_path / "out").exists()
