"""Corruptions: severity 0 is the identity, higher severity changes the sample more, results are
seeded; every registered corruption is covered through the registry."""

from __future__ import annotations

import difflib
import re
from typing import Any

import numpy as np
import pytest

from polymodal.errors import ConfigError
from polymodal.evaluation.corruptions import CORRUPTIONS, SEVERITIES, Corruption, CorruptionRegistry

REQUIRED = {
    "image": {"gaussian_noise", "salt_pepper", "blur", "contrast", "rotation", "occlusion"},
    "audio": {"white_noise", "time_dropout", "gain"},
    "text": {"typos", "word_dropout", "word_swap"},
    "signal": {"noise", "dropout", "drift"},
    "tabular": {"missing", "swap"},
    "video": {"gaussian_noise", "salt_pepper", "blur", "contrast", "rotation", "occlusion", "frame_drop", "freeze"},
}
# the image corruptions a video applies to each real frame, and whether each frame gets the same draw
PER_FRAME = {"gaussian_noise": False, "salt_pepper": False, "blur": True, "contrast": True, "occlusion": True,
             "rotation": True}
WORDS = "the quick brown fox jumps over the lazy dog while seven small birds sing loudly in the old garden".split()


def sample(kind: str, seed: int) -> tuple[Any, list[Any]]:
    """A realistic sample of each kind (and the pool of raw cells for raw-stage corruptions)."""
    rng = np.random.default_rng(seed)
    if kind == "image":  # a bright stroke on a dark background, like a digit
        image = np.zeros((28, 28, 1), np.uint8)
        image[6:22, 12:16] = 220
        image[6:10, 8:20] = 200
        return np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8), []
    if kind == "audio":
        t = np.arange(8000) / 8000
        wave = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)).astype(np.float32)
        wave[6000:] = 0.0  # padding after the recorded part
        return (wave, 6000), []
    if kind == "text":
        return " ".join(rng.permutation(WORDS)), []
    if kind == "video":  # a bright bar moving right over a noisy background: 8 real frames, 2 of padding
        frames = np.zeros((10, 28, 28, 1), np.uint8)
        for t in range(8):
            frames[t, 6:22, 4 + 2 * t:8 + 2 * t] = 220
            frames[t] = np.clip(frames[t] + rng.integers(0, 20, frames[t].shape), 0, 255)
        return (frames, 8), []
    if kind == "signal":
        steps = np.arange(256)
        array = np.stack([np.sin(steps / 7.0), np.cos(steps / 11.0) * 2.0]).astype(np.float32)
        array[:, 200:] = 0.0
        return (array, 200), []
    pool = [tuple(rng.normal(size=4).round(3)) + (str(rng.choice(["red", "blue", "green"])),) for _ in range(50)]
    return pool[0], pool


def change(kind: str, name: str, clean: Any, corrupted: Any) -> float:
    """How much a sample changed, in [0, ...): mean absolute difference (arrays), character edit
    share (text), share of changed entries (tabular)."""
    if kind == "image":
        return float(np.abs(clean.astype(np.float32) - corrupted.astype(np.float32)).mean() / 255.0)
    if kind == "video":
        return float(np.abs(clean[0].astype(np.float32) - corrupted[0].astype(np.float32)).mean() / 255.0)
    if kind in ("audio", "signal"):
        return float(np.abs(clean[0] - corrupted[0]).mean())
    if kind == "text":
        return 1.0 - difflib.SequenceMatcher(None, clean, corrupted).ratio()
    return float(np.mean([a != b for a, b in zip(clean, corrupted)]))


@pytest.mark.parametrize("kind", sorted(REQUIRED))
def test_every_kind_has_the_required_corruptions(kind):
    assert REQUIRED[kind] <= set(CORRUPTIONS.names(kind))


@pytest.mark.parametrize("corruption", list(CORRUPTIONS), ids=lambda c: c.key)
def test_severity_zero_is_the_identity(corruption: Corruption):
    clean, pool = sample(corruption.kind, 0)
    out = corruption(clean, 0, np.random.default_rng(0), pool)
    assert change(corruption.kind, corruption.name, clean, out) == 0.0
    if isinstance(clean, tuple) and isinstance(clean[0], np.ndarray):
        assert out[1] == clean[1]


