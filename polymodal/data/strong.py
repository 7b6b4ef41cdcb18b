"""Strong augmentation (FixMatch's strong view) of batched encoder inputs, per modality kind.

The weak view of a row is what its preprocessor's ``to_batch(arrays, train=True)`` gives (the
modality's own training augmentation). The strong view perturbs that batch further, on the
normalised tensors, with one random draw per sample:

- image ``x`` (B, C, H, W): a random affine map (rotation, shear, scale, translation), contrast
  and brightness jitter, and a cutout square covering ``erase`` of the image;
- audio ``x`` (B, T, F): gain, additive noise, time and frequency masks covering ``erase`` (the
  time mask of the clip's own frames, never only its padding);
- signal ``x`` (B, C, L): per-channel gain, additive noise, a circular time shift (up to
  ``0.1 * magnitude`` of the length, at least one sample when ``magnitude`` > 0) and a time mask;
- tabular ``x``/``cat``: entries replaced by the same column's value in a random row of the batch
  that holds the table (a draw from the column's marginal, as in SCARF), a number's missing flag
  with it; noise on the numbers (not on the flags);
- text ``x`` (B, T) token ids: swaps of neighbouring tokens;
- video ``x`` (B, T, C, H, W): the image view with one draw per clip, the same on all its frames
  (a short clip's padding frames zeroed).

``magnitude`` scales every perturbation; 0 leaves only the erasing (text swaps scale with both, so
none are left). Padding (``mask``) is left as it is, except a video clip's padding frames:
those are zeroed. Every function also takes ``present``, (B,) True on the rows that hold the modality
(an absent row's inputs are zeros); only the table's redrawing reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.nn import functional as F

from polymodal.data.modalities.base import roll_within

ModalityInputs = dict[str, torch.Tensor]


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _bands(batch: int, size: int, width: torch.Tensor, generator: torch.Generator | None,
           device: torch.device, limit: torch.Tensor | None = None) -> torch.Tensor:
    """(B, size) True inside one band per sample of ``width`` (B,) steps at a random start, the
    band within each sample's first ``limit`` (B,) steps (all ``size`` of them when None)."""
    room = (size if limit is None else limit) - width + 1
    starts = (torch.rand(batch, generator=generator, device=device) * torch.as_tensor(room).clamp_min(1)).long()
    steps = torch.arange(size, device=device)
    return (steps >= starts[:, None]) & (steps < (starts + width)[:, None])


