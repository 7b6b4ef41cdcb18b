"""A video without an audio track in an audio column (a camera without a microphone) is a row
without its audio modality, as an empty cell is: in training, eager prediction and the runtime,
whatever ``data.on_error``, with one warning counting such rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polymodal.config import load_config
from polymodal.data.pipeline import DataPipeline
from polymodal.data.video_io import write_video
from polymodal.errors import DecodeError

pytest.importorskip("av", reason="pip install av (the 'video' extra)")


def clip() -> np.ndarray:
    return np.stack([np.full((16, 24), 20 * i, np.uint8) for i in range(6)])


def tone() -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)


@pytest.fixture
def clips(tmp_path):
    write_video(str(tmp_path / "talk.mp4"), clip(), fps=10, audio=tone())
    for name in ("mute.mp4", "mute2.mkv"):
        write_video(str(tmp_path / name), clip(), fps=10)
    pd.DataFrame({"clip": ["talk.mp4", "mute.mp4", "mute2.mkv"], "y": [0, 1, 0]}).to_csv(tmp_path / "m.csv",
                                                                                       index=False)
    return tmp_path


def pipeline(on_error: str = "raise", video: bool = True, **data: object) -> DataPipeline:
    modalities = {"sound": {"kind": "audio", "column": "clip", "preprocess": {"sample_rate": 8000}}}
    if video:
        modalities["v"] = {"kind": "video", "column": "clip", "preprocess": {"size": 8, "frames": 2}}
    return DataPipeline(load_config({"task": "classification", "target": "y",
                                     "data": {"on_error": on_error, **data}, "modalities": modalities}))


@pytest.mark.parametrize("on_error", ["raise", "skip", "missing"])
def test_a_video_without_sound_is_a_row_without_its_audio_modality(clips, on_error):
    prep = pipeline(on_error)
    with pytest.warns(UserWarning, match=r"^m.csv: 2 rows' videos hold no audio track \(rows 1 \(line 3\), 2 "
                                         r"\(line 4\)\): their audio modality 'sound' is read as absent, as an empty "
                                         r"cell is$"):
        table = prep.encode(prep.read(clips / "m.csv", require_target=True))
    assert table.rows.tolist() == [0, 1, 2] and not table.skipped
    assert table.modalities["sound"].present.tolist() == [True, False, False]
    assert table.modalities["v"].present.tolist() == [True, True, True]


def test_through_the_feature_cache_too(clips):
    prep = pipeline(cache_dir=str(clips / "cache"))
    for _ in range(2):  # written, then read back: the rows without sound are decoded (and said) again
        with pytest.warns(UserWarning, match="2 rows' videos hold no audio track"):
            table = prep.encode(prep.read(clips / "m.csv", require_target=True))
        assert table.modalities["sound"].present.tolist() == [True, False, False]


def test_a_row_left_with_no_modality_is_refused_or_listed_as_a_row_without_any(clips):
    strict = pipeline(video=False)
    with pytest.warns(UserWarning, match="2 rows' videos hold no audio track"), \
            pytest.raises(DecodeError, match=r"row 1 \(line 3\).*: no modality left: its only files hold nothing of "
                                             r"their modality \(read as absent\)"):
        strict.encode(strict.read(clips / "m.csv", require_target=True))
    lenient = pipeline("missing", video=False)
    with pytest.warns(UserWarning, match="2 rows' videos hold no audio track"):
        table = lenient.encode(lenient.read(clips / "m.csv", require_target=True))
    assert table.rows.tolist() == [0] and [s.row for s in table.skipped] == [1, 2]


def test_the_runtime_reads_a_video_without_sound_as_the_modality_absent(clips, tmp_path):
    from polymodal.deploy.features import AudioFeatures

    meta = {"kind": "audio", "inputs": {}, "state": {},
            "preprocess": {"sample_rate": 8000, "max_seconds": 1.0, "frame_ms": 25.0, "hop_ms": 10.0,
                           "features": "waveform", "crop": "start"}}
    sound = AudioFeatures("sound", meta)
    assert sound.holds(str(clips / "talk.mp4")) and not sound.holds(str(clips / "mute.mp4"))
    upload = (clips / "mute2.mkv").read_bytes()
    assert not sound.holds(upload) and sound.holds((clips / "talk.mp4").read_bytes())
    assert sound.notes(str(clips / "mute.mp4")) == ["the video holds no audio track: read as absent"]
    assert sound.absent_note(3) == "3 rows' videos hold no audio track: their audio modality 'sound' is read as absent"
