"""Image resizing shared by training-time preprocessing and the torch-free deployment runtime
(Pillow only, imported when first used)."""

from __future__ import annotations

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

    transparent = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if background is not None and transparent:
        fill = (255, 255, 255, 255) if background == "white" else (0, 0, 0, 255)
        image = Image.alpha_composite(Image.new("RGBA", image.size, fill), image.convert("RGBA")).convert("RGB")
    if image.mode == target:
        return image
    if target == "HSV" and image.mode != "RGB":
        image = image.convert("RGB")  # Pillow converts to HSV from RGB only
    return image.convert(target)


def to_8bit(image: Any) -> Any:
    """A Pillow image whose pixels are wider than 8 bits (16-bit in either byte order, 32-bit
    integer or float) as 8-bit grey, scaled by its own maximum (medical and scientific images
    rarely use their type's full range); other modes are returned as they are."""
    if not (image.mode.startswith("I;16") or image.mode in ("I", "F")):
        return image
    import numpy as np
    from PIL import Image

    return Image.fromarray(scaled_to_8bit(np.asarray(image, dtype=np.float32)))


def scaled_to_8bit(values: Any) -> Any:
    """A numeric array as uint8: scaled by its maximum onto [0, 255] (clipped below at 0)."""
    import numpy as np

    top = float(values.max(initial=0.0)) or 1.0
    return np.clip(values / top * 255.0, 0, 255).astype(np.uint8)
