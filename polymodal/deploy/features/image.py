"""Images in the runtime: Pillow decode, colour, resize (as ``data/modalities/image.py``)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from polymodal.deploy.features.base import Features
from polymodal.errors import MissingDependencyError
from polymodal.utils.images import EXIF_FORMATS, converted_and_resized, to_8bit


class ImageFeatures(Features):
    kind = "image"
    MODES: ClassVar[dict[str, str]] = {"rgb": "RGB", "gray": "L", "hsv": "HSV"}

    def decode(self, value: Any) -> np.ndarray:
        try:
            from PIL import Image, ImageOps
        except ImportError:
            raise MissingDependencyError("Pillow", "decoding image files in the runtime") from None
        if isinstance(value, np.ndarray):
            array = value[..., 0] if value.ndim == 3 and value.shape[-1] == 1 else value
            if array.ndim not in (2, 3) or array.dtype != np.uint8:
                raise self.fail(f"expected a uint8 (H, W) or (H, W, C) array; got {array.dtype} {value.shape}")
            image = Image.fromarray(array)
        else:
            image = self.open(self.file_bytes(value))
            if image.format in EXIF_FORMATS:
                image = ImageOps.exif_transpose(image)
            image = to_8bit(image, self.cfg.get("value_range"))  # 16-bit scans and float images, as in training
        return self.from_pil(image)

    def from_pil(self, image: Any) -> np.ndarray:
        """A decoded Pillow image -> colour-converted, resized uint8 (H, W, C), as training does
        (HSV resized as RGB); also used per video frame."""
        size = self.cfg["size"]
        height, width = (size, size) if isinstance(size, int) else size
        try:
            image = converted_and_resized(image, self.MODES[self.cfg["color"]], self.cfg.get("background"),
                                          (height, width), self.cfg["resize"])
        except ValueError as err:  # a colour mode Pillow does not convert (LAB, ...)
            raise self.fail(f"unsupported image colour mode {image.mode} ({err})", "unsupported_type", 415) from None
        array = np.asarray(image, dtype=np.uint8)
        return array[:, :, None] if array.ndim == 2 else array

    def open(self, data: bytes) -> Any:
        """A loaded Pillow image, refusing what the model's ``max_pixels`` refuses."""
        from PIL import Image, UnidentifiedImageError

        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:
            raise self.fail(f"refused as a decompression bomb ({err})", "too_many_pixels", 413) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            # imported here: it imports the video features, which import these
            from polymodal.deploy.features.signatures import looks_like

            seen = looks_like(data)
            raise self.fail("not a recognised image (PNG, JPEG, BMP, GIF, TIFF, WebP)"
                            + (f": it looks like {seen}" if seen else ""), "unsupported_type", 415) from None
        pixels = image.width * image.height
        if pixels > self.cfg["max_pixels"]:
            raise self.fail(f"image is {image.width}x{image.height} = {pixels:,} pixels; at most "
                            f"{self.cfg['max_pixels']:,} are allowed", "too_many_pixels", 413)
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as err:
            raise self.fail(f"corrupt or truncated image ({err})", "corrupt_file") from None
        return image

    def featurize(self, samples: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {"x": np.stack(samples).astype(np.uint8, copy=False)}
