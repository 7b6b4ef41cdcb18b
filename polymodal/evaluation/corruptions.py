"""Seeded corruptions of one sample, per modality kind, at severities 0 (identity) to 5.

A corruption is registered at its definition site, once per (kind, name):

    @CORRUPTIONS.register("image", "gaussian_noise", levels=(0.08, 0.12, 0.18, 0.26, 0.38), unit="noise std")
    def gaussian_noise(image, level, rng, pool): ...

``levels`` holds the corruption's parameter at severities 1..5; severity 0 returns the sample
unchanged without calling the function. Corruptions act on what a preprocessor's ``decode``
returns (``stage="decoded"``: images, audio, signals, videos) or on the raw manifest cell
(``stage="raw"``: text strings, tabular value tuples), so they sit between decoding and
featurisation and never touch the feature cache (see :mod:`polymodal.evaluation.robustness`).

Decoded forms: image ``uint8 (H, W, C)``; audio ``(wave (N,) float32, valid samples)`` (the first
two fields of a :class:`~polymodal.data.modalities.audio.DecodedClip`, all a corrupted clip keeps);
signal ``(array (C, L) float32, valid steps)`` (the first two fields of a
:class:`~polymodal.data.modalities.signal.SignalWindow`); video ``(frames uint8 (T, H, W, C), valid frames)`` (the
frames from ``valid`` on are zero padding, which no corruption touches). Raw forms: text ``str``;
tabular ``tuple`` of the modality's column values (the value itself for a single-column
modality). ``pool`` is every raw cell of the modality in the evaluated data (a corruption may
draw values from other rows); ``rng`` is seeded per row, so results do not depend on chunking or
worker processes.
"""

from __future__ import annotations

import numbers
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from polymodal.errors import ConfigError

SEVERITIES = 5
Stage = Literal["raw", "decoded"]
CorruptionFn = Callable[[Any, float, np.random.Generator, Sequence[Any]], Any]


@dataclass(frozen=True)
class Corruption:
    """One registered corruption.

    Attributes:
        kind: the modality kind it applies to.
        name: its name within the kind.
        stage: ``decoded`` (after ``Preprocessor.decode``) or ``raw`` (on the manifest cell).
        levels: the parameter at severities 1..5.
        unit: what the parameter means (shown in tables and plots).
        fn: ``(sample, level, rng, pool) -> corrupted sample``.
        random: whether it draws from ``rng`` (False: the level alone decides, as a blur's).
    """

    kind: str
    name: str
    stage: Stage
    levels: tuple[float, ...]
    unit: str
    fn: CorruptionFn
    random: bool = True

    def __call__(self, sample: Any, severity: int, rng: np.random.Generator, pool: Sequence[Any] = ()) -> Any:
        """The sample corrupted at ``severity`` (0 = unchanged).

        Raises:
            TypeError: ``severity`` is not an integer (a level between two severities has no parameter).
            ValueError: ``severity`` is outside 0..5.
        """
        if isinstance(severity, bool) or not isinstance(severity, numbers.Integral):
            raise TypeError(f"corruption {self.key}: severity must be an integer 0-{SEVERITIES} (0: unchanged); got "
                            f"{severity!r} ({type(severity).__name__})")
        if not 0 <= severity <= SEVERITIES:
            raise ValueError(f"corruption {self.key}: severity must be an integer 0-{SEVERITIES} (0: unchanged); got "
                             f"{severity}")
        if severity == 0:
            return sample
        return self.fn(sample, self.levels[severity - 1], rng, pool)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


