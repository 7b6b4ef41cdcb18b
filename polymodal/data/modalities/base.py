"""The preprocessor interface shared by every modality kind.

A preprocessor turns manifest cells into fixed-shape arrays in four steps:

1. ``fit(values)``: learn what encoding needs from the training cells (a vocabulary,
   category lists, numeric statistics). Cheap, no file decoding for file-based kinds.
2. ``decode(value)``: one cell -> one decoded sample (file read, colour conversion, resize,
   resampling, crop/pad). Runs per sample, in DataLoader worker processes (see ``data.encode``).
3. ``featurize(samples)``: a chunk of decoded samples -> arrays with a leading batch axis
   (vectorised: STFT and mel filterbanks run once per chunk on torch).
4. ``to_batch(arrays, train)``: at batch time, arrays -> the encoder's keyword inputs
   (normalisation with fitted statistics, training-only augmentation, trimming of padding).

``transform(values)`` chains steps 2-4 for a list of cells, as the pipeline does.

Steps 2-3 produce what the preprocessed-tensor cache stores; their output depends only on
the config and the ``fit`` state, never on ``fit_features`` statistics, so refitting
normalisation never invalidates the cache. ``fit_features`` learns those statistics from
the featurised training arrays.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from polymodal.errors import EMPTY_FILE, DecodeError
from polymodal.registry import Registry
from polymodal.utils.io import atomic_write, atomic_write_json


@dataclass(frozen=True)
class ArraySpec:
    """Per-sample shape and dtype of one featurised array."""

    shape: tuple[int, ...]
    dtype: str


def said_empty(err: DecodeError) -> DecodeError:
    """``err``, or, when its file holds no bytes at all, an error that says so: the decoder's own
    reason ("not a recognised image format", "reading magic string") hides the plain cause."""
    try:
        empty = err.path is not None and Path(err.path).stat().st_size == 0
    except OSError:
        empty = False
    return DecodeError(EMPTY_FILE, path=err.path) if empty else err


class Preprocessor(ABC):
    """Base class; subclasses register against their modality config class in PREPROCESSORS.

    Attributes:
        name: the modality name (used in messages).
        kind: the modality kind.
        file_based: cells are file paths (True) or inline values (False).
    """

    kind: ClassVar[str]
    file_based: ClassVar[bool] = True
    # Raised whenever ``decode``/``featurize`` change what they produce for some input, so that
    # features cached by the earlier code are not reused (it is part of the fingerprint).
    featurize_version: ClassVar[int] = 1

    def __init__(self, name: str):
        self.name = name

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: Any, *, name: str) -> Preprocessor:
        """Build from the modality config."""

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, values: Sequence[Any]) -> None:  # noqa: B027 - optional hook
        """Learn encoding state from the present training cells (default: nothing to learn)."""

    def fit_features(self, arrays: Mapping[str, np.ndarray]) -> None:  # noqa: B027 - optional hook
        """Learn batch-time statistics from featurised training arrays (present rows only)."""

    # -- encoding -----------------------------------------------------------------------------
    @abstractmethod
    def decode(self, value: Any) -> Any:
        """One cell -> one decoded sample. Raise DecodeError (or any OSError/ValueError) on bad input."""

    @abstractmethod
    def featurize(self, samples: Sequence[Any]) -> dict[str, np.ndarray]:
        """Decoded samples -> arrays with a leading axis of ``len(samples)``, shapes as in ``spec``."""

    @abstractmethod
    def spec(self) -> dict[str, ArraySpec]:
        """Per-sample shape and dtype of every array ``featurize`` returns."""

    @abstractmethod
    def to_batch(self, arrays: Mapping[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        """Batched arrays -> the encoder's keyword inputs (``x``, optional ``mask``...)."""

    def notes(self, sample: Any) -> list[str]:
        """What a user should know about one decoded sample (from :meth:`decode`), such as a signal
        channel that holds one value throughout; none by default. Encoding warns once per
        modality and manifest, naming the rows (the runtime's ``Features.notes`` says it per request)."""
        return []

    def decode_chunk(self, values: Sequence[Any]) -> tuple[list[int], list[Any], list[tuple[int, DecodeError]]]:
        """Decode a chunk of cells: the positions decoded, their samples, and ``(position, error)``
        of the others. One ``decode`` per cell; a modality whose cells are cheap to decode
        together (tabular) overrides it."""
        good, samples, errors = [], [], []
        for position, value in enumerate(values):
            try:
                samples.append(self.decode(value))
                good.append(position)
            except DecodeError as err:
                errors.append((position, said_empty(err)))
        return good, samples, errors

    def transform(self, values: Sequence[Any], train: bool = False) -> dict[str, torch.Tensor]:
        """Cells -> the encoder's keyword inputs, through the chain the data pipeline runs.

        ``decode_chunk`` the cells, ``featurize`` them (what encoding a manifest stores),
        then ``to_batch`` (what the dataset does when it batches those rows). Needs the state of
        ``fit`` (and of ``fit_features`` where the batch step normalises with it).

        Args:
            values: present cells as a manifest gives them: a resolved file path, an inline
                value, or for tabular a tuple of the column values. An absent modality is the
                model's missing path, not a cell to transform.
            train: apply training-only augmentation.

        Returns:
            The encoder inputs (``x``, optional ``mask``...), leading axis ``len(values)``.

        Raises:
            DecodeError: a cell could not be decoded.
        """
        if len(values) == 0:  # as an empty table is encoded: arrays of zero rows
            arrays = {k: np.zeros((0, *s.shape), s.dtype) for k, s in self.spec().items()}
        else:
            _, samples, errors = self.decode_chunk(values)
            if errors:
                raise errors[0][1]
            arrays = self.featurize(samples)
        return self.to_batch({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, train)

    def encoder_context(self) -> dict[str, Any]:
        """What an encoder needs to know about its input (channels, vocabulary size...)."""
        return {}

    def strong_options(self) -> dict[str, Any]:
        """What the kind's strong augmentation (:mod:`polymodal.data.strong`) needs to know about
        the batch's layout."""
        return {}

    # -- state --------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Fitted state: JSON values and numpy arrays only (no pickle)."""
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`get_state` returned."""

    def encoding_state(self) -> dict[str, Any]:
        """The part of the state that ``decode``/``featurize`` depend on (cache key)."""
        return {}

    def runtime_settings(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """What the torch-free runtime (:mod:`polymodal.deploy.features`) needs to preprocess as this
        does: ``deploy.json``'s ``preprocess`` (the settings) and ``state`` (the fitted state as
        JSON lists, plus what a kind's runtime cannot compute without torch).

        Raises:
            SchemaMismatchError: this preprocessing has no torch-free form.
        """
        state = {k: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v for k, v in self.get_state().items()}
        return self.cfg.model_dump(mode="json"), state

    # Config fields that only matter at batch time (normalisation, augmentation): changing them
    # must not invalidate cached features.
    batch_time_fields: ClassVar[frozenset[str]] = frozenset()
    # Config fields that say where files sit whose content :meth:`encoding_state` digests (a
    # pretrained tokenizer's folder): a run moved, or loaded from its own copy of the files, keys
    # its caches as before.
    location_fields: ClassVar[frozenset[str]] = frozenset()
    # Settings added after runs of this kind were saved, with the value that reads as those runs
    # did: left out of the digests at that value, so those runs keep their fingerprint (the one
    # their weights record, which serving checks an export against) and their cached features.
    added_settings: ClassVar[dict[str, Any]] = {}

    def encoding_config(self) -> dict[str, Any]:
        """The preprocessing settings ``decode``/``featurize`` depend on."""
        return self._digested_settings(self.batch_time_fields | self.location_fields)

    def settings_digest_config(self) -> dict[str, Any]:
        """Every preprocessing setting (batch-time ones too: they change what an encoder reads),
        but where files sit (:attr:`location_fields`): what keys a frozen encoder's cached outputs."""
        return self._digested_settings(self.location_fields)

    def _digested_settings(self, left_out: frozenset[str]) -> dict[str, Any]:
        cfg = getattr(self, "cfg", None)
        if cfg is None:
            return {}
        config = cfg.model_dump(mode="json", exclude=set(left_out))
        for setting, before in self.added_settings.items():
            if setting in config and config[setting] == before:
                del config[setting]
        return config

    def fingerprint(self) -> str:
        """A hash of everything that determines the featurised arrays for a given input."""
        payload = json.dumps(
            {"class": f"{type(self).__module__}.{type(self).__qualname__}", "version": self.featurize_version,
             "config": self.encoding_config(),
             "state": digested(self.encoding_state()), "spec": {k: [list(v.shape), v.dtype] for k, v in self.spec().items()}},
            sort_keys=True,
        )
        return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()

    def save(self, folder: Path) -> None:
        """Write ``<name>.json`` (and ``<name>.safetensors`` for arrays) into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        state = self.get_state()
        arrays = {k: np.ascontiguousarray(v) for k, v in state.items() if isinstance(v, np.ndarray)}
        plain = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
        atomic_write_json(folder / f"{self.name}.json", {"kind": self.kind, "state": plain, "arrays": sorted(arrays)})
        if arrays:
            atomic_write(folder / f"{self.name}.safetensors", lambda tmp: save_file(arrays, str(tmp)))

    def load(self, folder: Path) -> None:
        """Restore the state written by :meth:`save`."""
        meta = json.loads((folder / f"{self.name}.json").read_text(encoding="utf-8"))
        state = dict(meta["state"])
        if meta.get("arrays"):
            state.update(load_file(str(folder / f"{self.name}.safetensors")))
        self.set_state(state)


def digested(value: Any) -> Any:
    """``value`` (a state: dicts, lists, numbers, strings, arrays) with every array replaced by a
    digest of its bytes: small, JSON-able, and equal exactly when the arrays are (for fingerprints)."""
    if isinstance(value, np.ndarray):
        return hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=16).hexdigest()
    if isinstance(value, dict):
        return {k: digested(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [digested(v) for v in value]
    return value


def roll_within(x: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor | None, dim: int) -> torch.Tensor:
    """Each sample of ``x`` rolled by ``offsets`` (B,) steps along ``dim``, within its first
    ``lengths`` (B,) steps (all of them when None): padding never rolls into a clip."""
    size = x.shape[dim]
    steps = torch.arange(size, device=x.device).unsqueeze(0)  # (1, S)
    valid = torch.full_like(offsets, size) if lengths is None else lengths.clamp(1, size)
    index = torch.where(steps < valid[:, None], (steps - offsets[:, None]) % valid[:, None], steps)  # (B, S)
    shape = [1] * x.dim()
    shape[0], shape[dim] = x.shape[0], size
    return x.gather(dim, index.view(shape).expand_as(x))


def channel_stats(
    x: np.ndarray, axis: int, valid: np.ndarray | None = None, time_axis: int | None = None, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of every index along ``axis``, pooled over all other axes.

    Streams over the leading (sample) axis in chunks, accumulating in float64, so it works on
    memory-mapped arrays of any size.

    Args:
        x: (N, ...) array.
        axis: the feature axis whose entries get their own statistics (>= 1).
        valid: optional (N,) number of valid steps along ``time_axis`` per sample; steps beyond
            it are padding and excluded.
    """
    total = np.zeros(x.shape[axis], np.float64)
    total_sq = np.zeros(x.shape[axis], np.float64)
    count = np.zeros(x.shape[axis], np.float64)
    others = tuple(a for a in range(x.ndim) if a != axis)
    for start in range(0, x.shape[0], chunk):
        block = np.asarray(x[start:start + chunk], dtype=np.float64)
        if valid is not None and time_axis is not None:
            steps = np.arange(x.shape[time_axis])
            keep = steps[None, :] < np.asarray(valid[start:start + chunk])[:, None]  # (n, T)
            shape = [1] * x.ndim
            shape[0], shape[time_axis] = keep.shape
            weight = np.broadcast_to(keep.reshape(shape), block.shape)
        else:
            weight = np.ones_like(block)
        total += (block * weight).sum(axis=others)
        total_sq += (block * block * weight).sum(axis=others)
        count += weight.sum(axis=others)
    count = np.maximum(count, 1.0)
    mean = total / count
    var = np.maximum(total_sq / count - mean * mean, 0.0)
    return mean.astype(np.float32), np.maximum(np.sqrt(var), 1e-6).astype(np.float32)


PREPROCESSORS: Registry[Preprocessor] = Registry("preprocessor")
