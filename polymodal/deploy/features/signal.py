"""Signals in the runtime: ``.npy`` arrays and CSV files read as training reads them, cut or padded,
optionally a log spectrogram (``scale`` ``db`` or ``log1p``, as in training)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from polymodal.deploy.errors import content_start
from polymodal.deploy.features.audio import stft_power
from polymodal.deploy.features.base import NPY_MAGIC, Features, read_bytes
from polymodal.errors import DecodeError
from polymodal.utils.npy import npy_from_bytes
from polymodal.utils.signal_csv import is_csv_text, non_finite_reason, pick_channels, read_csv_signal
from polymodal.utils.signals import channels_first, fit_length, flat_channels, flat_note, spectrogram_db


class SignalFeatures(Features):
    """A signal as training reads one: a ``.npy`` array (laid out by ``preprocess.layout``) or a CSV
    file (one column per channel; read by :mod:`polymodal.utils.signal_csv`, as in training), told
    apart by their content; then ``preprocess.channels``, crop or pad to ``length``."""

    kind = "signal"

    def decode(self, value: Any) -> tuple[np.ndarray, int, int]:
        """(channels, length) samples, the valid count and the count the signal held."""
        channels = self.cfg.get("channels")
        names = channels if channels and isinstance(channels[0], str) else None
        lines = None
        if isinstance(value, np.ndarray):
            array, source = value, ""
        else:
            source = "" if isinstance(value, bytes | bytearray | memoryview) else f" (file {value})"
            try:
                data = read_bytes(value)
            except OSError as err:
                raise self.fail(f"cannot read the signal file{source}: {err.strerror or err}", "bad_input") from None
            if data.startswith(NPY_MAGIC):
                try:
                    array = npy_from_bytes(data)
                except (ValueError, OSError, EOFError) as err:
                    raise self.fail(f"not a readable .npy array ({err}){source}", "corrupt_file") from None
            elif is_csv_text(data):
                try:
                    table = read_csv_signal(data, names)
                except DecodeError as err:
                    raise self.fail(f"{err.reason}{source}", "corrupt_file") from None
                array, lines = table.samples, table.lines
            else:
                raise self.fail(f"neither a .npy array nor a CSV file (UTF-8 text){source}; got {len(data):,} bytes "
                                f"starting with {content_start(data)}", "unsupported_type", 415)
        if lines is None:  # an array: its layout as in training (a CSV's columns are always its channels)
            if not isinstance(array, np.ndarray) or array.dtype.kind not in "iufb":  # as training reads one
                raise self.fail(f"expected a real-valued numeric .npy array; got dtype "
                                f"{getattr(array, 'dtype', type(array).__name__)}{source}")
            if names is not None:
                raise self.fail(f"preprocess.channels names columns {names}, which only a CSV file has; got an "
                                f"array{source}")
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
            raise self.fail(f"expected {expected} channel(s) as in training; got an array of shape {array.shape}{source}")
        if not np.isfinite(array).all():
            raise self.fail(f"{non_finite_reason(array, lines)}{source}")
        length = int(self.cfg["length"])
        return fit_length(array, length, self.cfg["crop"]), min(array.shape[-1], length), array.shape[-1]

    def notes(self, value: Any) -> list[str]:
        """That the signal was cropped or zero-padded to the model's ``length``, and which channels
        are flat (one value throughout: a sensor disconnected or stuck, which a model trained on
        live signals may still read as ordinary)."""
        length = int(self.cfg["length"])
        window, valid, samples = self.decode(value)
        notes = [flat_note(window, c) for c in flat_channels(window, valid)]
        if samples != length:
            done = f"cropped to its {'first' if self.cfg['crop'] == 'start' else 'central'} {length:,}" \
                if samples > length else f"zero-padded to {length:,}"
            notes.insert(0, f"{samples:,} samples where the model reads {length:,}: {done}")
        return notes

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
