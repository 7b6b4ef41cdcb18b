"""Video: PyAV decode (mp4, avi, webm, mkv, mov...), a folder of frame images or a ``.npy`` of
frames; ``frames`` frames sampled uniformly (in time, by the frames' timestamps, where a container
stamps them) or with a stride; every frame converted, resized and
normalised exactly like an image (the image preprocessor's own functions do it), and in training
augmented as an image is, with one draw per clip (every frame of a clip flipped, moved and scaled
alike, with the same brightness and contrast factors, so that the motion between frames stays what
was filmed).

Cached form: ``x`` uint8 (T, H, W, C) and ``length`` int32, the number of real frames (the rest
is zero padding, ``stride`` sampling of a short clip). Batch form: ``x`` float (B, T, C, H, W)
and ``mask`` (B, T) True on real frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from polymodal.config.modalities import VideoModality
from polymodal.config.preprocess import ImagePreprocess, VideoPreprocess
from polymodal.data.arrays import load_npy
from polymodal.data.modalities.base import PREPROCESSORS, ArraySpec, Preprocessor, channel_stats
from polymodal.data.modalities.image import ImagePreprocessor
from polymodal.data.video_io import read_frames, sample_indices, sample_times


@PREPROCESSORS.register(VideoModality)
class VideoPreprocessor(Preprocessor):
    """See the module docstring. Normalisation statistics (``standard``) are per channel, pooled
    over all frames of the training clips."""

    kind = "video"
    featurize_version = 8  # 2: 16-bit frames in folders scaled as 16-bit image files are; 3: alpha composited;
    # 4: a .npy clip scaled once, not frame by frame; 5: uniform sampling in time on variable-frame-rate containers;
    # 6: HSV frames resized as RGB, a grey frame's colour key composited for rgb (ImagePreprocessor.from_pil);
    # 7: frame folders in natural order (2.png before 10.png), truncated containers and frames past max_pixels refused;
    # 8: a frame folder mixing image sizes refused (cached before as read)
    batch_time_fields = frozenset({"normalize", "mean", "std", "augment"})
    added_settings = ImagePreprocessor.added_settings

    def __init__(self, name: str, cfg: VideoPreprocess):
        super().__init__(name)
        self.cfg = cfg
        image_fields = set(ImagePreprocess.model_fields)
        self.frame = ImagePreprocessor(name, ImagePreprocess(**cfg.model_dump(include=image_fields)))

    @classmethod
    def from_config(cls, cfg: VideoModality, *, name: str) -> VideoPreprocessor:
        return cls(name, cfg.preprocess)

    def _pick(self, total: int) -> np.ndarray:
        return sample_indices(total, self.cfg.frames, self.cfg.sampling, self.cfg.stride)

    def _pick_times(self, times: np.ndarray) -> np.ndarray:
        return sample_times(times, self.cfg.frames)

    def decode(self, value: Any) -> tuple[np.ndarray, int]:
        """One clip -> ((T, H, W, C) uint8 zero-padded to ``frames``, number of real frames)."""
        by_time = self._pick_times if self.cfg.sampling == "uniform" else None
        # each frame converted and resized as it is decoded: no full-resolution frame waits for the others
        frames = np.stack(read_frames(str(value), self._pick, self.cfg.max_frames, load_npy, by_time,
                                      max_pixels=self.cfg.max_pixels, convert=self.frame.from_pil,
                                      value_range=self.cfg.value_range))  # (K, H, W, C)
        out = np.zeros((self.cfg.frames, *frames.shape[1:]), np.uint8)
        out[:len(frames)] = frames
        return out, len(frames)

    def featurize(self, samples: Sequence[tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
        return {"x": np.stack([s[0] for s in samples]), "length": np.asarray([s[1] for s in samples], np.int32)}

    def spec(self) -> dict[str, ArraySpec]:
        return {"x": ArraySpec((self.cfg.frames, *self.frame.size, self.frame.channels), "uint8"),
                "length": ArraySpec((), "int32")}

    def fit_features(self, arrays: Mapping[str, np.ndarray]) -> None:
        if self.cfg.normalize == "standard" and self.cfg.mean is None:
            mean, std = channel_stats(arrays["x"], axis=4, valid=arrays["length"], time_axis=1)
            self.frame.mean, self.frame.std = mean / 255.0, std / 255.0

    def to_batch(self, arrays: Mapping[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        x = arrays["x"]  # (B, T, H, W, C) uint8
        batch, steps = x.shape[:2]
        frames = self.frame.to_batch({"x": x.reshape(batch * steps, *x.shape[2:])}, train, per_draw=steps)["x"]
        mask = torch.arange(steps).unsqueeze(0) < arrays["length"].long().unsqueeze(1)  # (B, T)
        return {"x": frames.reshape(batch, steps, *frames.shape[1:]), "mask": mask}

    def encoder_context(self) -> dict[str, Any]:
        return {"in_channels": self.frame.channels, "size": self.frame.size, "frames": self.cfg.frames}

    def get_state(self) -> dict[str, Any]:
        return self.frame.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.frame.set_state(state)
