"""Audio: soundfile decode (WAV, FLAC, OGG...) or ``.npy`` waveforms, mono mix-down, resampling,
trim/pad, and batched features (waveform, log power spectrogram, log-mel, MFCC).

Cached form: ``x`` float32 (T, F) frames x features (``waveform``: (N, 1) samples) and
``length`` int32, the number of frames that hold audio (the rest is padding). Normalisation
(global statistics or per utterance) happens at batch time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from polymodal.config.mel import frame_samples
from polymodal.config.modalities import AudioModality
from polymodal.config.preprocess import AudioAugment, AudioPreprocess
from polymodal.data import spectral as F
from polymodal.data.arrays import load_npy, split_row_ref
from polymodal.data.modalities.base import PREPROCESSORS, ArraySpec, Preprocessor, channel_stats, roll_within
from polymodal.data.video_io import VIDEO_SUFFIXES, read_video_audio
from polymodal.errors import DecodeError, NotFittedError
from polymodal.utils.signals import fit_length
from polymodal.utils.wav import SILENT_NOTE, mono_samples, read_sound

NO_SAMPLES = "audio file holds no samples"


class DecodedClip(NamedTuple):
    """One decoded clip: what :meth:`AudioPreprocessor.featurize` reads (``wave`` (N,) at the model's
    rate, cut or zero-padded to N samples, and ``valid``, the samples of it that hold audio), and
    what :meth:`AudioPreprocessor.notes` says of it (``held``: the samples it had at the model's rate
    before it was cut or padded; ``silent``: one value throughout, as read)."""

    wave: np.ndarray
    valid: int
    held: int
    silent: bool


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """Read a file as a mono float32 waveform and its sample rate (``.npy``: rate 0 = unknown).

    Raises:
        DecodeError: unreadable, corrupt or truncated file, no samples, or a ``.npy`` array that
            is not numeric 1-D samples or 2-D samples x channels.
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix in VIDEO_SUFFIXES:  # the audio track of a video file (PyAV)
        return read_video_audio(path)
    if suffix == ".npy" or split_row_ref(path)[1] is not None:
        return _npy_wave(path), 0
    try:
        wave, rate = read_sound(path)  # as the runtime reads audio and signal files
    except OSError as err:
        raise DecodeError(f"unreadable audio ({err})", path=path) from None
    if wave.size == 0:
        raise DecodeError(NO_SAMPLES, path=path)
    return wave, rate


def _npy_wave(path: str) -> np.ndarray:
    """The mono waveform of a ``.npy`` cell: (samples,), or (samples, channels) / (channels,
    samples) mixed down over the short axis."""
    wave = load_npy(path)
    if wave.dtype.kind not in "iuf":
        raise DecodeError(f"expected a numeric (integer or float) array of audio samples, got dtype {wave.dtype}",
                          path=path)
    if wave.ndim not in (1, 2):
        raise DecodeError(f"expected 1-D samples or a 2-D (samples, channels) array, got shape {wave.shape}",
                          path=path)
    if wave.size == 0:
        raise DecodeError(NO_SAMPLES, path=path)
    return mono_samples(wave)  # integer PCM scaled as a WAV file of it reads


def _band_masks(count: int, width: int, size: int, limit: torch.Tensor) -> torch.Tensor:
    """(B, size) True inside ``count`` random bands of at most ``width`` steps, each starting
    before that sample's ``limit``."""
    batch = limit.shape[0]
    steps = torch.arange(size)
    masked = torch.zeros(batch, size, dtype=torch.bool)
    for _ in range(count):
        widths = torch.randint(0, width + 1, (batch, 1))
        starts = (torch.rand(batch, 1) * (limit.unsqueeze(1) - widths).clamp_min(1)).long()
        masked |= (steps >= starts) & (steps < starts + widths)
    return masked