class CorruptionRegistry:
    """Corruptions keyed by (modality kind, name), in registration order."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Corruption] = {}

    def register(self, kind: str, name: str, *, levels: Sequence[float], unit: str,
                 stage: Stage = "decoded", random: bool = True) -> Callable[[CorruptionFn], CorruptionFn]:
        """Function decorator; returns the function unchanged.

        Raises:
            ValueError: (kind, name) is taken, or ``levels`` does not hold one value per severity.
        """
        if len(levels) != SEVERITIES:
            raise ValueError(f"corruption {kind}/{name}: levels must hold {SEVERITIES} values; got {len(levels)}")

        def decorator(fn: CorruptionFn) -> CorruptionFn:
            if (kind, name) in self._items:
                raise ValueError(f"corruption registry: {kind}/{name} is already registered")
            self._items[(kind, name)] = Corruption(kind, name, stage, tuple(float(v) for v in levels), unit, fn, random)
            return fn

        return decorator

    def get(self, kind: str, name: str) -> Corruption:
        """The corruption ``name`` of modality kind ``kind``.

        Raises:
            ConfigError: no such corruption; the message lists those of the kind.
        """
        try:
            return self._items[(kind, name)]
        except KeyError:
            raise ConfigError([f"corruption '{name}' does not exist for modality kind '{kind}'; "
                               f"allowed: {self.names(kind)}"]) from None

    def names(self, kind: str) -> list[str]:
        """Names registered for ``kind``."""
        return [name for (k, name) in self._items if k == kind]

    def kinds(self) -> list[str]:
        """The modality kinds that have corruptions, in registration order."""
        return list(dict.fromkeys(k for k, _ in self._items))

    def __iter__(self) -> Iterator[Corruption]:
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)


CORRUPTIONS = CorruptionRegistry()


# -- helpers -------------------------------------------------------------------------------------
def _as_unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def _segment_mask(length: int, fraction: float, rng: np.random.Generator, segments: int = 20) -> np.ndarray:
    """(length,) True on ``round(fraction * segments)`` of ``segments`` equal stretches, chosen at random."""
    mask = np.zeros(length, bool)
    if length == 0:
        return mask
    edges = np.linspace(0, length, segments + 1).round().astype(int)
    for s in rng.choice(segments, size=int(round(fraction * segments)), replace=False):
        mask[edges[s]:edges[s + 1]] = True
    return mask


# -- image: uint8 (H, W, C) ----------------------------------------------------------------------
@CORRUPTIONS.register("image", "gaussian_noise", levels=(0.08, 0.12, 0.18, 0.26, 0.38), unit="noise std (0-1 scale)")
def image_gaussian_noise(image: np.ndarray, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> np.ndarray:
    """Additive Gaussian pixel noise (ImageNet-C levels)."""
    return _to_uint8(_as_unit(image) + rng.normal(0.0, level, image.shape))


@CORRUPTIONS.register("image", "salt_pepper", levels=(0.03, 0.06, 0.09, 0.17, 0.27), unit="fraction of pixels")
def image_salt_pepper(image: np.ndarray, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> np.ndarray:
    """A fraction of pixels set to black or white (all channels)."""
    out = image.copy()
    hit = rng.random(image.shape[:2]) < level
    salt = rng.random(image.shape[:2]) < 0.5
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


@CORRUPTIONS.register("image", "blur", levels=(0.01, 0.02, 0.03, 0.045, 0.065), unit="blur std / image side",
                      random=False)
def image_blur(image: np.ndarray, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> np.ndarray:
    """Gaussian blur whose std is a fraction of the shorter image side."""
    from scipy.ndimage import gaussian_filter

    sigma = level * min(image.shape[:2])
    return _to_uint8(gaussian_filter(_as_unit(image), sigma=(sigma, sigma, 0), mode="nearest"))


@CORRUPTIONS.register("image", "contrast", levels=(0.4, 0.3, 0.2, 0.1, 0.05), unit="contrast factor", random=False)
def image_contrast(image: np.ndarray, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> np.ndarray:
    """Pixel values pulled towards the image mean (ImageNet-C levels)."""
    values = _as_unit(image)
    mean = values.mean(axis=(0, 1), keepdims=True)
    return _to_uint8((values - mean) * level + mean)


@CORRUPTIONS.register("image", "rotation", levels=(10, 20, 30, 45, 60), unit="degrees")
def image_rotation(image: np.ndarray, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> np.ndarray:
    """Rotation by the level, clockwise or anticlockwise at random, black corners."""
    from scipy.ndimage import rotate

    angle = level if rng.random() < 0.5 else -level
    return _to_uint8(rotate(_as_unit(image), angle, axes=(1, 0), reshape=False, order=1, mode="constant", cval=0.0))


@CORRUPTIONS.register("image", "occlusion", levels=(0.2, 0.3, 0.4, 0.5, 0.6), unit="patch side / image side")
def image_occlusion(image: np.ndarray, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> np.ndarray:
    """A square patch, filled with the image's mean colour, at a random place."""
    height, width = image.shape[:2]
    side_h, side_w = max(1, round(level * height)), max(1, round(level * width))
    top = int(rng.integers(0, height - side_h + 1))
    left = int(rng.integers(0, width - side_w + 1))
    out = image.copy()
    out[top:top + side_h, left:left + side_w] = np.rint(image.mean(axis=(0, 1))).astype(np.uint8)
    return out


