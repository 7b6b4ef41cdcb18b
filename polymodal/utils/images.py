"""Image resizing shared by training-time preprocessing and the torch-free deployment runtime
(Pillow only, imported when first used)."""

from __future__ import annotations

from typing import Any


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