def stretch_axes(x: torch.Tensor, time: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
    """(B, T, F) features stretched per sample by ``time`` (B,) along frames and ``freq`` (B,)
    along bins, both anchored at index 0 (bilinear; what moves past the end is cut, what is
    uncovered is zero)."""
    batch, frames, bins = x.shape
    t = torch.linspace(-1.0, 1.0, frames)
    f = torch.linspace(-1.0, 1.0, bins)
    src_t = (t[None, :] + 1.0) / time[:, None] - 1.0  # (B, T): where each output frame reads from
    src_f = (f[None, :] + 1.0) / freq[:, None] - 1.0  # (B, F)
    grid = torch.stack(torch.broadcast_tensors(src_f[:, None, :], src_t[:, :, None]), dim=-1)  # (B, T, F, 2)
    out = torch.nn.functional.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=True)
    return out.squeeze(1)


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, cfg: AudioAugment, *, step: int = 1,
                 frequency: bool = True) -> torch.Tensor:
    """Time and frequency stretching, masking and an optional roll of (B, T, F) features, per sample.

    Args:
        x: (B, T, F) features, T frames (or samples) of F bins each.
        lengths: (B,) steps of each clip that hold audio.
        step: steps of ``x`` per frame of ``cfg`` (``time_width`` and ``shift`` count frames): 1 on
            frames, the hop in samples on a waveform, so a mask spans the same time either way.
        frequency: whether the last axis is frequency; False on a waveform (one "bin", the sample
            value), where frequency masks and ``warp`` do not apply.
    """
    batch, frames, bins = x.shape
    warp = cfg.warp if frequency else 0.0
    if warp or cfg.stretch:
        def factors(limit: float) -> torch.Tensor:
            return 1.0 + (torch.rand(batch) * 2.0 - 1.0) * limit

        x = stretch_axes(x, factors(cfg.stretch), factors(warp))
    if cfg.shift:  # rolled within each clip's frames: its padding stays padding
        shift = cfg.shift * step
        x = roll_within(x, torch.randint(-shift, shift + 1, (batch,)), lengths, dim=1)
    masked = _band_masks(cfg.time_masks, cfg.time_width * step, frames, lengths).unsqueeze(-1)  # (B, T, 1)
    if frequency:
        masked = masked | _band_masks(cfg.freq_masks, cfg.freq_width, bins, torch.full((batch,), bins)).unsqueeze(1)
    return x.masked_fill(masked, 0.0)