@pytest.mark.parametrize("corruption", list(CORRUPTIONS), ids=lambda c: c.key)
def test_higher_severity_changes_the_input_more(corruption: Corruption):
    changes = []
    for severity in range(SEVERITIES + 1):
        per_seed = []
        for seed in range(12):
            clean, pool = sample(corruption.kind, seed)
            out = corruption(clean, severity, np.random.default_rng(100 + seed), pool)
            per_seed.append(change(corruption.kind, corruption.name, clean, out))
        changes.append(float(np.mean(per_seed)))
    assert changes[0] == 0.0
    assert changes[1] > 0.0, f"{corruption.key} does nothing at severity 1"
    for low, high in zip(changes[1:], changes[2:]):
        assert high >= low * 0.98, f"{corruption.key}: change per severity {np.round(changes, 4)} is not increasing"
    assert changes[-1] > 1.5 * changes[1], f"{corruption.key}: severity 5 barely exceeds severity 1 {changes}"


@pytest.mark.parametrize("corruption", list(CORRUPTIONS), ids=lambda c: c.key)
def test_corruptions_are_seeded_and_keep_the_sample_form(corruption: Corruption):
    clean, pool = sample(corruption.kind, 3)
    first = corruption(clean, 4, np.random.default_rng(7), pool)
    again = corruption(clean, 4, np.random.default_rng(7), pool)
    other = corruption(clean, 4, np.random.default_rng(8), pool)
    assert change(corruption.kind, corruption.name, first, again) == 0.0
    if corruption.kind == "image":
        assert first.dtype == np.uint8 and first.shape == clean.shape
    elif corruption.kind in ("audio", "signal"):
        assert first[0].dtype == np.float32 and first[0].shape == clean[0].shape and first[1] == clean[1]
        assert np.all(first[0][..., clean[1]:] == 0.0), "the padding after the valid part was changed"
    elif corruption.kind == "video":
        assert first[0].dtype == np.uint8 and first[0].shape == clean[0].shape and first[1] == clean[1]
        assert np.all(first[0][clean[1]:] == 0), "the padding frames after the real ones were changed"
    elif corruption.kind == "tabular":
        assert isinstance(first, tuple) and len(first) == len(clean)
    seeded = change(corruption.kind, corruption.name, first, other) > 0.0
    assert seeded == corruption.random, "a corruption that draws from the seed must be registered random, no other"


def test_audio_white_noise_hits_the_requested_snr():
    (wave, valid), _ = sample("audio", 0)
    corruption = CORRUPTIONS.get("audio", "white_noise")
    for severity, snr in enumerate(corruption.levels, start=1):
        noisy, _ = corruption((wave, valid), severity, np.random.default_rng(severity), [])
        noise = noisy[:valid] - wave[:valid]
        measured = 10 * np.log10(np.mean(wave[:valid] ** 2) / np.mean(noise ** 2))
        assert abs(measured - snr) < 0.5


def test_audio_gain_amplifies_the_recording_as_it_is_not_normalised_to_full_scale_first():
    gain = CORRUPTIONS.get("audio", "gain")
    wave = (0.01 * np.sin(np.linspace(0, 60, 800))).astype(np.float32)  # a quiet recording (peak 0.01)
    for severity, level in enumerate(gain.levels, start=1):
        louder, valid = gain((wave, 800), severity, np.random.default_rng(0), [])
        np.testing.assert_allclose(louder, np.clip(wave * 10 ** (level / 20), -1, 1), rtol=1e-5, atol=1e-7)
    assert np.abs(gain((wave, 800), 1, np.random.default_rng(0), [])[0]).max() < 0.03  # +6 dB: twice as loud
    loud = 5 * wave  # peak 0.05: +30 dB clips it at full scale
    assert np.abs(gain((loud, 800), 5, np.random.default_rng(0), [])[0]).max() == 1.0