# -- audio: (wave (N,), valid samples) ------------------------------------------------------------
@CORRUPTIONS.register("audio", "white_noise", levels=(30, 20, 10, 5, 0), unit="SNR (dB)")
def audio_white_noise(sample: tuple[np.ndarray, int], level: float, rng: np.random.Generator,
                      pool: Sequence[Any]) -> tuple[np.ndarray, int]:
    """White noise added to the recorded part at a signal-to-noise ratio of ``level`` dB."""
    wave, valid = sample[:2]
    out = wave.copy()
    power = float(np.mean(wave[:valid].astype(np.float64) ** 2)) if valid else 0.0
    std = np.sqrt(power / 10.0 ** (level / 10.0))
    out[:valid] += rng.normal(0.0, std, valid).astype(np.float32)
    return out, valid


@CORRUPTIONS.register("audio", "time_dropout", levels=(0.1, 0.2, 0.3, 0.4, 0.5), unit="fraction of time silenced")
def audio_time_dropout(sample: tuple[np.ndarray, int], level: float, rng: np.random.Generator,
                       pool: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Random stretches (1/20 of the recording each) silenced (lost packets, a loose cable)."""
    wave, valid = sample[:2]
    out = wave.copy()
    out[:valid][_segment_mask(valid, level, rng)] = 0.0
    return out, valid


@CORRUPTIONS.register("audio", "gain", levels=(6, 12, 18, 24, 30), unit="gain (dB), clipped at full scale",
                      random=False)
def audio_gain(sample: tuple[np.ndarray, int], level: float, rng: np.random.Generator,
               pool: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Amplification of the recording by ``level`` dB, clipped at +-1 like an overdriven input (a
    quiet recording is amplified as much as a loud one: how far it clips depends on its own level)."""
    wave, valid = sample[:2]
    scale = np.float32(10.0 ** (level / 20.0))
    return np.clip(wave * scale, -1.0, 1.0).astype(np.float32), valid


# -- text: the raw string ------------------------------------------------------------------------
@CORRUPTIONS.register("text", "typos", levels=(0.02, 0.05, 0.1, 0.15, 0.2), unit="typo probability per letter",
                      stage="raw")
def text_typos(text: Any, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> str:
    """Each letter, with probability ``level``, is replaced, deleted, doubled or swapped with the next."""
    chars = list(str(text))
    out: list[str] = []
    i = 0
    while i < len(chars):
        char = chars[i]
        if not char.isalpha() or rng.random() >= level:
            out.append(char)
            i += 1
            continue
        operation = int(rng.integers(4))
        if operation == 0:
            out.append(string.ascii_lowercase[int(rng.integers(26))])
        elif operation == 2:
            out += [char, char]
        elif operation == 3 and i + 1 < len(chars):
            out += [chars[i + 1], char]
            i += 1
        elif operation == 3:
            out.append(char)
        i += 1  # operation 1 deletes the letter
    return "".join(out)


@CORRUPTIONS.register("text", "word_dropout", levels=(0.1, 0.2, 0.3, 0.4, 0.5), unit="fraction of words dropped",
                      stage="raw")
def text_word_dropout(text: Any, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> str:
    """Each word dropped with probability ``level``."""
    words = str(text).split()
    return " ".join(w for w, keep in zip(words, rng.random(len(words)) >= level) if keep)


@CORRUPTIONS.register("text", "word_swap", levels=(0.1, 0.2, 0.3, 0.4, 0.5), unit="swaps per word", stage="raw")
def text_word_swap(text: Any, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> str:
    """``round(level * words)`` swaps of two neighbouring words."""
    words = str(text).split()
    for _ in range(int(round(level * len(words))) if len(words) > 1 else 0):
        i = int(rng.integers(len(words) - 1))
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


# -- signal: (array (C, L), valid steps) ----------------------------------------------------------
def _channel_std(array: np.ndarray, valid: int) -> np.ndarray:
    """(C, 1) std of each channel over its valid steps (1 where flat)."""
    std = array[:, :valid].std(axis=1, keepdims=True) if valid else np.ones((array.shape[0], 1), np.float32)
    return np.where(std > 1e-8, std, 1.0).astype(np.float32)


@CORRUPTIONS.register("signal", "noise", levels=(0.1, 0.25, 0.5, 1.0, 2.0), unit="noise std / signal std")
def signal_noise(sample: tuple[np.ndarray, int], level: float, rng: np.random.Generator,
                 pool: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Gaussian noise with a std of ``level`` times each channel's own std."""
    array, valid = sample[:2]
    out = array.copy()
    out[:, :valid] += (rng.normal(0.0, 1.0, (array.shape[0], valid)) * level * _channel_std(array, valid)).astype(np.float32)
    return out, valid


@CORRUPTIONS.register("signal", "dropout", levels=(0.1, 0.2, 0.3, 0.4, 0.5), unit="fraction of time zeroed")
def signal_dropout(sample: tuple[np.ndarray, int], level: float, rng: np.random.Generator,
                   pool: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Random stretches (1/20 of the recording each) read as zero on every channel (sensor drop-outs)."""
    array, valid = sample[:2]
    out = array.copy()
    out[:, :valid][:, _segment_mask(valid, level, rng)] = 0.0
    return out, valid


@CORRUPTIONS.register("signal", "drift", levels=(0.5, 1.0, 2.0, 3.0, 5.0), unit="final offset / signal std")
def signal_drift(sample: tuple[np.ndarray, int], level: float, rng: np.random.Generator,
                 pool: Sequence[Any]) -> tuple[np.ndarray, int]:
    """A linear baseline drift per channel, from 0 to +-``level`` channel stds at the end."""
    array, valid = sample[:2]
    out = array.copy()
    signs = np.where(rng.random((array.shape[0], 1)) < 0.5, -1.0, 1.0)
    ramp = np.linspace(0.0, 1.0, valid, dtype=np.float32)[None, :]
    out[:, :valid] += (signs * level * _channel_std(array, valid) * ramp).astype(np.float32)
    return out, valid


# -- tabular: the raw tuple of column values (a single-column modality's cell is the value itself) ---
def _row(cell: Any) -> tuple:
    """A tabular cell as a tuple of column values (a single-column modality has scalar cells)."""
    return tuple(cell) if isinstance(cell, tuple | list) else (cell,)


def _like(cell: Any, values: Sequence[Any]) -> Any:
    """``values`` in the form of ``cell``: a tuple, or the one value of a scalar cell."""
    return tuple(values) if isinstance(cell, tuple | list) else values[0]


@CORRUPTIONS.register("tabular", "missing", levels=(0.1, 0.2, 0.3, 0.4, 0.5), unit="fraction of entries blanked",
                      stage="raw")
def tabular_missing(values: Any, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> Any:
    """Each entry blanked (then imputed like any missing value) with probability ``level``."""
    row = _row(values)
    return _like(values, [None if blank else v for v, blank in zip(row, rng.random(len(row)) < level)])


@CORRUPTIONS.register("tabular", "swap", levels=(0.1, 0.2, 0.3, 0.4, 0.5), unit="fraction of entries swapped",
                      stage="raw")
def tabular_swap(values: Any, level: float, rng: np.random.Generator, pool: Sequence[Any]) -> Any:
    """Each entry, with probability ``level``, replaced by the same field of another random row
    (a record mix-up); unchanged when the data has a single row."""
    out = list(_row(values))
    if len(pool) < 2:
        return _like(values, out)
    for j in np.flatnonzero(rng.random(len(out)) < level):
        out[j] = _row(pool[int(rng.integers(len(pool)))])[j]
    return _like(values, out)


# -- video: (frames uint8 (T, H, W, C), valid frames); frames from ``valid`` on are padding --------
def _frame_corruption(name: str, *, same_on_every_frame: bool) -> None:
    """Register ``video/name``: the image corruption ``name`` on every real frame, at its levels.

    Args:
        same_on_every_frame: draw the corruption's randomness once per clip (an object in front of
            the lens, a knocked camera: every frame gets the patch at the same place, the same
            angle), from a seed taken from the row's generator; otherwise each frame draws afresh
            from it (sensor noise). A per-frame statistic stays per frame (an occluding patch is
            filled with its own frame's mean colour, contrast pulls towards each frame's mean).
    """
    image = CORRUPTIONS.get("image", name)

    def corrupt(sample: tuple[np.ndarray, int], level: float, rng: np.random.Generator,
                pool: Sequence[Any]) -> tuple[np.ndarray, int]:
        frames, valid = sample
        out = frames.copy()
        seed = int(rng.integers(2 ** 63)) if same_on_every_frame and image.random else None
        for t in range(valid):
            out[t] = image.fn(frames[t], level, rng if seed is None else np.random.default_rng(seed), pool)
        return out, valid

    corrupt.__name__ = corrupt.__qualname__ = f"video_{name}"
    corrupt.__doc__ = (f"The image corruption ``{name}`` on every real frame"
                       f"{' with the same parameters' if same_on_every_frame else ''}. {image.fn.__doc__}")
    CORRUPTIONS.register("video", name, levels=image.levels, unit=image.unit, random=image.random)(corrupt)


_frame_corruption("gaussian_noise", same_on_every_frame=False)
_frame_corruption("salt_pepper", same_on_every_frame=False)
_frame_corruption("blur", same_on_every_frame=True)
_frame_corruption("contrast", same_on_every_frame=True)
_frame_corruption("occlusion", same_on_every_frame=True)
_frame_corruption("rotation", same_on_every_frame=True)


# eighths of the real frames: with the default 8 sampled frames, 1 to 5 frames (no two severities alike)
FRAME_FRACTIONS = (0.125, 0.25, 0.375, 0.5, 0.625)


def _frame_count(level: float, valid: int, most: int) -> int:
    """``ceil(level * valid)`` frames, at least one and at most ``most``."""
    return min(max(int(np.ceil(level * valid - 1e-9)), 1), most)


@CORRUPTIONS.register("video", "frame_drop", levels=FRAME_FRACTIONS, unit="fraction of frames blacked")
def video_frame_drop(sample: tuple[np.ndarray, int], level: float, rng: np.random.Generator,
                     pool: Sequence[Any]) -> tuple[np.ndarray, int]:
    """``ceil(level * valid)`` real frames (at least one), chosen at random, all black (lost frames)."""
    frames, valid = sample
    out = frames.copy()
    out[rng.choice(valid, size=_frame_count(level, valid, valid), replace=False)] = 0
    return out, valid


@CORRUPTIONS.register("video", "freeze", levels=FRAME_FRACTIONS, unit="fraction of frames frozen", random=False)
def video_freeze(sample: tuple[np.ndarray, int], level: float, rng: np.random.Generator,
                 pool: Sequence[Any]) -> tuple[np.ndarray, int]:
    """The picture stops updating: the last ``ceil(level * valid)`` real frames (at least one, and
    never the first) repeat the frame before them; a clip of one frame is left unchanged."""
    frames, valid = sample
    out = frames.copy()
    if valid < 2:
        return out, valid
    frozen = _frame_count(level, valid, valid - 1)
    out[valid - frozen:valid] = frames[valid - frozen - 1]
    return out, valid