@PREPROCESSORS.register(AudioModality)
class AudioPreprocessor(Preprocessor):
    """See the module docstring."""

    kind = "audio"
    featurize_version = 3  # 2: integer .npy samples scaled onto [-1, 1) as WAV files are; 3: a video's sound track
    # aligned to its first frame (the streams' start times; cached before unaligned)
    batch_time_fields = frozenset({"normalize", "augment"})

    def __init__(self, name: str, cfg: AudioPreprocess):
        super().__init__(name)
        self.cfg = cfg
        self.n_samples = round(cfg.max_seconds * cfg.sample_rate)
        self.n_fft = frame_samples(cfg.frame_ms, cfg.sample_rate)  # as the config's mel checks count them
        self.hop = frame_samples(cfg.hop_ms, cfg.sample_rate)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @classmethod
    def from_config(cls, cfg: AudioModality, *, name: str) -> AudioPreprocessor:
        return cls(name, cfg.preprocess)

    @property
    def n_features(self) -> int:
        return {"waveform": 1, "spectrogram": self.n_fft // 2 + 1, "log_mel": self.cfg.n_mels,
                "mfcc": self.cfg.n_mfcc}[self.cfg.features]

    @property
    def n_frames(self) -> int:
        return self.n_samples if self.cfg.features == "waveform" else F.frames(self.n_samples, self.hop, self.n_fft)

    def decode(self, value: Any) -> DecodedClip:
        path = str(value)
        wave, rate = read_audio(path)
        silent = wave.size > 1 and bool(np.ptp(wave) == 0)  # before resampling, as the runtime judges it
        if rate and rate != self.cfg.sample_rate:
            import librosa

            wave = librosa.resample(wave, orig_sr=rate, target_sr=self.cfg.sample_rate, res_type="soxr_hq")
        if not np.isfinite(wave).all():
            raise DecodeError("audio holds NaN or infinite samples", path=path)
        valid = min(len(wave), self.n_samples)
        return DecodedClip(fit_length(wave.astype(np.float32, copy=False), self.n_samples, self.cfg.crop), valid,
                           len(wave), silent)

    def notes(self, sample: DecodedClip) -> list[str]:
        """That a clip was cut to ``max_seconds``, is silent, or (spectral features) is shorter
        than one frame, in words shared by every such clip (encoding warns once per modality and
        manifest, counting and naming the rows; the runtime's ``AudioFeatures.notes`` says it per request)."""
        cfg, notes = self.cfg, []
        if sample.held > self.n_samples + self.hop:  # less than a hop over: resampling's rounding (a sample past 0.5 s at 22,050 Hz)
            part = "first" if cfg.crop == "start" else "central"
            notes.append(f"longer than max_seconds ({cfg.max_seconds:g} s): cut to its {part} {cfg.max_seconds:g} s")
        if sample.silent:
            notes.append(SILENT_NOTE)
        elif cfg.features != "waveform" and sample.held < self.n_fft:
            notes.append(f"shorter than one frame (frame_ms {cfg.frame_ms:g}: {self.n_fft} samples): its features are "
                         "mostly the zero padding around it")
        return notes

    def featurize(self, samples: Sequence[DecodedClip]) -> dict[str, np.ndarray]:
        waves = torch.from_numpy(np.stack([s[0] for s in samples]))  # (B, N)
        valid = np.asarray([s[1] for s in samples], np.int64)
        cfg = self.cfg
        if cfg.features == "waveform":
            return {"x": waves.unsqueeze(-1).numpy(), "length": valid.astype(np.int32)}
        if cfg.features == "spectrogram":
            feats = F.power_to_db(F.stft_power(waves, self.n_fft, self.hop), cfg.top_db)
        elif cfg.features == "log_mel":
            feats = F.log_mel(waves, cfg.sample_rate, self.n_fft, self.hop, cfg.n_mels, cfg.fmin, cfg.fmax, cfg.top_db)
        elif cfg.features == "mfcc":
            feats = F.mfcc(waves, cfg.sample_rate, self.n_fft, self.hop, cfg.n_mels, cfg.n_mfcc, cfg.fmin, cfg.fmax,
                           cfg.top_db)
        else:
            raise ValueError(f"audio features '{cfg.features}' have no implementation in AudioPreprocessor.featurize")
        lengths = np.minimum(1 + valid // self.hop, self.n_frames).astype(np.int32)
        return {"x": feats.numpy().astype(np.float32, copy=False), "length": lengths}

    def spec(self) -> dict[str, ArraySpec]:
        return {"x": ArraySpec((self.n_frames, self.n_features), "float32"), "length": ArraySpec((), "int32")}

    def fit_features(self, arrays: Mapping[str, np.ndarray]) -> None:
        if self.cfg.normalize == "global":
            self.mean, self.std = channel_stats(arrays["x"], axis=2, valid=arrays["length"], time_axis=1)

    def to_batch(self, arrays: Mapping[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        x = arrays["x"].float()  # (B, T, F)
        lengths = arrays["length"].long().clamp_min(1)
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]  # (B, T)
        if self.cfg.normalize == "global":
            if self.mean is None:
                raise NotFittedError(f"audio modality '{self.name}': global normalisation used before fit")
            x = (x - torch.as_tensor(self.mean)).div_(torch.as_tensor(self.std))
        elif self.cfg.normalize == "utterance":
            weights = mask.unsqueeze(-1).float()
            count = weights.sum(dim=1, keepdim=True)
            mean = (x * weights).sum(dim=1, keepdim=True) / count
            var = ((x - mean).pow(2) * weights).sum(dim=1, keepdim=True) / count
            x = (x - mean) / var.sqrt().clamp_min(1e-5)
        if train and self.cfg.augment is not None:  # padding zeroed first: stretching reads zeros past a clip
            waveform = self.cfg.features == "waveform"  # masks span time_width frames of hop samples each
            x = spec_augment(x * mask.unsqueeze(-1), lengths, self.cfg.augment, step=self.hop if waveform else 1,
                             frequency=not waveform)
        return {"x": x * mask.unsqueeze(-1), "mask": mask}

    def encoder_context(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "n_frames": self.n_frames}

    def get_state(self) -> dict[str, Any]:
        return {} if self.mean is None else {"mean": self.mean, "std": self.std}

    def runtime_settings(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The base's, plus the mel filter bank (and DCT) the features use, computed here once."""
        settings, state = super().runtime_settings()
        cfg = self.cfg
        if cfg.features in ("log_mel", "mfcc"):
            state["mel_bank"] = F.mel_filterbank(cfg.sample_rate, self.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax).numpy().tolist()
        if cfg.features == "mfcc":
            state["dct"] = F.dct_matrix(cfg.n_mels, cfg.n_mfcc).numpy().tolist()
        return settings, state

    def set_state(self, state: Mapping[str, Any]) -> None:
        if "mean" in state:
            self.mean = np.asarray(state["mean"], np.float32)
            self.std = np.asarray(state["std"], np.float32)
