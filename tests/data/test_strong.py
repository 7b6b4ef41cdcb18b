"""FixMatch's strong view (``polymodal.data.strong``): per modality kind, a perturbation that keeps
shapes, dtypes and padding, stays within the valid ids (tokens, categories), erases what
``erase`` says, is reproducible with a seeded generator, and leaves its input tensors unchanged."""

from __future__ import annotations

import pytest
import torch

from polymodal.data.strong import STRONG, strong_view


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def lengths_mask(lengths: list[int], size: int) -> torch.Tensor:
    return torch.arange(size)[None, :] < torch.tensor(lengths)[:, None]  # (B, size)


def batch(kind: str) -> dict[str, torch.Tensor]:
    """A batch as the kind's ``to_batch`` gives it (padding zeroed, masks bool), values away from 0."""
    g = seeded(123)
    if kind == "image":
        return {"x": torch.rand(4, 3, 16, 16, generator=g) + 0.5}  # (B, C, H, W)
    if kind == "audio":
        mask = lengths_mask([20, 12, 7, 20], 20)
        return {"x": (torch.rand(4, 20, 8, generator=g) + 0.5) * mask.unsqueeze(-1), "mask": mask}  # (B, T, F)
    if kind == "signal":
        mask = lengths_mask([32, 20, 9, 32], 32)
        return {"x": (torch.rand(4, 2, 32, generator=g) + 0.5) * mask.unsqueeze(1), "mask": mask}  # (B, C, L)
    if kind == "video":
        mask = lengths_mask([4, 2, 1, 4], 4)
        still = (torch.rand(4, 1, 1, 12, 12, generator=g) + 0.5).expand(4, 4, 1, 12, 12)  # each clip one picture
        return {"x": still * mask[:, :, None, None, None], "mask": mask}  # (B, T, C, H, W)
    if kind == "tabular":
        return {"x": torch.rand(4, 5, generator=g) + 0.5, "cat": torch.randint(1, 7, (4, 3), generator=g)}
    mask = lengths_mask([10, 6, 2, 1], 10)
    return {"x": torch.randint(2, 50, (4, 10), generator=g) * mask, "mask": mask}  # text (B, T), pad id 0


def snapshot(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in inputs.items()}


@pytest.mark.parametrize("kind", sorted(STRONG))
def test_strong_view_changes_the_values_and_keeps_keys_shapes_dtypes_and_the_input(kind):
    inputs = batch(kind)
    before = snapshot(inputs)
    out = STRONG[kind](inputs, 1.0, 0.5, seeded())
    assert set(out) == set(inputs)
    for key in inputs:
        assert out[key].shape == inputs[key].shape and out[key].dtype == inputs[key].dtype, key
        assert torch.equal(inputs[key], before[key]), f"{key} was changed in place"
    assert not torch.equal(out["x"], inputs["x"])
    assert torch.isfinite(out["x"].float()).all()
    if "mask" in inputs:
        assert torch.equal(out["mask"], inputs["mask"])


@pytest.mark.parametrize("kind", sorted(STRONG))
def test_the_same_seed_gives_the_same_view_and_another_seed_another(kind):
    inputs = batch(kind)
    first, again = STRONG[kind](inputs, 1.0, 0.5, seeded(1)), STRONG[kind](inputs, 1.0, 0.5, seeded(1))
    other = STRONG[kind](inputs, 1.0, 0.5, seeded(2))
    assert all(torch.equal(first[k], again[k]) for k in inputs)
    assert not all(torch.equal(first[k], other[k]) for k in inputs)


@pytest.mark.parametrize("kind", ["audio", "signal", "text"])
def test_padding_stays_padding(kind):
    inputs = batch(kind)
    out = STRONG[kind](inputs, 1.0, 0.5, seeded())
    pad = ~inputs["mask"]  # (B, T) or (B, L)
    values = out["x"] if kind == "text" else out["x"].transpose(1, 2) if kind == "signal" else out["x"]
    assert pad.any() and (values[pad] == 0).all()


def test_video_frames_of_a_clip_share_one_draw_and_padding_frames_stay_zeros():
    inputs = batch("video")  # every clip's real frames are one picture
    out = STRONG["video"](inputs, 1.0, 0.5, seeded())["x"]
    real, pad = inputs["mask"], ~inputs["mask"]
    for clip in range(4):
        frames = out[clip][real[clip]]
        assert torch.equal(frames, frames[:1].expand_as(frames))  # moved, recoloured and cut out alike
    assert pad.any() and (out[pad] == 0).all()
    same = {"x": inputs["x"][:1].expand_as(inputs["x"]).clone(), "mask": torch.ones_like(inputs["mask"])}
    first = STRONG["video"](same, 1.0, 0.5, seeded())["x"][:, 0]  # four clips of one picture
    assert len({frame.numpy().tobytes() for frame in first}) == 4  # a draw of its own per clip