def strong_image(inputs: ModalityInputs, magnitude: float, erase: float, generator: torch.Generator | None = None,
                 present: torch.Tensor | None = None, per_draw: int = 1) -> ModalityInputs:
    """``per_draw``: consecutive images that share one draw (a video clip's frames)."""
    x = inputs["x"]
    n, _, h, w = x.shape
    if n % per_draw:
        raise ValueError(f"{n} images do not split into groups of per_draw={per_draw}")
    b, dev = n // per_draw, x.device  # b draws

    def each(values: torch.Tensor) -> torch.Tensor:  # (b, ...) draws -> (n, ...), one per image
        return values.repeat_interleave(per_draw, dim=0)

    angle = _uniform(b, -30, 30, generator, dev) * magnitude * math.pi / 180
    shear = _uniform(b, -0.3, 0.3, generator, dev) * magnitude
    scale = 1 + _uniform(b, -0.2, 0.2, generator, dev) * magnitude
    shift = _uniform(2 * b, -0.25, 0.25, generator, dev).view(b, 2) * magnitude  # in [-1, 1] grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # (b, 2, 3)
    grid = F.affine_grid(each(theta).to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + each(_uniform(b, -0.5, 0.5, generator, dev)).view(n, 1, 1, 1) * magnitude
    brightness = each(_uniform(b, -0.5, 0.5, generator, dev)).view(n, 1, 1, 1) * magnitude
    x = (x - mean) * contrast + mean + brightness
    if erase > 0:
        side_h, side_w = max(1, round(h * math.sqrt(erase))), max(1, round(w * math.sqrt(erase)))
        rows = each(_bands(b, h, torch.full((b,), side_h, device=dev), generator, dev))  # (N, H)
        cols = each(_bands(b, w, torch.full((b,), side_w, device=dev), generator, dev))  # (N, W)
        x = x.masked_fill((rows[:, :, None] & cols[:, None, :]).unsqueeze(1), 0.0)
    return {**inputs, "x": x}


def strong_video(inputs: ModalityInputs, magnitude: float, erase: float, generator: torch.Generator | None = None,
                 present: torch.Tensor | None = None) -> ModalityInputs:
    """The image view with one draw per clip: every frame of a clip gets the same affine map,
    contrast and brightness factors and cutout; a short clip's padding frames are zeroed."""
    x, mask = inputs["x"], inputs["mask"]  # (B, T, C, H, W), (B, T)
    frames = strong_image({"x": x.flatten(0, 1)}, magnitude, erase, generator, per_draw=x.shape[1])["x"]
    return {**inputs, "x": frames.view_as(x) * mask[:, :, None, None, None]}


def strong_audio(inputs: ModalityInputs, magnitude: float, erase: float, generator: torch.Generator | None = None,
                 present: torch.Tensor | None = None) -> ModalityInputs:
    x = inputs["x"]  # (B, T, F), normalised
    b, t, f = x.shape
    dev = x.device
    x = x * (1 + _uniform(b, -0.3, 0.3, generator, dev).view(b, 1, 1) * magnitude)
    x = x + torch.randn(x.shape, generator=generator, device=dev) * (0.2 * magnitude)
    mask = inputs.get("mask")  # (B, T) a clip's frames; the rest of a short clip is padding
    if erase > 0:  # the time band covers up to ``erase`` of the clip itself, never only its padding
        lengths = torch.full((b,), t, device=dev) if mask is None else mask.sum(dim=1).clamp_min(1)
        widths = (torch.rand(b, generator=generator, device=dev) * erase * lengths).long()
        time = _bands(b, t, widths, generator, dev, limit=lengths)
        freq = _bands(b, f, (torch.rand(b, generator=generator, device=dev) * erase * f).long(), generator, dev)
        x = x.masked_fill(time.unsqueeze(-1) | freq.unsqueeze(1), 0.0)
    return {**inputs, "x": x if mask is None else x * mask.unsqueeze(-1)}


def strong_signal(inputs: ModalityInputs, magnitude: float, erase: float, generator: torch.Generator | None = None,
                  present: torch.Tensor | None = None) -> ModalityInputs:
    length = inputs["x"].shape[-1]
    shift = max(1, int(0.1 * magnitude * length)) if magnitude > 0 else 0  # magnitude 0: no shift
    return perturb_signal(inputs, gain=0.3 * magnitude, noise=0.2 * magnitude, shift=shift, erase=erase,
                          generator=generator)


def perturb_signal(inputs: ModalityInputs, *, gain: float, noise: float, shift: int, erase: float,
                   generator: torch.Generator | None = None) -> ModalityInputs:
    """Signal ``x`` (B, C, L), normalised, perturbed per sample: each channel scaled by a factor in
    ``[1 - gain, 1 + gain]``, Gaussian noise of standard deviation ``noise`` added, a circular
    shift of up to ``shift`` steps within the valid samples, and a band of up to ``erase`` of the
    valid samples zeroed (FixMatch's strong view, and ``preprocess.augment`` in training)."""
    x = inputs["x"]
    b, c, length = x.shape
    dev = x.device
    x = x * (1 + _uniform(b * c, -gain, gain, generator, dev).view(b, c, 1))
    x = x + torch.randn(x.shape, generator=generator, device=dev) * noise
    offsets = torch.randint(-shift, shift + 1, (b,), generator=generator, device=dev)
    mask = inputs.get("mask")  # (B, L) valid samples of a shorter recording
    valid = torch.full((b,), length, device=dev) if mask is None else mask.sum(dim=1)
    x = roll_within(x, offsets, None if mask is None else valid, dim=2)  # its padding stays padding
    if erase > 0:  # within each window's own samples, never only its padding
        widths = (torch.rand(b, generator=generator, device=dev) * erase * valid).long()
        x = x.masked_fill(_bands(b, length, widths, generator, dev, limit=valid).unsqueeze(1), 0.0)
    return {**inputs, "x": x if mask is None else x * mask.unsqueeze(1)}


def _source_rows(shape: torch.Size, present: torch.Tensor | None, generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    """(B, K) a random row for every entry, among the rows that hold the modality (all when
    ``present`` is None or marks none)."""
    rows = torch.arange(shape[0], device=device) if present is None or not bool(present.any()) \
        else present.nonzero().squeeze(1)
    return rows[torch.randint(0, len(rows), shape, generator=generator, device=device)]


def strong_tabular(inputs: ModalityInputs, magnitude: float, erase: float, generator: torch.Generator | None = None,
                   present: torch.Tensor | None = None, flags: int = 0) -> ModalityInputs:
    """``flags``: the trailing columns of ``x`` that are missing-indicator flags, one per number."""
    out = dict(inputs)
    x = inputs.get("x")
    if x is not None and x.numel():
        dev = x.device
        values = x[:, : x.shape[1] - flags]
        n = values.shape[1]
        source = _source_rows(values.shape, present, generator, dev)
        erased = torch.rand(values.shape, generator=generator, device=dev) < erase
        values = torch.where(erased, values.gather(0, source), values)
        values = values + torch.randn(values.shape, generator=generator, device=dev) * (0.2 * magnitude)
        if flags:  # a flag travels with its number, and is not noised
            marks = x[:, n:]
            out["x"] = torch.cat([values, torch.where(erased, marks.gather(0, source), marks)], dim=1)
        else:
            out["x"] = values
    cat = inputs.get("cat")
    if cat is not None and cat.numel():
        source = _source_rows(cat.shape, present, generator, cat.device)
        erased = torch.rand(cat.shape, generator=generator, device=cat.device) < erase
        out["cat"] = torch.where(erased, cat.gather(0, source), cat)
    return out


def strong_text(inputs: ModalityInputs, magnitude: float, erase: float, generator: torch.Generator | None = None,
                present: torch.Tensor | None = None) -> ModalityInputs:
    ids = inputs["x"]  # (B, T)
    if ids.shape[1] < 2:
        return dict(inputs)
    mask = inputs.get("mask")
    valid = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask
    swap = torch.rand(ids.shape, generator=generator, device=ids.device) < erase * min(magnitude, 1.0)
    swap[:, -1] = False
    swap &= valid & torch.roll(valid, -1, dims=1)  # both positions hold real tokens
    swap[:, 1:] &= ~swap[:, :-1]  # no overlapping swaps
    shifted_left, shifted_right = torch.roll(ids, -1, dims=1), torch.roll(ids, 1, dims=1)
    partner = torch.zeros_like(swap)
    partner[:, 1:] = swap[:, :-1]
    out = torch.where(swap, shifted_left, torch.where(partner, shifted_right, ids))
    return {**inputs, "x": out}


STRONG: dict[str, Callable[..., ModalityInputs]] = {
    "image": strong_image, "audio": strong_audio, "signal": strong_signal, "tabular": strong_tabular,
    "text": strong_text, "video": strong_video,
}


def strong_view(inputs: Mapping[str, ModalityInputs], kinds: Mapping[str, str], magnitude: float = 1.0, erase: float = 0.25,
                generator: torch.Generator | None = None, options: Mapping[str, Mapping[str, Any]] | None = None,
                present: Mapping[str, torch.Tensor] | None = None) -> dict[str, ModalityInputs]:
    """The strong view of a batch's ``inputs`` ({modality: {keyword: tensor}}).

    Args:
        kinds: modality kind by name (``image``, ``audio``, ``signal``, ``tabular``, ``text``, ``video``).
        magnitude: strength of every perturbation (0 leaves only the erasing).
        erase: share of each sample masked out.
        options: per modality, the layout its kind's function needs
            (:meth:`~polymodal.data.modalities.base.Preprocessor.strong_options`).
        present: per modality, (B,) True on the rows that hold it (a table's redrawn entries come
            from those rows only, never from an absent row's zeros).
    """
    out = {}
    for name, tensors in inputs.items():
        kind = kinds[name]
        if kind not in STRONG:
            raise ValueError(f"no strong augmentation for modality '{name}' of kind '{kind}'; kinds: {sorted(STRONG)}")
        out[name] = STRONG[kind](dict(tensors), magnitude, erase, generator, (present or {}).get(name),
                                 **(options or {}).get(name, {}))
    return out