def test_registry_refuses_duplicates_and_bad_levels_and_names_what_is_allowed():
    registry = CorruptionRegistry()
    registry.register("image", "x", levels=(1, 2, 3, 4, 5), unit="u")(lambda s, level, rng, pool: s)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("image", "x", levels=(1, 2, 3, 4, 5), unit="u")(lambda s, level, rng, pool: s)
    with pytest.raises(ValueError, match="5 values"):
        registry.register("image", "y", levels=(1, 2), unit="u")
    with pytest.raises(ConfigError, match=r"'nope'.*'image'.*allowed: \['x'\]"):
        registry.get("image", "nope")
    with pytest.raises(ValueError, match="severity"):
        registry.get("image", "x")(np.zeros(1), 6, np.random.default_rng(0))


@pytest.mark.parametrize("name", sorted(REQUIRED["tabular"]))
def test_tabular_corruptions_keep_the_scalar_cells_of_a_single_column_modality(name):
    """A tabular modality with one column has scalar cells (a number or a category), not tuples."""
    corruption = CORRUPTIONS.get("tabular", name)
    for clean, pool in ((3.25, [3.25, -1.5, 7.0]), ("red", ["red", "blue", "green"])):
        outs = [corruption(clean, 5, np.random.default_rng(seed), pool) for seed in range(40)]
        assert all(out is None or out in pool for out in outs), f"{name} broke the cell {clean!r}: {outs[:5]}"
        assert any(out != clean for out in outs), f"{name} never changed the cell {clean!r}"


@pytest.mark.parametrize("severity", [2.5, 2.0, "3", True, None])
def test_a_severity_that_is_not_an_integer_is_refused_naming_severities_0_to_5(severity):
    """A severity between two levels has no parameter (it once failed as 'tuple indices must be integers')."""
    blur = CORRUPTIONS.get("image", "blur")
    with pytest.raises(TypeError, match=rf"^corruption image/blur: severity must be an integer 0-5 \(0: unchanged\); "
                                        rf"got {re.escape(repr(severity))} \({type(severity).__name__}\)$"):
        blur(np.zeros((8, 8, 1), np.uint8), severity, np.random.default_rng(0))


@pytest.mark.parametrize("severity", [-1, 6])
def test_a_severity_outside_0_to_5_is_refused(severity):
    with pytest.raises(ValueError, match=rf"^corruption image/blur: severity must be an integer 0-5 \(0: unchanged\); "
                                         rf"got {severity}$"):
        CORRUPTIONS.get("image", "blur")(np.zeros((8, 8, 1), np.uint8), severity, np.random.default_rng(0))


def test_a_numpy_integer_severity_is_a_severity():
    blur = CORRUPTIONS.get("image", "blur")
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 1)).astype(np.uint8)
    np.testing.assert_array_equal(blur(image, np.int64(3), np.random.default_rng(0)),
                                  blur(image, 3, np.random.default_rng(0)))


# -- video -----------------------------------------------------------------------------------------
def still_clip(frames: int = 10, valid: int = 8, seed: int = 0) -> np.ndarray:
    """(frames, 32, 32, 3) uint8: the same textured picture on the ``valid`` real frames, the
    padding after them filled with 77 (not zero: a corruption that touched it would show)."""
    picture = np.random.default_rng(seed).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    clip = np.full((frames, 32, 32, 3), 77, np.uint8)
    clip[:valid] = picture
    return clip


@pytest.mark.parametrize("name", sorted(REQUIRED["video"]))
@pytest.mark.parametrize("severity", [1, 5])
def test_a_video_corruption_leaves_the_padding_frames_and_the_valid_count_alone(name, severity):
    clip = still_clip()
    frames, valid = CORRUPTIONS.get("video", name)((clip, 8), severity, np.random.default_rng(0), [])
    assert valid == 8 and frames.dtype == np.uint8 and frames.shape == clip.shape
    np.testing.assert_array_equal(frames[8:], clip[8:])
    assert not np.array_equal(frames[:8], clip[:8]) or name == "freeze"  # a still clip frozen looks the same


