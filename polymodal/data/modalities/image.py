"""Images: Pillow decode (PNG, JPEG, BMP, TIFF...) or ``.npy`` arrays, colour conversion, resize,
normalisation, and training-only augmentation (torchvision transforms v2).

Cached form: ``x`` uint8 (H, W, C). Normalisation and augmentation happen at batch time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from polymodal.config.modalities import ImageModality
from polymodal.config.preprocess import ImageAugment, ImagePreprocess
from polymodal.data.arrays import load_npy, split_row_ref
from polymodal.data.modalities.base import PREPROCESSORS, ArraySpec, Preprocessor, channel_stats
from polymodal.errors import DecodeError, NotFittedError
from polymodal.utils.images import EXIF_FORMATS, converted_and_resized, image_array, to_8bit

PIL_MODES = {"rgb": "RGB", "gray": "L", "hsv": "HSV"}


def build_augment(cfg: ImageAugment) -> torch.nn.Module | None:
    """torchvision v2 transforms for the configured augmentation (None when it does nothing)."""
    from torchvision.transforms import v2

    steps: list[torch.nn.Module] = []
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if cfg.rotate or cfg.translate or cfg.scale != (1.0, 1.0):
        steps.append(v2.RandomAffine(degrees=cfg.rotate, translate=(cfg.translate, cfg.translate) if cfg.translate else None,
                                     scale=cfg.scale if cfg.scale != (1.0, 1.0) else None))
    if cfg.brightness or cfg.contrast:
        steps.append(v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast))
    return v2.Compose(steps) if steps else None


@PREPROCESSORS.register(ImageModality)
class ImagePreprocessor(Preprocessor):
    """See the module docstring. ``mean``/``std`` are per channel, on the [0, 1] scale."""

    kind = "image"
    featurize_version = 5  # 2: 16-bit arrays and big-endian 16-bit files scaled by their maximum; 3: alpha composited;
    # 4: PNG EXIF orientation; 5: HSV resized as RGB, a grey PNG's colour key composited for rgb
    batch_time_fields = frozenset({"normalize", "mean", "std", "augment"})
    added_settings: ClassVar[dict[str, Any]] = {"value_range": None}

    def __init__(self, name: str, cfg: ImagePreprocess):
        super().__init__(name)
        self.cfg = cfg
        self.size = (cfg.size, cfg.size) if isinstance(cfg.size, int) else tuple(cfg.size)
        self.channels = 1 if cfg.color == "gray" else 3
        self.mean = None if cfg.mean is None else np.asarray(cfg.mean, np.float32)
        self.std = None if cfg.std is None else np.asarray(cfg.std, np.float32)
        self._augment = build_augment(cfg.augment) if cfg.augment is not None else None

    @classmethod
    def from_config(cls, cfg: ImageModality, *, name: str) -> ImagePreprocessor:
        return cls(name, cfg.preprocess)

    def decode(self, value: Any) -> np.ndarray:
        path = str(value)
        if os.path.splitext(path)[1].lower() == ".npy" or split_row_ref(path)[1] is not None:
            array = image_array(load_npy(path), path, self.cfg.value_range)
            if array.shape[:2] == self.size and (array.shape[2:], self.cfg.color) in (((), "gray"), ((3,), "rgb")):
                # already what the Pillow round trip (same mode, same size) would return
                return np.array(array if array.ndim == 3 else array[:, :, None], dtype=np.uint8)
            image = Image.fromarray(array)
        else:
            image = self._open(path)
        try:
            return self.from_pil(image)
        except ValueError as err:  # a colour mode Pillow does not convert (LAB, ...)
            raise DecodeError(f"unsupported image colour mode {image.mode} ({err})", path=path) from None

    def from_pil(self, image: Image.Image) -> np.ndarray:
        """A decoded Pillow image -> colour-converted, resized uint8 (H, W, C) (also used per video frame)."""
        image = converted_and_resized(image, PIL_MODES[self.cfg.color], self.cfg.background, self.size, self.cfg.resize)
        array = np.asarray(image, dtype=np.uint8)
        return array[:, :, None] if array.ndim == 2 else array  # (H, W, C)

    def _open(self, path: str) -> Image.Image:
        """The file's (first) frame, loaded and detached from the file, which is closed on return
        (a multi-frame GIF, TIFF or WebP would otherwise hold it open to seek its other frames)."""
        try:
            opened = Image.open(path)
        except Image.DecompressionBombError as err:
            raise DecodeError(f"refused as a decompression bomb ({err})", path=path) from None
        except UnidentifiedImageError:
            raise DecodeError("not a recognised image format (PNG, JPEG, BMP, TIFF, GIF, WebP...)", path=path) from None
        except OSError as err:
            raise DecodeError(str(err), path=path) from None
        with opened:
            pixels = opened.width * opened.height
            if pixels > self.cfg.max_pixels:
                raise DecodeError(
                    f"image is {opened.width}x{opened.height} = {pixels:,} pixels, more than preprocess.max_pixels "
                    f"({self.cfg.max_pixels:,}); refused as a possible decompression bomb",
                    path=path,
                )
            try:
                opened.load()
                image = ImageOps.exif_transpose(opened) if opened.format in EXIF_FORMATS else opened  # phone photos
            except (OSError, SyntaxError, ValueError) as err:
                raise DecodeError(f"corrupt or truncated image ({err})", path=path) from None
            image = to_8bit(image, self.cfg.value_range)  # 16-bit scans and float images
            return image.copy() if image is opened else image  # closing the file frees the opened image

    def featurize(self, samples: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {"x": np.stack(samples).astype(np.uint8, copy=False)}

    def spec(self) -> dict[str, ArraySpec]:
        return {"x": ArraySpec((*self.size, self.channels), "uint8")}

    def fit_features(self, arrays: Mapping[str, np.ndarray]) -> None:
        if self.cfg.normalize == "standard" and self.cfg.mean is None:
            mean, std = channel_stats(arrays["x"], axis=3)
            self.mean, self.std = mean / 255.0, std / 255.0

    def to_batch(self, arrays: Mapping[str, torch.Tensor], train: bool, *, per_draw: int = 1) -> dict[str, torch.Tensor]:
        """``per_draw``: consecutive images that share one augmentation draw (a video clip's
        frames: the same flip, affine map and colour factors on every frame of the clip)."""
        # stored (B, H, W, C): the permuted view is (B, C, H, W) in channels-last memory, the layout
        # the convolutions run fastest on
        x = arrays["x"].permute(0, 3, 1, 2).float().div_(255.0)
        if train and self._augment is not None:
            # torchvision v2 draws its parameters once per call and applies them to every image of a (N, C, H, W) input
            x = torch.cat([self._augment(group) for group in x.split(per_draw)])
        if self.cfg.normalize == "standard":
            if self.mean is None:
                raise NotFittedError(f"image modality '{self.name}': standard normalisation used before fit")
            mean = torch.as_tensor(self.mean).view(1, -1, 1, 1)
            std = torch.as_tensor(self.std).view(1, -1, 1, 1)
            x = (x - mean).div_(std)
        return {"x": x}

    def encoder_context(self) -> dict[str, Any]:
        return {"in_channels": self.channels, "size": self.size}

    def get_state(self) -> dict[str, Any]:
        if self.mean is None:
            return {}
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        if "mean" in state:
            self.mean = np.asarray(state["mean"], np.float32)
            self.std = np.asarray(state["std"], np.float32)