def test_image_magnitude_zero_leaves_only_a_cutout_square_of_the_erased_share():
    inputs = batch("image")
    out = STRONG["image"](inputs, 0.0, 0.25, seeded())["x"]
    erased = (out == 0).all(dim=1)  # (B, H, W): every channel zeroed
    for sample in erased:
        rows, cols = sample.any(dim=1).nonzero().flatten(), sample.any(dim=0).nonzero().flatten()
        assert (len(rows), len(cols)) == (8, 8)  # side round(16 * sqrt(0.25))
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all() and int(sample.sum()) == 64
    kept = ~erased.unsqueeze(1).expand_as(out)
    torch.testing.assert_close(out[kept], inputs["x"][kept])  # identity affine map, no jitter
    torch.testing.assert_close(STRONG["image"](inputs, 0.0, 0.0, seeded())["x"], inputs["x"])


def test_audio_magnitude_zero_leaves_only_one_time_band_and_one_frequency_band_erased():
    inputs = batch("audio")
    out = STRONG["audio"](inputs, 0.0, 0.5, seeded())["x"]
    erased = (out == 0) & (inputs["x"] != 0)  # (B, T, F)
    assert erased.any()
    torch.testing.assert_close(out[~erased], inputs["x"][~erased])
    for sample, valid in zip(erased, inputs["mask"]):
        sample = sample[valid]  # (T_valid, F)
        frames, bins = sample.all(dim=1), sample.all(dim=0)  # whole frames, whole bins
        assert torch.equal(sample, frames[:, None] | bins[None, :])  # nothing erased outside the two bands
        frames, bins = frames.nonzero().flatten(), bins.nonzero().flatten()
        assert frames.diff().eq(1).all() and bins.diff().eq(1).all()
        assert len(frames) <= 10 and len(bins) <= 4  # at most erase * size
    torch.testing.assert_close(STRONG["audio"](inputs, 0.0, 0.0, seeded())["x"], inputs["x"])


def test_signal_magnitude_zero_leaves_only_one_time_band_erased_without_a_shift():
    inputs = batch("signal")
    for seed in range(8):  # a shift of even one sample would move every value
        torch.testing.assert_close(STRONG["signal"](inputs, 0.0, 0.0, seeded(seed))["x"], inputs["x"])
    out = STRONG["signal"](inputs, 0.0, 0.5, seeded())["x"]
    erased = (out == 0) & (inputs["x"] != 0)  # (B, C, L)
    assert erased.any()
    torch.testing.assert_close(out[~erased], inputs["x"][~erased])
    for sample, valid in zip(erased, inputs["mask"]):
        sample = sample[:, valid]  # (C, L_valid)
        steps = sample.all(dim=0)  # whole time steps, every channel
        assert torch.equal(sample, steps[None, :].expand_as(sample))  # nothing erased outside the band
        steps = steps.nonzero().flatten()
        assert steps.diff().eq(1).all() and len(steps) <= 16  # one band of at most erase * length


def test_every_modality_kind_has_a_strong_view():
    """FixMatch takes any config: every kind a modality can be has its strong view."""
    from typing import get_args

    from polymodal.config.modalities import AnyModality

    kinds = {get_args(cls.model_fields["kind"].annotation)[0] for cls in get_args(get_args(AnyModality)[0])}
    assert kinds == set(STRONG) and len(kinds) == 6


def test_tabular_entries_are_kept_or_drawn_from_the_same_column_of_another_row():
    inputs = batch("tabular")
    out = STRONG["tabular"](inputs, 0.0, 0.5, seeded())
    for key in ("x", "cat"):
        changed = out[key] != inputs[key]
        assert changed.any() and (~changed).any()
        for column in range(inputs[key].shape[1]):  # every value is one the column holds in the batch
            assert set(out[key][:, column].tolist()) <= set(inputs[key][:, column].tolist())
    noisy = STRONG["tabular"](inputs, 1.0, 0.0, seeded())
    assert torch.equal(noisy["cat"], inputs["cat"]) and not torch.equal(noisy["x"], inputs["x"])
    empty = {"x": torch.zeros(4, 0), "cat": torch.zeros(4, 0, dtype=torch.long)}
    assert all(v.shape == (4, 0) for v in STRONG["tabular"](empty, 1.0, 0.5, seeded()).values())


def test_tabular_missing_flags_are_not_noised_and_travel_with_their_numbers():
    """x = [3 numbers | their 3 flags]: a row's number taken from another row brings that row's flag."""
    numbers = torch.arange(24, dtype=torch.float32).view(8, 3)  # row r, column c: 3r + c
    flags = (torch.arange(24).view(8, 3) % 2).float()  # row r's flag for column c: (3r + c) % 2
    inputs = {"x": torch.cat([numbers, flags], 1), "cat": torch.zeros(8, 0, dtype=torch.long)}
    out = STRONG["tabular"](inputs, 0.0, 0.5, seeded(), flags=3)["x"]
    assert not torch.equal(out, inputs["x"])
    torch.testing.assert_close(out[:, 3:], out[:, :3] % 2)  # each flag still belongs to its number
    noisy = STRONG["tabular"](inputs, 1.0, 0.0, seeded(), flags=3)["x"]
    assert torch.equal(noisy[:, 3:], flags) and not torch.equal(noisy[:, :3], numbers)


