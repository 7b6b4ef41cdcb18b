"""Per-modality preprocessing in numpy, from an export's JSON state (no torch): one module per kind,
the runtime's twin of :mod:`polymodal.data.modalities`.

Each class mirrors the ``decode`` + ``featurize`` steps of the training-time preprocessor of its
kind (``polymodal.data.modalities``) and produces the same cached-form arrays, which the exported
graph then normalises itself. The export's parity check compares the two on held-out rows.

Accepted values per kind:

- image: encoded file bytes (PNG, JPEG, BMP, GIF, TIFF, WebP; decoded with Pillow), a file path,
  or a uint8 array (H, W) / (H, W, C).
- audio: WAV bytes or path (16-bit PCM with the standard library; other encodings with
  ``soundfile`` when installed), or a ``(waveform, sample_rate)`` pair. Another sample rate than
  the model's is resampled band-limited (:func:`~polymodal.utils.signals.resample`: FFT, with the passband edge of the soxr
  resampler training uses; samples differ from training's by about 1e-3 inside the clip, and by up
  to about 2e-2 in its first and last few milliseconds, where the two filters ring differently).
  A video container (bytes or path) gives its sound track, read with PyAV as training reads it.
- text: a string. signal: an array or a list of samples ((C, L); a 1-D one is one channel; laid
  out by ``preprocess.layout`` as a file's array is), or ``.npy``, ``.npz`` or CSV bytes/path (told
  apart by content; a ``.npz`` gives the array training reads: ``preprocess.key``, else its only
  array, else ``data``; a CSV is read as training reads it: :mod:`polymodal.utils.signal_csv`).
  The HTTP service takes ``.npy`` and CSV files only. tabular: a mapping column -> value.
- video: a container's bytes or path (MP4, MOV, WebM, MKV, AVI; decoded with PyAV), a frame folder's
  path, a ``.npy`` clip (bytes or path) or a (T, H, W[, C]) array; sampled and converted by the
  training code (:mod:`polymodal.data.video_io`, which needs numpy, Pillow and PyAV, no torch).
"""

from __future__ import annotations

from polymodal.deploy.features.audio import AUDIO_SIGNATURES, AudioFeatures, audio_seconds, read_wav, stft_power
from polymodal.deploy.features.base import NPY_MAGIC, Features
from polymodal.deploy.features.image import ImageFeatures
from polymodal.deploy.features.signal import SignalFeatures
from polymodal.deploy.features.tabular import TabularFeatures
from polymodal.deploy.features.text import TextFeatures
from polymodal.deploy.features.video import (
    VIDEO_SIGNATURES,
    VideoFeatures,
    has_av,
    is_video,
    require_av,
    video_container,
    video_path,
)

FEATURES: dict[str, type[Features]] = {cls.kind: cls for cls in (ImageFeatures, AudioFeatures, TextFeatures,
                                                                 TabularFeatures, SignalFeatures, VideoFeatures)}

__all__ = ["AUDIO_SIGNATURES", "FEATURES", "NPY_MAGIC", "VIDEO_SIGNATURES", "AudioFeatures", "Features", "ImageFeatures", "SignalFeatures",
           "TabularFeatures", "TextFeatures", "VideoFeatures", "audio_seconds", "has_av", "is_video", "read_wav",
           "require_av", "stft_power", "video_container", "video_path"]
