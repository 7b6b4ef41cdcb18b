"""1-D signals (vibration, ECG, sensor channels): ``.npy``, ``.npz`` (a named array), ``.csv``,
``.mat`` (scipy) or audio-format files (``.wav``, ``.flac``, ``.ogg``: every channel kept, no mix-down);
channel selection, resampling, fixed-length crop/pad, an optional per-channel spectrogram,
standardisation with training statistics.

Cached form: ``x`` float32 (C, L) (with a spectrogram: (C * F, T)) and ``length`` int32, the
number of valid time steps. A 2-D array in a file is read as (samples, channels) when it has
more rows than columns, else as (channels, samples) (``preprocess.layout``).

An audio-format file declares its sample rate, and one recorded at another rate than the modality
reads (``preprocess.sample_rate``, else the rate of the first training file) is refused rather
than read as if it were at that rate; arrays and CSV files declare none.

:func:`cut_windows` cuts long recordings into (optionally overlapping) windows and writes a
manifest of the segments.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from polymodal.config.modalities import SignalModality
from polymodal.config.preprocess import SignalPreprocess
from polymodal.data import spectral as F
from polymodal.data.arrays import load_npy, split_row_ref
from polymodal.data.modalities.base import PREPROCESSORS, ArraySpec, Preprocessor, channel_stats
from polymodal.errors import DecodeError, NotFittedError
from polymodal.utils.signal_csv import SignalCSV, non_finite_reason, pick_channels, read_csv_signal
from polymodal.utils.signals import (
    channels_first,
    fit_length,
    flat_channels,
    flat_note,
    length_note,
    rate_mismatch,
    spectrogram_db,
    window_starts,
)
from polymodal.utils.warn import warn_user
from polymodal.utils.wav import read_sound

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")  # files that declare their sample rate
SIGNAL_EXTENSIONS = (".npy", ".npz", ".csv", ".mat", *AUDIO_EXTENSIONS)


def _pick_array(arrays: Mapping[str, Any], key: str | None, path: str) -> np.ndarray:
    names = [k for k in arrays if not k.startswith("__")]
    if key is not None:
        if key not in arrays:
            raise DecodeError(f"no array named '{key}' (preprocess.key); the file holds {names}", path=path)
        return np.asarray(arrays[key])
    if len(names) == 1:
        return np.asarray(arrays[names[0]])
    if "data" in names:
        return np.asarray(arrays["data"])
    raise DecodeError(f"the file holds several arrays {names}; choose one with preprocess.key", path=path)


def _read_csv(path: str, columns: list[str] | None = None) -> SignalCSV:
    """A signal CSV file read as the runtime reads one (:mod:`polymodal.utils.signal_csv`)."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return read_csv_signal(data, columns)
    except DecodeError as err:
        raise DecodeError(err.reason, path=path) from None


def read_signal(path: str, key: str | None = None, columns: list[str] | None = None,
                layout: str = "auto") -> np.ndarray:
    """Read a recording as a float32 (channels, samples) array.

    Args:
        key: the array's name inside a ``.npz`` / ``.mat`` file.
        columns: the CSV columns to keep (a CSV's columns are its channels).
        layout: how a 2-D ``.npy`` / ``.npz`` / ``.mat`` array is laid out (:func:`channels_first`).

    Raises:
        DecodeError: an unreadable, corrupt or truncated file, or one that holds no numeric samples.
    """
    return read_signal_rate(path, key, columns, layout)[0]