@pytest.mark.parametrize("name", sorted(PER_FRAME))
def test_a_video_corruption_of_an_image_kind_has_the_image_ones_levels(name):
    video, image = CORRUPTIONS.get("video", name), CORRUPTIONS.get("image", name)
    assert (video.levels, video.unit, video.random, video.stage) == (image.levels, image.unit, image.random, "decoded")


@pytest.mark.parametrize("name", sorted(PER_FRAME))
def test_occlusion_and_rotation_are_the_same_on_every_frame_noise_is_fresh_on_each(name):
    """A still clip stays still under what is in front of the lens or a knocked camera; sensor
    noise differs from frame to frame."""
    clip = still_clip()
    corruption = CORRUPTIONS.get("video", name)
    frames, _ = corruption((clip, 8), 3, np.random.default_rng(5), [])
    same = [np.array_equal(frames[0], frames[t]) for t in range(1, 8)]
    assert all(same) if PER_FRAME[name] else not any(same)
    if PER_FRAME[name] and corruption.random:  # the draw is the clip's: another seed moves the patch, turns the other way
        firsts = [corruption((clip, 8), 3, np.random.default_rng(seed), [])[0][0] for seed in range(6)]
        assert any(not np.array_equal(first, firsts[0]) for first in firsts[1:])


# frames each severity changes, by real frames: ceil(fraction * valid), at least one (and for
# freeze at most valid - 1); eighths of the real frames, so 8 frames (the default) give 1 to 5
DROPPED = {1: [1, 1, 1, 1, 1], 3: [1, 1, 2, 2, 2], 7: [1, 2, 3, 4, 5], 8: [1, 2, 3, 4, 5], 10: [2, 3, 4, 5, 7]}
FROZEN = {2: [1, 1, 1, 1, 1], 5: [1, 2, 2, 3, 4], 8: [1, 2, 3, 4, 5], 12: [2, 3, 5, 6, 8]}


@pytest.mark.parametrize("valid", sorted(DROPPED))
def test_frame_drop_blacks_a_growing_share_of_the_real_frames_and_at_least_one(valid):
    clip = np.random.default_rng(1).integers(1, 256, (12, 6, 6, 1)).astype(np.uint8)  # no black pixel anywhere
    drop = CORRUPTIONS.get("video", "frame_drop")
    for severity in range(1, SEVERITIES + 1):
        frames, count = drop((clip, valid), severity, np.random.default_rng(severity), [])
        black = [t for t in range(len(clip)) if not frames[t].any()]
        assert count == valid and len(black) == DROPPED[valid][severity - 1] and all(t < valid for t in black)
        kept = [t for t in range(len(clip)) if t not in black]
        np.testing.assert_array_equal(frames[kept], clip[kept])
    if valid == 10:  # which frames are lost is drawn (seeded: test_corruptions_are_seeded_and_keep_the_sample_form)
        picks = {tuple(np.flatnonzero(~drop((clip, 10), 5, np.random.default_rng(seed), [])[0].any(axis=(1, 2, 3))))
                 for seed in range(8)}
        assert len(picks) > 1, "frame_drop always blacks the same frames"


@pytest.mark.parametrize("valid", sorted(FROZEN))
def test_freeze_repeats_the_frame_before_the_frozen_tail(valid):
    clip = np.stack([np.full((4, 4, 1), 10 * (t + 1), np.uint8) for t in range(12)])  # frame t reads 10 (t + 1)
    clip[valid:] = 0
    freeze = CORRUPTIONS.get("video", "freeze")
    for severity in range(1, SEVERITIES + 1):
        frames, count = freeze((clip, valid), severity, np.random.default_rng(0), [])
        frozen = FROZEN[valid][severity - 1]
        assert count == valid
        np.testing.assert_array_equal(frames[:valid - frozen], clip[:valid - frozen])
        assert all(np.array_equal(frames[t], clip[valid - frozen - 1]) for t in range(valid - frozen, valid))
        np.testing.assert_array_equal(frames[valid:], clip[valid:])
    one = clip.copy()
    np.testing.assert_array_equal(freeze((one, 1), 5, np.random.default_rng(0), [])[0], one)  # nothing to repeat
