"""``moving-digits``: short videos of a handwritten MNIST digit moving across the frame, with the
matching FSDD spoken digit as the audio track (one ``.mp4`` per clip, H.264 + AAC), for
security-style audio-visual anomaly detection.

Each clip: ``frames`` grey frames of ``size`` pixels at ``fps``; the digit (28x28) enters at a
random position and moves in a straight line with a random velocity, bouncing off the borders;
the audio is a recording of the same digit. Anomalous test clips (``label``):

- ``mismatched_audio``: the recording is of another digit;
- ``frozen_frames``: the first frame is repeated for the whole clip;
- ``dropped_audio``: the audio track is silent.

Splits: ``train`` and ``valid`` hold normal clips only; ``test`` holds ``test_normal`` normal clips
and ``test_per_anomaly`` of each anomaly. Recordings with FSDD index 0-4 (the official test part)
and a disjoint pool of MNIST images feed the test clips. The manifests list the same ``.mp4`` in
columns ``video`` and ``audio``: the audio modality reads the file's audio track.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal.data.datasets.base import register_dataset, write_splits
from polymodal.data.datasets.fsdd_mnist import read_fsdd, read_mnist_test
from polymodal.errors import DatasetOptionError

ANOMALIES = ("mismatched_audio", "frozen_frames", "dropped_audio")


def moving_frames(digit: np.ndarray, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(frames, size, size) uint8: ``digit`` (28x28) moving in a straight line, bouncing off the borders."""
    span = size - digit.shape[0]
    pos = rng.uniform(0, span, 2)
    speed = rng.uniform(1.5, 3.0) * span / frames
    angle = rng.uniform(0, 2 * np.pi)
    vel = speed * np.array([np.cos(angle), np.sin(angle)])
    out = np.zeros((frames, size, size), np.uint8)
    for t in range(frames):
        y, x = np.round(pos).astype(int)
        out[t, y:y + digit.shape[0], x:x + digit.shape[1]] = digit
        pos = pos + vel
        for axis in range(2):  # bounce
            if pos[axis] < 0 or pos[axis] > span:
                vel[axis] = -vel[axis]
                pos[axis] = np.clip(pos[axis], 0, span)
    return out


def _read_wave(path: Path) -> np.ndarray:
    from polymodal.data.modalities.audio import read_audio

    wave, _ = read_audio(str(path))
    return wave


@register_dataset("moving-digits", "videos of moving MNIST digits with the spoken FSDD digit as audio; normal train, "
                  "test with mismatched audio / frozen frames / dropped audio", source="fsdd/recordings and mnist/",
                  folders=("clips",))
def prepare_moving_digits(out: Path, source: Path, seed: int = 0, n_train: int = 2000, n_valid: int = 200,
                          test_normal: int = 150, test_per_anomaly: int = 150, frames: int = 16, size: int = 48,
                          fps: int = 16, progress: bool = True, **_: Any) -> dict[str, Any]:
    """Write the clips and ``train/valid/test.csv`` into ``out``.

    Args:
        progress: show a bar advanced as clips are written (on a terminal only; ~45 s for the
            default 2,800 clips).
    """
    from polymodal.data.video_io import write_video
    from polymodal.utils.progress import progress_bar

    if size < 28 or size % 2:  # a 28-pixel digit moves across the frame; H.264 needs even sides
        raise DatasetOptionError(f"dataset 'moving-digits' takes an even --size of at least 28 (frame side in "
                                 f"pixels); got {size}", dataset="moving-digits", option="size")
    counts = {"n_train": n_train, "n_valid": n_valid, "test_normal": test_normal, "test_per_anomaly": test_per_anomaly}
    for option, count in counts.items():  # an empty split (or a test split without normal or anomalous clips)
        if count < 1:
            raise DatasetOptionError(f"dataset 'moving-digits': {option} must be at least 1 (every split holds clips, "
                                     f"the test split both normal and anomalous ones); got {count}",
                                     dataset="moving-digits", option=option)
    out, source = Path(out), Path(source)
    clips = read_fsdd(source, "moving-digits")
    images, labels = read_mnist_test(source, "moving-digits")
    rng = np.random.default_rng(seed)
    is_test_clip = (clips["index"] < 5).to_numpy()
    image_pool = {d: rng.permutation(np.flatnonzero(labels == d)) for d in range(10)}
    half = {d: len(p) // 2 for d, p in image_pool.items()}
    (out / "clips").mkdir(parents=True, exist_ok=True)
    plan = {"train": [("normal", n_train)], "valid": [("normal", n_valid)],
            "test": [("normal", test_normal), *[(a, test_per_anomaly) for a in ANOMALIES]]}
    frames_out: dict[str, pd.DataFrame] = {}
    total = sum(count for parts in plan.values() for _, count in parts)
    with progress_bar(total, "writing moving-digits clips", enabled=progress, min_total=1) as advance:
        for split, parts in plan.items():
            test = split == "test"
            pool = clips[is_test_clip == test]
            records = []
            for kind, count in parts:
                for _ in range(count):
                    digit = int(rng.integers(10))
                    own = image_pool[digit][half[digit]:] if test else image_pool[digit][:half[digit]]
                    image = images[int(rng.choice(own))]
                    audio_digit = (digit + int(rng.integers(1, 10))) % 10 if kind == "mismatched_audio" else digit
                    recording = pool[pool["digit"] == audio_digit].sample(1, random_state=int(rng.integers(2**31)))
                    wave = _read_wave(recording["path"].iloc[0])
                    video = moving_frames(image, frames, size, rng)
                    if kind == "frozen_frames":
                        video = np.repeat(video[:1], frames, axis=0)
                    if kind == "dropped_audio":
                        wave = np.zeros_like(wave)
                    name = f"clips/{split}_{len(records):05d}_{kind}.mp4"
                    write_video(str(out / name), video, fps=fps, audio=wave, sample_rate=8000)
                    records.append({"video": name, "audio": name, "label": kind, "digit": digit,
                                    "audio_digit": audio_digit, "speaker": recording["speaker"].iloc[0],
                                    "recording": recording["path"].iloc[0].name})
                    advance(1)
            frames_out[split] = pd.DataFrame(records)
    return write_splits(out, frames_out, {"name": "moving-digits", "seed": seed, "target": "label", "frames": frames,
                                          "size": size, "fps": fps, "anomalies": list(ANOMALIES)})