def read_signal_rate(path: str, key: str | None = None, columns: list[str] | None = None,
                     layout: str = "auto") -> tuple[np.ndarray, int | None]:
    """:func:`read_signal`, and the sample rate an audio-format file's header declares (None for
    the other files, which declare none)."""
    suffix = os.path.splitext(path)[1].lower()
    if split_row_ref(path)[1] is not None:
        suffix = ".npy"
    if columns is not None and suffix != ".csv":
        raise DecodeError(f"preprocess.channels names columns {columns}, which only a .csv file has; give "
                          f"channel indices for {suffix} files", path=path)
    try:
        if suffix == ".npy":
            array = load_npy(path)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                array = _pick_array(archive, key, path)
        elif suffix == ".mat":
            from scipy.io import loadmat

            array = _pick_array(loadmat(path), key, path)
            if array.ndim == 2 and 1 in array.shape:  # MATLAB has no 1-D arrays: a row or column vector is one
                array = array.reshape(-1)
        elif suffix == ".csv":
            return _read_csv(path, columns).samples, None
        elif suffix in AUDIO_EXTENSIONS:  # the runtime reads them with the same function: the same samples
            samples, rate = read_sound(path, mono=False)  # (C, N)
            if samples.size == 0:
                raise DecodeError(f"the signal holds no samples (an audio file of {samples.shape[0]} channel(s) "
                                  "and no frames)", path=path)
            return samples, rate
        else:
            raise DecodeError(f"unsupported signal file type '{suffix}'; use one of {SIGNAL_EXTENSIONS}", path=path)
    except DecodeError:
        raise
    except NotImplementedError as err:  # scipy: a MATLAB v7.3 (HDF5) file
        raise DecodeError(f"unsupported .mat file ({err}); save it with MATLAB's -v7 option", path=path) from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # the last two: a damaged .npz
        raise DecodeError(f"unreadable or corrupt signal ({err})", path=path) from None
    array = np.asarray(array)
    if array.dtype.kind not in "iufb":
        raise DecodeError(f"expected numeric samples; the array's dtype is {array.dtype}", path=path)
    array = array.astype(np.float32)
    if array.size == 0:
        raise DecodeError(f"the signal holds no samples (shape {array.shape})", path=path)
    if array.ndim not in (1, 2):
        raise DecodeError(f"expected a 1-D or 2-D array; got shape {array.shape}", path=path)
    return np.ascontiguousarray(channels_first(array, layout)), None


class SignalWindow(NamedTuple):
    """One decoded signal: what :meth:`SignalPreprocessor.featurize` reads (``window`` (C, length)
    float32, cropped or zero-padded, and ``valid``, its samples that hold the signal) and what
    :meth:`SignalPreprocessor.notes` says of it (``held``: the samples it had before, after any
    resampling), as an audio clip's :class:`~polymodal.data.modalities.audio.DecodedClip`."""

    window: np.ndarray
    valid: int
    held: int


