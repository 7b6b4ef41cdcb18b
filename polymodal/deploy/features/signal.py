"""Signals in the runtime: ``.npy`` arrays, ``.npz`` archives, CSV files and audio-format files (WAV
with the standard library, FLAC or OGG with ``soundfile`` when installed; every channel kept) read
as training reads them, arrays and lists of samples given inline, cut or padded, optionally a log
spectrogram (``scale`` ``db`` or ``log1p``, as in training)."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from polymodal.deploy.errors import content_start
from polymodal.deploy.features.audio import audio_format, stft_power
from polymodal.deploy.features.base import NPY_MAGIC, Features
from polymodal.errors import DecodeError
from polymodal.utils.npy import npy_from_bytes, read_npy
from polymodal.utils.signal_csv import is_csv_text, non_finite_reason, pick_channels, read_csv_signal
from polymodal.utils.signals import (
    channels_first,
    fit_length,
    flat_channels,
    flat_note,
    length_note,
    rate_mismatch,
    spectrogram_db,
)
from polymodal.utils.wav import read_sound

ZIP_MAGIC = b"PK\x03\x04"  # a .npz is a ZIP archive of .npy files
ACCEPTED = ("an array or a list of samples ((C, L), (L, C) or (L,)), or the bytes or path of a .npy array, a .npz "
            "archive, a CSV file or an audio file (WAV, FLAC, OGG)")
# file names whose content must be of that type, as training reads a file by its name
MAGIC_BY_SUFFIX = {".npy": (NPY_MAGIC, ".npy array"), ".npz": (ZIP_MAGIC, ".npz archive (a ZIP archive)"),
                   ".wav": (b"RIFF", "WAV file"), ".flac": (b"fLaC", "FLAC file"), ".ogg": (b"OggS", "OGG file")}


class SignalFeatures(Features):
    """A signal as training reads one: a ``.npy`` array or a ``.npz`` archive's array (chosen as
    training chooses it: ``preprocess.key``, else its only array, else the one named ``data``), laid
    out by ``preprocess.layout``, a CSV file (one column per channel; read by
    :mod:`polymodal.utils.signal_csv`, as in training) or an audio-format file (WAV, FLAC, OGG: one
    channel per audio channel, read by :func:`~polymodal.utils.wav.read_sound`, as in training, and
    refused when its header declares another rate than the modality reads), told apart by their
    content (a path named ``.npy``, ``.npz``, ``.wav``, ``.flac`` or ``.ogg`` must hold one, as training reads
    it by its name); an array or a list of samples given inline is laid out as a file's array is.
    Then ``preprocess.channels``, crop or pad to ``length``."""

    kind = "signal"

    def decode(self, value: Any) -> tuple[np.ndarray, int, int]:
        """(channels, length) samples, the valid count and the count the signal held."""
        channels = self.cfg.get("channels")
        names = channels if channels and isinstance(channels[0], str) else None
        lines = sound = None  # a CSV's lines; an audio file's format
        if isinstance(value, list | tuple):  # inline samples: one list, or one per channel
            value = self._inline(value)
        if isinstance(value, np.ndarray):
            array, source = value, ""
        elif not isinstance(value, str | os.PathLike | bytes | bytearray | memoryview):
            raise self.fail(f"expected {ACCEPTED}; got a {type(value).__name__}")
        else:
            source = "" if isinstance(value, bytes | bytearray | memoryview) else f" (file {value})"
            data = self.file_bytes(value)
            if source:
                self._check_named_type(data, str(value), source)
            sound = audio_format(data)
            if sound is not None:
                array = self._sound(data, sound, source)
            elif data.startswith(NPY_MAGIC):
                try:
                    array = npy_from_bytes(data)
                except (ValueError, OSError, EOFError) as err:
                    raise self.fail(f"not a readable .npy array ({err}){source}", "corrupt_file") from None
            elif data.startswith(ZIP_MAGIC):
                array = self._npz_array(data, source)
            elif is_csv_text(data):
                try:
                    table = read_csv_signal(data, names)
                except DecodeError as err:
                    raise self.fail(f"{err.reason}{source}", "corrupt_file") from None
                array, lines = table.samples, table.lines
            else:
                raise self.fail(f"neither a .npy array, a .npz archive, a CSV file (UTF-8 text) nor an audio file "
                                f"(WAV, FLAC, OGG){source}; got {len(data):,} bytes starting with "
                                f"{content_start(data)}", "unsupported_type", 415)
        if sound is not None:  # an audio file's channels are its channels, whatever the layout
            if names is not None:
                raise self.fail(f"preprocess.channels names columns {names}, which only a CSV file has; got a "
                                f"{sound} file{source}")
        elif lines is None:  # an array: its layout as in training (a CSV's columns are always its channels)
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "iufb":  # as training reads one
                raise self.fail(f"expected a real-valued numeric .npy array; got dtype "
                                f"{getattr(array, 'dtype', type(array).__name__)}{source}")
            if names is not None:
                raise self.fail(f"preprocess.channels names columns {names}, which only a CSV file has; got an "
                                f"array{source}")
            sent = array.shape
            array = channels_first(np.asarray(array, np.float32), self.cfg.get("layout", "auto"))
        if array.size == 0:
            raise self.fail(f"the signal holds no samples (shape {array.shape}){source}")
        if channels is not None and names is None and array.ndim == 2:
            try:
                array = pick_channels(array, channels)
            except DecodeError as err:
                raise self.fail(f"{err.reason}{source}") from None
        expected = int(self.state["n_channels"])
        if array.ndim != 2 or array.shape[0] != expected:
            got = (f"a CSV file of {array.shape[0]} channel column(s)" if lines is not None
                   else f"a {sound} file of {array.shape[0]} channel(s)" if sound is not None
                   else f"an array of shape {sent}" + self._read_as(sent, array.shape))
            raise self.fail(f"expected {expected} channel(s) as in training; got {got}{source}")
        if not np.isfinite(array).all():
            raise self.fail(f"{non_finite_reason(array, lines)}{source}")
        length = int(self.cfg["length"])
        return fit_length(array, length, self.cfg["crop"]), min(array.shape[-1], length), array.shape[-1]

    def _check_named_type(self, data: bytes, path: str, source: str) -> None:
        """Refuse a file named ``.npy``, ``.npz``, ``.wav``, ``.flac`` or ``.ogg`` whose content is not of that
        type, as training refuses it (it reads a file by its name), rather than read it as another
        type (text in a ``.npy`` file was said to be a CSV with a header row and no rows)."""
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in MAGIC_BY_SUFFIX:
            return
        magic, kind = MAGIC_BY_SUFFIX[suffix]
        if not data.startswith(magic):
            raise self.fail(f"not a {kind}{source}: a {suffix} file starts with the bytes {magic!r}; got "
                            f"{len(data):,} bytes starting with {content_start(data)}", "corrupt_file")

    def _sound(self, data: bytes, sound: str, source: str) -> np.ndarray:
        """The (channels, N) samples of audio-format file content, read as training reads them
        (:func:`~polymodal.utils.wav.read_sound`), refused when corrupt or truncated, or when its
        header declares another rate than the modality reads (:func:`~polymodal.utils.signals.rate_mismatch`)."""
        try:
            samples, rate = read_sound(io.BytesIO(data), mono=False)
        except DecodeError as err:
            raise self.fail(f"{err.reason}{source}", "corrupt_file") from None
        if samples.size == 0:  # refused as every empty signal is
            return samples
        mismatch = rate_mismatch(rate, self.cfg.get("sample_rate"), self.state.get("file_rate"), "file_rate" in self.state)
        if mismatch is not None:
            raise self.fail(f"{mismatch}{source}", "bad_input")
        return samples

    def _inline(self, value: list | tuple) -> np.ndarray:
        """Samples given as a list (or a list per channel) as an array."""
        try:
            array = np.asarray(value)
        except ValueError:  # lists of unequal lengths
            array = None
        if array is None or array.dtype.kind not in "iufb":
            raise self.fail("a list of samples must hold numbers, or one list of numbers per channel, all of one "
                            f"length; got {type(value).__name__} starting {str(value)[:60]}")
        return array

    def _read_as(self, sent: tuple[int, ...], shape: tuple[int, ...]) -> str:
        """How an array of shape ``sent`` was laid out as (channels, samples) ``shape``, when it was
        turned or widened: ``read as 2 channel(s) of 2,048 samples (preprocess.layout auto: ...)``."""
        if len(shape) != 2 or tuple(sent) == tuple(shape):
            return ""
        layout = self.cfg.get("layout", "auto")
        why = {"auto": "the longer axis is time", "channels_last": "(samples, channels)"}.get(layout, "")
        return f", read as {shape[0]} channel(s) of {shape[1]:,} samples (preprocess.layout {layout}: {why})" \
            if why else f", read as {shape[0]} channel(s) of {shape[1]:,} samples"

    def _npz_array(self, data: bytes, source: str) -> np.ndarray:
        """The array of a ``.npz`` archive that training reads (``preprocess.key``, else the only
        array, else the one named ``data``: :mod:`polymodal.data.modalities.signal`), its ``.npy``
        header checked before allocating (:func:`~polymodal.utils.npy.read_npy`)."""
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            raise self.fail(f"not a readable .npz archive ({err}){source}", "corrupt_file") from None
        with archive:
            members = {name[:-4]: name for name in archive.namelist() if name.endswith(".npy")}
            names = [name for name in members if not name.startswith("__")]
            key = self.cfg.get("key")
            if key is not None and key not in members:
                raise self.fail(f"no array named '{key}' (preprocess.key) in the .npz archive{source}; it holds {names}")
            if key is None:
                if len(names) != 1 and "data" not in names:
                    raise self.fail(f"the .npz archive{source} holds arrays {names}: several, none named 'data'; "
                                    "training chooses one with preprocess.key")
                key = names[0] if len(names) == 1 else "data"
            info = archive.getinfo(members[key])
            try:
                with archive.open(info) as member:
                    return read_npy(member, info.file_size)
            except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
                raise self.fail(f"array '{key}' of the .npz archive is not readable ({err}){source}",
                                "corrupt_file") from None

    def notes(self, value: Any) -> list[str]:
        """That the signal was cropped or zero-padded to the model's ``length``, and which channels
        are flat (one value throughout: a sensor disconnected or stuck, which a model trained on
        live signals may still read as ordinary)."""
        window, valid, samples = self.decode(value)
        notes = [flat_note(window, c) for c in flat_channels(window, valid)]
        said = length_note(samples, int(self.cfg["length"]), self.cfg["crop"])
        return notes if said is None else [said, *notes]

    def featurize(self, samples: Sequence[tuple[np.ndarray, int, int]]) -> dict[str, np.ndarray]:
        x = np.stack([s[0] for s in samples])  # (B, C, L)
        valid = np.asarray([s[1] for s in samples], np.int64)
        spec = self.cfg.get("spectrogram")
        if spec is None:
            return {"x": x, "length": valid.astype(np.int32)}
        b, c, n = x.shape
        power = stft_power(x.reshape(b * c, n), spec["n_fft"], spec["hop"])  # (B*C, T, F)
        # an export made before spectrogram.scale existed records none: it was trained with log1p
        scaled = np.log1p(power) if spec.get("scale", "log1p") == "log1p" else spectrogram_db(power)
        feats = scaled.reshape(b, c, power.shape[1], power.shape[2]).transpose(0, 1, 3, 2)
        lengths = np.minimum(1 + valid // spec["hop"], power.shape[1]).astype(np.int32)
        return {"x": feats.reshape(b, -1, power.shape[1]).astype(np.float32), "length": lengths}