def test_tabular_entries_are_redrawn_from_rows_that_hold_the_table_only():
    present = torch.tensor([True, False, True, False, True, True])
    x = torch.where(present[:, None], torch.rand(6, 4, generator=seeded(1)) + 1, torch.zeros(6, 4))  # absent: zeros
    cat = torch.where(present[:, None], torch.randint(1, 5, (6, 2), generator=seeded(2)), torch.zeros(6, 2).long())
    out = STRONG["tabular"]({"x": x, "cat": cat}, 0.0, 1.0, seeded(), present)  # every entry redrawn
    assert (out["x"][present] >= 1).all() and (out["cat"][present] >= 1).all()
    views = strong_view({"t": {"x": x, "cat": cat}}, {"t": "tabular"}, 0.0, 1.0, seeded(), present={"t": present})
    assert torch.equal(views["t"]["x"], out["x"])
    anywhere = STRONG["tabular"]({"x": x, "cat": cat}, 0.0, 1.0, seeded())  # without the mask: zeros come in
    assert (anywhere["x"][present] == 0).any()


def test_text_only_swaps_neighbouring_real_tokens():
    inputs = batch("text")
    ids, mask = inputs["x"], inputs["mask"]
    out = STRONG["text"](inputs, 1.0, 1.0, seeded())["x"]
    assert not torch.equal(out, ids)
    for row, new, valid in zip(ids, out, mask):
        assert torch.equal(new.sort().values, row.sort().values)  # the same tokens, reordered
        moved = (new != row).nonzero().flatten()
        for i in moved.tolist():
            assert valid[i] and (new[i] == row[i - 1] or (i + 1 < len(row) and new[i] == row[i + 1]))
    assert torch.equal(out[3], ids[3])  # one token: nothing to swap
    assert torch.equal(STRONG["text"](inputs, 1.0, 0.0, seeded())["x"], ids)
    short = {"x": ids[:, :1], "mask": mask[:, :1]}
    assert torch.equal(STRONG["text"](short, 1.0, 1.0, seeded())["x"], short["x"])


def test_strong_view_dispatches_by_kind_and_adds_no_modality_the_batch_lacks():
    inputs = {"photo": batch("image"), "notes": batch("text")}
    kinds = {"photo": "image", "notes": "text", "table": "tabular"}  # no tabular inputs in this batch
    out = strong_view(inputs, kinds, 1.0, 0.25, seeded(3))
    assert set(out) == {"photo", "notes"}
    torch.testing.assert_close(out["photo"]["x"], STRONG["image"](inputs["photo"], 1.0, 0.25, seeded(3))["x"])
    with pytest.raises(ValueError, match="modality 'clip' of kind 'hologram'"):
        strong_view({"clip": {"x": torch.zeros(1, 2, 3, 8, 8)}}, {"clip": "hologram"})


def test_audio_time_band_lies_within_the_clip_not_its_padding():
    inputs = batch("audio")  # clip lengths 20, 12, 7, 20 of 20 frames
    hits = 0
    for seed in range(64):
        out = STRONG["audio"](inputs, 0.0, 0.5, seeded(seed))["x"]
        frames = ((out == 0) & (inputs["x"] != 0)).all(dim=2)  # (B, T) whole frames erased
        hits += int(frames[2, :7].any())
    assert hits >= 36  # a band of up to 3 of its 7 frames, inside the clip (43 of 64 here; 29 when placed over all 20)


def test_the_module_imports_on_its_own():
    """It imports the modalities package, whose signal preprocessor uses it: a top-level import
    there made a fresh 'import polymodal.data.strong' (or polymodal.training.semi) fail."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import polymodal.data.strong"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_signal_erase_band_falls_within_each_windows_own_samples():
    """Drawn over the padded length, the band mostly missed a short recording's samples."""
    from polymodal.data.strong import perturb_signal

    x = torch.ones(64, 1, 1000)
    mask = torch.zeros(64, 1000, dtype=torch.bool)
    mask[:, :100] = True  # 100 valid samples, 900 of padding
    out = perturb_signal({"x": x * mask.unsqueeze(1), "mask": mask}, gain=0.0, noise=0.0, shift=0, erase=0.5,
                         generator=torch.Generator().manual_seed(0))["x"]
    erased = (out[:, 0, :100] == 0).sum(dim=1)
    assert (erased <= 50).all() and (erased > 0).float().mean() > 0.9  # at most half of the 100, nearly always some
    assert not out[:, :, 100:].any()