@PREPROCESSORS.register(SignalModality)
class SignalPreprocessor(Preprocessor):
    """See the module docstring."""

    kind = "signal"
    featurize_version = 6  # 2: empty or non-numeric arrays and misapplied channel names are refused; 3: headerless CSVs;
    # 4: a CSV's first row that mixes numbers and text is a sample (with a bad value), not a header;
    # 5: CSVs read by utils.signal_csv (shared with the runtime): a header-only CSV, a row longer than the
    # header (pandas took its first field as a row label) and True/False cells are refused;
    # 6: WAV/FLAC files read by utils.wav.read_sound (shared with the runtime): corrupt, truncated or empty ones
    # and those at another rate than the modality reads are refused; ';'- and tab-separated CSVs are read
    batch_time_fields = frozenset({"normalize", "augment"})

    def __init__(self, name: str, cfg: SignalPreprocess):
        super().__init__(name)
        self.cfg = cfg
        self.n_channels: int | None = None
        self.file_rate: int | None = None  # the header rate of the first training file (None: it declared none)
        self.rate_recorded = True  # False: a run saved before file_rate was, whose files decode reads unchecked
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    @classmethod
    def from_config(cls, cfg: SignalModality, *, name: str) -> SignalPreprocessor:
        return cls(name, cfg.preprocess)

    def fit(self, values: Sequence[Any]) -> None:
        """Learn the channel count, and the sample rate its header declares (an audio-format file),
        from the first readable training file (unreadable ones are reported, with their rows, when
        the manifest is encoded)."""
        errors = []
        for value in values:
            try:
                array, rate = self._read(str(value))
            except DecodeError as err:
                errors.append(err)
                continue
            self.n_channels = array.shape[0]
            self.file_rate = rate
            self._check_default_length(array.shape[-1], str(value))
            return
        raise DecodeError(f"none of the {len(values)} training files could be read; first error: {errors[0].reason}",
                          path=errors[0].path, modality=self.name)

    def _check_default_length(self, samples: int, path: str) -> None:
        """Warn when ``preprocess.length`` was left at its default and the first training file
        (resampled) is not that long: every such file would be cropped, or zero-padded, unasked."""
        cfg = self.cfg
        if "length" in cfg.model_fields_set:
            return
        if cfg.resample_to is not None and cfg.sample_rate is not None:
            samples = math.ceil(samples * cfg.resample_to / cfg.sample_rate)
        if samples != cfg.length:
            done = (f"cropped to their {'first' if cfg.crop == 'start' else 'central'} {cfg.length:,} samples "
                    f"(preprocess.crop: {cfg.crop})") if samples > cfg.length else "zero-padded (and masked)"
            warn_user(f"signal modality '{self.name}': preprocess.length is not set, so the default {cfg.length:,} "
                      f"applies, but the first training file ({path}) holds {samples:,} samples: files of its length "
                      f"are {done}; set preprocess.length ({samples:,} keeps it whole)")

    def _read(self, path: str) -> tuple[np.ndarray, int | None]:
        """The file's (C, N) samples, its channels chosen, and the rate its header declares (or None)."""
        cfg = self.cfg
        names = cfg.channels if cfg.channels and isinstance(cfg.channels[0], str) else None
        array, rate = read_signal_rate(path, cfg.key, names, cfg.layout)
        if cfg.channels is not None and names is None:
            try:
                array = pick_channels(array, cfg.channels)
            except DecodeError as err:
                raise DecodeError(err.reason, path=path) from None
        return array, rate

    def decode(self, value: Any) -> SignalWindow:
        """One file -> its window cropped or padded to ``length`` (after resampling), the count of
        its valid samples and of those it held (:class:`SignalWindow`)."""
        path = str(value)
        array, rate = self._read(path)
        mismatch = None if rate is None else rate_mismatch(rate, self.cfg.sample_rate, self.file_rate,
                                                           self.rate_recorded)
        if mismatch is not None:
            raise DecodeError(mismatch, path=path)
        if self.n_channels is not None and array.shape[0] != self.n_channels:
            raise DecodeError(f"expected {self.n_channels} channel(s) as in training; got {array.shape[0]}", path=path)
        cfg = self.cfg
        if not np.isfinite(array).all():
            raise DecodeError(self._non_finite(array, path, cfg.channels), path=path)
        if cfg.resample_to is not None and cfg.resample_to != cfg.sample_rate:
            from fractions import Fraction

            from scipy.signal import resample_poly

            ratio = Fraction(cfg.resample_to / cfg.sample_rate).limit_denominator(1000)
            array = resample_poly(array, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)
        if not np.isfinite(array).all():  # resampled values past float32's range
            raise DecodeError("the resampled signal holds values past float32's range", path=path)
        valid = min(array.shape[-1], cfg.length)
        return SignalWindow(fit_length(array, cfg.length, cfg.crop), valid, array.shape[-1])

    def notes(self, sample: SignalWindow) -> list[str]:
        """That a decoded signal was cropped or zero-padded to ``length``, and the channels of its
        window that hold one value throughout its valid samples (a disconnected or stuck sensor,
        which a model trained on live signals may read as ordinary), in the words of the runtime's
        notes (:func:`~polymodal.utils.signals.length_note`, :func:`~polymodal.utils.signals.flat_channels`)."""
        notes = [flat_note(sample.window, c) for c in flat_channels(sample.window, sample.valid)]
        said = length_note(sample.held, self.cfg.length, self.cfg.crop, exact=False)
        return notes if said is None else [said, *notes]

    @staticmethod
    def _non_finite(array: np.ndarray, path: str, channels: list[int] | list[str] | None = None) -> str:
        """The message for a (C, L) signal, as read from ``path`` (with ``preprocess.channels``), that
        holds NaN or an infinity: where the first is (the earliest sample, the lowest channel among
        ties; for a CSV file also its line)."""
        lines = None
        if os.path.splitext(path)[1].lower() == ".csv":  # a CSV's samples are its data rows
            names = channels if channels and isinstance(channels[0], str) else None
            lines = _read_csv(path, names).lines
        return non_finite_reason(array, lines)

    @property
    def _spectral(self) -> tuple[int, int] | None:
        spec = self.cfg.spectrogram
        return None if spec is None else (spec.n_fft, spec.hop)

    def featurize(self, samples: Sequence[tuple[np.ndarray, int]]) -> dict[str, np.ndarray]:
        x = np.stack([s[0] for s in samples])  # (B, C, L)
        valid = np.asarray([s[1] for s in samples], np.int64)
        if self._spectral is None:
            return {"x": x, "length": valid.astype(np.int32)}
        n_fft, hop = self._spectral
        b, c, n = x.shape
        wave = torch.from_numpy(x.reshape(b * c, n))
        # log1p: float32, as the runs trained with it were featurised. db: float64 power, as the runtime
        # computes it: float32 rounding noise (about 1e-7 of a frame's peak) in a quiet bin reads tens
        # of dB above the floor, and would differ between the two
        if self.cfg.spectrogram.scale == "log1p":
            power = F.stft_power(wave, n_fft, hop)  # (B*C, T, F)
            scaled = torch.log1p(power).numpy()
        else:
            power = F.stft_power(wave.double(), n_fft, hop)
            scaled = spectrogram_db(power.numpy())
        spec = scaled.reshape(b, c, power.shape[1], power.shape[2]).transpose(0, 1, 3, 2)
        lengths = np.minimum(1 + valid // hop, power.shape[1]).astype(np.int32)
        return {"x": np.ascontiguousarray(spec.reshape(b, -1, power.shape[1]), np.float32), "length": lengths}

    def spec(self) -> dict[str, ArraySpec]:
        return {"x": ArraySpec(self.shape, "float32"), "length": ArraySpec((), "int32")}

    @property
    def shape(self) -> tuple[int, int]:
        """(channels, steps) of one featurised sample."""
        if self.n_channels is None:
            raise NotFittedError(f"signal modality '{self.name}' is not fitted")
        if self._spectral is None:
            return (self.n_channels, self.cfg.length)
        n_fft, hop = self._spectral
        return (self.n_channels * (n_fft // 2 + 1), F.frames(self.cfg.length, hop, n_fft))

    def fit_features(self, arrays: Mapping[str, np.ndarray]) -> None:
        if self.cfg.normalize == "global":
            self.mean, self.std = channel_stats(arrays["x"], axis=1, valid=arrays["length"], time_axis=2)

    def to_batch(self, arrays: Mapping[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        x = arrays["x"].float()  # (B, C, L)
        lengths = arrays["length"].long().clamp_min(1)
        mask = torch.arange(x.shape[-1])[None, :] < lengths[:, None]  # (B, L)
        if self.cfg.normalize == "global":
            if self.mean is None:
                raise NotFittedError(f"signal modality '{self.name}': global normalisation used before fit")
            x = (x - torch.as_tensor(self.mean)[None, :, None]) / torch.as_tensor(self.std)[None, :, None]
        elif self.cfg.normalize == "sample":
            weights = mask.unsqueeze(1).float()
            count = weights.sum(dim=-1, keepdim=True)
            mean = (x * weights).sum(dim=-1, keepdim=True) / count
            var = ((x - mean).pow(2) * weights).sum(dim=-1, keepdim=True) / count
            x = (x - mean) / var.sqrt().clamp_min(1e-6)
        augment = self.cfg.augment
        if train and augment is not None:
            from polymodal.data.strong import perturb_signal  # it imports this package: not at the top

            x = perturb_signal({"x": x * mask.unsqueeze(1), "mask": mask}, gain=augment.gain, noise=augment.noise,
                               shift=augment.shift, erase=augment.erase)["x"]
        return {"x": x * mask.unsqueeze(1), "mask": mask}

    def encoder_context(self) -> dict[str, Any]:
        channels, steps = self.shape
        return {"in_channels": channels, "length": steps}

    def get_state(self) -> dict[str, Any]:
        # file_rate always (null: the training files declared none), so that a run saved before it was
        # recorded is told apart (rate_recorded)
        state: dict[str, Any] = {"n_channels": self.n_channels, "file_rate": self.file_rate}
        if self.mean is not None:
            state.update(mean=self.mean, std=self.std)
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.n_channels = state.get("n_channels")
        self.file_rate = state.get("file_rate")
        self.rate_recorded = "file_rate" in state  # absent from runs saved before it was recorded: no check
        if "mean" in state:
            self.mean = np.asarray(state["mean"], np.float32)
            self.std = np.asarray(state["std"], np.float32)

    def encoding_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"n_channels": self.n_channels}
        if self.file_rate is not None:  # which files decode refuses
            state["file_rate"] = self.file_rate
        if not self.rate_recorded:  # a run that reads every file unchecked shares no cached features with one that checks
            state["rate_recorded"] = False
        return state


def cut_windows(
    recordings: pd.DataFrame,
    out_dir: str | Path,
    *,
    path_column: str = "path",
    window: int,
    hop: int | None = None,
    key: str | None = None,
    keys: Sequence[str] | None = None,
    max_windows: int | None = None,
    layout: str = "auto",
) -> pd.DataFrame:
    """Cut long recordings into fixed windows saved as (channels, window) ``.npy`` files; return a
    manifest (read them with ``layout: channels_first`` when a window is shorter than its channel count).

    Args:
        recordings: one row per recording; every other column is copied to each window's row.
        window: samples per window.
        hop: step between window starts (default ``window``: no overlap; smaller overlaps).
        key: array name inside ``.npz``/``.mat`` files.
        keys: several array names, each written as its own window file and column
            (``<key>_path``), e.g. the drive-end and fan-end channels of one recording.
        max_windows: keep at most this many windows per recording (evenly spaced).
        layout: how the recordings' 2-D arrays are laid out (:func:`read_signal`).

    Returns:
        The segments manifest: copied columns, ``recording``, ``start`` and the window path column(s)
        (relative to ``out_dir``). A recording shorter than ``window`` gives no window, and is
        warned about.

    Raises:
        ValueError: ``path_column`` is not a column of ``recordings``, or no recording is as long
            as ``window``.
        DecodeError: a recording cannot be read.
    """
    if path_column not in recordings.columns:
        raise ValueError(f"cut_windows: path_column='{path_column}' names no column of the recordings; they have "
                         f"{[str(c) for c in recordings.columns]}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hop = window if hop is None else hop
    names = list(keys) if keys is not None else [key]
    rows = []
    short: list[tuple[str, int]] = []  # (recording, samples) of those shorter than a window
    for index, rec in enumerate(recordings.to_dict("records")):
        source = str(rec[path_column])
        try:
            arrays = {name: read_signal(source, name, layout=layout) for name in names}
        except DecodeError as err:  # the array is chosen by this function's key=, not preprocess.key
            raise DecodeError(err.reason.replace("preprocess.key", "key= (or keys=)"), path=err.path) from None
        length = min(a.shape[-1] for a in arrays.values())
        starts = window_starts(length, window, hop, max_windows)
        if len(starts) == 0:
            short.append((source, length))
        stem = Path(source).stem
        for start in starts:
            row = {k: v for k, v in rec.items() if k != path_column}
            row.update(recording=stem, start=int(start))
            for name, array in arrays.items():
                rel = f"{stem}_{index}_{name or 'x'}_{start}.npy"
                np.save(out / rel, array[:, start:start + window])
                row[f"{name}_path" if keys is not None else "path"] = rel
            rows.append(row)
    if short:
        listed = ", ".join(f"{source} ({samples:,} samples)" for source, samples in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        if not rows:
            raise ValueError(f"cut_windows: no recording is as long as window={window:,} samples, so there is no "
                             f"window to cut: {listed}{more}; give a smaller window")
        warn_user(f"cut_windows: {len(short)} of {len(recordings)} recording(s) are shorter than window={window:,} "
                  f"samples and give no window: {listed}{more}")
    return pd.DataFrame(rows)
