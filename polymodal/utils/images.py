"""Image resizing and pixel arrays shared by training-time preprocessing and the torch-free
deployment runtime (Pillow only, imported when first used)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# formats whose files carry an EXIF orientation (phone photos, screenshots saved as PNG)
EXIF_FORMATS = frozenset({"JPEG", "MPO", "TIFF", "WEBP", "HEIF", "PNG"})


def resize_image(image: Any, size: tuple[int, int], mode: str) -> Any:
    """Resize a Pillow image to (height, width): ``stretch``, ``pad`` (fit inside, centre, black
    borders) or ``crop`` (cover, centre-crop)."""
    from PIL import Image

    height, width = size
    if image.size == (width, height):  # every mode would return a copy of it
        return image
    if mode == "stretch":
        return image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    scale = (min if mode == "pad" else max)(width / image.width, height / image.height)
    new_w, new_h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    if mode == "crop":
        left, top = (new_w - width) // 2, (new_h - height) // 2
        return image.crop((left, top, left + width, top + height))
    canvas = Image.new(image.mode, (width, height))
    canvas.paste(image, ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


def converted(image: Any, target: str, background: str | None) -> Any:
    """A Pillow image in mode ``target`` (``RGB``, ``L`` or ``HSV``). An image with transparency
    (an alpha channel, a palette's transparent entry or a PNG colour key) is first composited
    onto a ``white`` or ``black`` background: Pillow's own conversion drops alpha, showing
    whatever colour the file stores under transparent pixels (``background=None`` keeps that, as
    runs saved before the ``background`` setting were trained)."""
    from PIL import Image

    if background is not None and has_transparency(image):
        fill = (255, 255, 255, 255) if background == "white" else (0, 0, 0, 255)
        image = Image.alpha_composite(Image.new("RGBA", image.size, fill), image.convert("RGBA")).convert("RGB")
    if image.mode == target:
        return image
    if target == "HSV" and image.mode != "RGB":
        image = image.convert("RGB")  # Pillow converts to HSV from RGB only
    return image.convert(target)


def has_transparency(image: Any) -> bool:
    """Whether a Pillow image has an alpha channel, a palette's transparent entry or a PNG colour key."""
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def converted_and_resized(image: Any, target: str, background: str | None, size: tuple[int, int],
                          mode: str) -> Any:
    """A Pillow image in mode ``target`` at (height, width) ``size``: :func:`converted`, then
    :func:`resize_image`, in the order that keeps the colours right. ``HSV`` is resized as RGB
    and converted afterwards (hue is an angle: interpolated as a number, a red of hue 250 next to
    one of hue 5 would blend into a cyan of hue 128); a grey source without transparency is
    resized before it becomes RGB (its three channels are copies, so one is resized, not three)."""
    if target == "HSV":
        return converted(resize_image(converted(image, "RGB", background), size, mode), "HSV", None)
    if image.mode == "L" and target == "RGB" and not (background is not None and has_transparency(image)):
        return resize_image(image, size, mode).convert("RGB")
    return resize_image(converted(image, target, background), size, mode)


GREY_LEVELS = 3  # a pixel whose three colour channels lie within this many 8-bit levels of each other is grey


def grey_pixels(rgb: Any) -> bool:
    """Whether 8-bit colour pixels are grey in content: in every pixel the three colour channels
    within :data:`GREY_LEVELS` of each other (a grey scan saved as RGB or RGBA, a grey video's
    decoded frames; a compression's rounding stays within the tolerance).

    Args:
        rgb: (..., 3) pixels (a 4th channel, alpha, is ignored).
    """
    import numpy as np

    channels = np.asarray(rgb)[..., :3]
    spread = channels.max(axis=-1).astype(np.int32) - channels.min(axis=-1)
    return int(spread.max(initial=0)) <= GREY_LEVELS


GREY_CHECK_SIDE = 256  # pixels on the longer side an image is checked for colour at


def grey_image(image: Any) -> bool:
    """Whether a Pillow image is grey in content: a mode of one channel (``1``, ``L``, ``LA``,
    ``I``, ``I;16`` in either byte order, ``F``...), or colour (RGB, RGBA, a palette...) whose
    pixels are all grey by :func:`grey_pixels` (transparency composited onto black first: a grey
    pixel stays grey on either background)."""
    import numpy as np

    if not colour_mode(image):
        return True
    rgb = converted(image, "RGB", "black")
    if max(rgb.size) > GREY_CHECK_SIDE:  # averaging grey pixels gives grey ones: a large scan is checked small
        rgb = rgb.copy()
        rgb.thumbnail((GREY_CHECK_SIDE, GREY_CHECK_SIDE))
    return grey_pixels(np.asarray(rgb))


def colour_mode(image: Any) -> bool:
    """Whether a Pillow image's mode can hold colour: more than one channel besides alpha, or a palette."""
    return len(set(image.getbands()) - {"A", "a"}) > 1 or image.mode in ("P", "PA")


def wider_than_8_bits(image: Any) -> bool:
    """Whether a Pillow image's pixels are wider than 8 bits: 16-bit in either byte order, 32-bit
    integer or float."""
    return image.mode.startswith("I;16") or image.mode in ("I", "F")


def to_8bit(image: Any, value_range: Sequence[float] | None = None) -> Any:
    """A Pillow image whose pixels are wider than 8 bits (:func:`wider_than_8_bits`) as 8-bit
    grey, by :func:`scaled_to_8bit`; other modes are returned as they are."""
    if not wider_than_8_bits(image):
        return image
    import numpy as np
    from PIL import Image

    return Image.fromarray(scaled_to_8bit(np.asarray(image, dtype=np.float32), value_range))


def scaled_to_8bit(values: Any, value_range: Sequence[float] | None = None) -> Any:
    """A numeric array as uint8: ``value_range`` ``(low, high)`` mapped linearly onto [0, 255]
    (black and white; values beyond clipped), so that every image keeps its absolute brightness;
    None: scaled by the array's own maximum onto [0, 255] (clipped below at 0): medical and
    scientific images rarely use their type's full range."""
    import numpy as np

    if value_range is not None:
        low, high = (float(v) for v in value_range)
        return np.clip(np.rint((values - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)
    top = float(values.max(initial=0.0)) or 1.0
    return np.clip(values / top * 255.0, 0, 255).astype(np.uint8)


def image_array(array: Any, path: str, value_range: Sequence[float] | None = None) -> Any:
    """An ``.npy`` array (H, W), (H, W, C) or (C, H, W) -> uint8 (H, W) or (H, W, 3|4), the
    layouts Pillow reads as L, RGB and RGBA, scaled by :func:`pixels_to_8bit`.

    Raises:
        DecodeError: another shape, naming ``path``.
    """
    import numpy as np

    from polymodal.errors import DecodeError

    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise DecodeError(f"expected an (H, W), (H, W, C) or (C, H, W) array; got shape {array.shape}", path=path)
    return pixels_to_8bit(array, path, value_range)


def array_to_pil(array: Any, path: str) -> Any:
    """An ``.npy`` array (H, W), (H, W, C) or (C, H, W) -> a Pillow image (see :func:`image_array`)."""
    from PIL import Image

    return Image.fromarray(image_array(array, path))


def pixels_to_8bit(array: Any, path: str, value_range: Sequence[float] | None = None) -> Any:
    """Numeric pixels of any shape as uint8, one scale for the whole array (a clip's frames share
    it). uint8 pixels are kept. Others but booleans, with ``value_range``, are mapped from it onto [0, 255]
    (:func:`scaled_to_8bit`); without: values in [0, 1] (floats, binary masks) times 255;
    integers past 255 (16-bit scans) by the array's maximum, as 16-bit image files are; other
    values taken as 8-bit ones (rounded, clipped).

    Raises:
        DecodeError: non-numeric, NaN or infinite pixels, naming ``path``.
    """
    import numpy as np

    from polymodal.errors import DecodeError

    if array.dtype.kind not in "iufb":
        raise DecodeError(f"expected numeric pixels; the array's dtype is {array.dtype}", path=path)
    if array.dtype == np.uint8:
        return array
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise DecodeError("array holds NaN or infinite values", path=path)
    if value_range is not None and array.dtype.kind != "b":
        return scaled_to_8bit(values, value_range)
    top = values.max(initial=0.0)
    if array.dtype.kind in "iu" and top > 255:
        return scaled_to_8bit(values)
    if top <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
